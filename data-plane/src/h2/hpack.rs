//! HPACK (RFC 7541): the decoder keeps the dynamic table the client's encoder builds; the
//! encoder keeps none (every field a literal, named from the static table where it can be),
//! which costs a few bytes a response and saves a table search per field.

mod huffman;

use std::collections::VecDeque;

/// The dynamic table size we allow the client (the `SETTINGS_HEADER_TABLE_SIZE` default).
pub(super) const TABLE_SIZE: usize = 4096;

/// RFC 7541 Appendix A.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// A header block that does not decode: a connection error (`COMPRESSION_ERROR`), since the
/// dynamic tables of the two sides can no longer agree.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("an HPACK integer is cut short or too large")]
    Integer,
    #[error("an HPACK string is cut short")]
    String,
    #[error("an invalid Huffman string")]
    Huffman,
    #[error("an HPACK index out of the tables")]
    Index,
    #[error("a dynamic table size update past the limit or after a field")]
    TableSize,
}

/// One connection's HPACK decoder.
#[derive(Debug)]
pub(super) struct Decoder {
    /// Newest first, name and value in one allocation.
    table: VecDeque<Entry>,
    size: usize,
    max: usize,
    /// Huffman output, reused.
    scratch: Vec<u8>,
}

#[derive(Debug)]
struct Entry {
    bytes: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn size(&self) -> usize {
        self.bytes.len() + 32
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            table: VecDeque::new(),
            size: 0,
            max: TABLE_SIZE,
            scratch: Vec::new(),
        }
    }
}

/// Where a literal's name comes from.
enum Name {
    Indexed(usize),
    Literal,
}

impl Decoder {
    /// Decodes a whole header block, handing each field to `emit`. The block is always decoded
    /// to its end (the table must stay in step), whatever `emit` makes of the fields.
    pub(super) fn decode(
        &mut self,
        mut block: &[u8],
        mut emit: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), DecodeError> {
        let mut first = true;
        let mut name_buf = Vec::new();
        while let Some(&byte) = block.first() {
            if byte & 0x80 != 0 {
                let index = integer(&mut block, 7)?;
                let (name, value) = self.get(index)?;
                emit(name, value);
            } else if byte & 0xe0 == 0x20 {
                if !first {
                    return Err(DecodeError::TableSize);
                }
                let max = integer(&mut block, 5)?;
                if max > TABLE_SIZE {
                    return Err(DecodeError::TableSize);
                }
                self.max = max;
                self.evict(0);
                continue;
            } else {
                let (prefix, index) = if byte & 0xc0 == 0x40 {
                    (6, true)
                } else {
                    (4, false)
                };
                let name = match integer(&mut block, prefix)? {
                    0 => Name::Literal,
                    i => Name::Indexed(i),
                };
                name_buf.clear();
                if let Name::Literal = name {
                    string(&mut block, &mut name_buf, &mut self.scratch)?;
                }
                let value_at = name_buf.len();
                string(&mut block, &mut name_buf, &mut self.scratch)?;
                let (value, name) = {
                    let (name_part, value) = name_buf.split_at(value_at);
                    let name = match name {
                        Name::Indexed(i) => self.get(i)?.0,
                        Name::Literal => name_part,
                    };
                    (value, name)
                };
                emit(name, value);
                if index {
                    let mut bytes = Vec::with_capacity(name.len() + value.len());
                    bytes.extend_from_slice(name);
                    bytes.extend_from_slice(value);
                    let name_len = name.len();
                    self.insert(Entry {
                        bytes: bytes.into_boxed_slice(),
                        name_len,
                    });
                }
            }
            first = false;
        }
        Ok(())
    }

    /// The dynamic table's size as RFC 7541 counts it.
    pub(super) fn table_size(&self) -> usize {
        self.size
    }

    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), DecodeError> {
        match index {
            0 => Err(DecodeError::Index),
            1..=61 => {
                let (name, value) = STATIC[index - 1];
                Ok((name.as_bytes(), value.as_bytes()))
            }
            _ => {
                let entry = self.table.get(index - 62).ok_or(DecodeError::Index)?;
                Ok(entry.bytes.split_at(entry.name_len))
            }
        }
    }

    fn insert(&mut self, entry: Entry) {
        let size = entry.size();
        self.evict(size);
        // An entry larger than the table empties it and is not added (RFC 7541 §4.4).
        if size <= self.max {
            self.size += size;
            self.table.push_front(entry);
        }
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            match self.table.pop_back() {
                Some(old) => self.size -= old.size(),
                None => break,
            }
        }
    }
}

/// Decodes a prefixed integer (RFC 7541 §5.1) from the front of `block`.
fn integer(block: &mut &[u8], prefix: u8) -> Result<usize, DecodeError> {
    let mask = (1u8 << prefix) - 1;
    let (&first, mut rest) = block.split_first().ok_or(DecodeError::Integer)?;
    let mut value = usize::from(first & mask);
    if value == usize::from(mask) {
        let mut shift = 0;
        loop {
            let (&b, tail) = rest.split_first().ok_or(DecodeError::Integer)?;
            rest = tail;
            // Four continuation bytes reach 2^28: more than any length or index here.
            if shift > 21 {
                return Err(DecodeError::Integer);
            }
            value += usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    *block = rest;
    Ok(value)
}

/// Decodes a string literal (RFC 7541 §5.2) from the front of `block`, appending it to `out`.
fn string(block: &mut &[u8], out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> Result<(), DecodeError> {
    let huffman = block.first().ok_or(DecodeError::String)? & 0x80 != 0;
    let len = integer(block, 7)?;
    if len > block.len() {
        return Err(DecodeError::String);
    }
    let (raw, rest) = block.split_at(len);
    *block = rest;
    if huffman {
        scratch.clear();
        huffman::decode(raw, scratch).map_err(|_| DecodeError::Huffman)?;
        out.extend_from_slice(scratch);
    } else {
        out.extend_from_slice(raw);
    }
    Ok(())
}

/// Appends a prefixed integer with `flags` in the first byte's high bits.
fn put_integer(out: &mut Vec<u8>, flags: u8, prefix: u8, mut value: usize) {
    let mask = (1usize << prefix) - 1;
    if value < mask {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask as u8);
    value -= mask;
    while value >= 0x80 {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_integer(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// Appends `:status`, indexed when the static table has it.
pub(super) fn encode_status(out: &mut Vec<u8>, status: u16) {
    let index = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if index != 0 {
        out.push(0x80 | index);
        return;
    }
    // Literal without indexing, name `:status` from the static table.
    put_integer(out, 0, 4, 8);
    put_string(out, &itoa_status(status));
}

fn itoa_status(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

/// Appends a field as a literal (never indexed when `sensitive`, so that no intermediary adds
/// it to a table either); `name` must be lowercase.
pub(super) fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8], sensitive: bool) {
    let flags = if sensitive { 0x10 } else { 0x00 };
    match static_name(name) {
        Some(index) => put_integer(out, flags, 4, index),
        None => {
            put_integer(out, flags, 4, 0);
            put_string(out, name);
        }
    }
    put_string(out, value);
}

/// The static-table index of the response header names worth one.
fn static_name(name: &[u8]) -> Option<usize> {
    Some(match name {
        b"content-type" => 31,
        b"content-length" => 28,
        b"date" => 33,
        b"server" => 54,
        b"cache-control" => 24,
        b"etag" => 34,
        b"last-modified" => 44,
        b"location" => 46,
        b"set-cookie" => 55,
        b"vary" => 59,
        b"content-encoding" => 26,
        b"age" => 21,
        b"expires" => 36,
        b"accept-ranges" => 18,
        b"access-control-allow-origin" => 20,
        b"allow" => 22,
        b"content-disposition" => 25,
        b"content-language" => 27,
        b"content-location" => 29,
        b"content-range" => 30,
        b"link" => 45,
        b"proxy-authenticate" => 48,
        b"retry-after" => 53,
        b"strict-transport-security" => 56,
        b"via" => 60,
        b"www-authenticate" => 61,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;

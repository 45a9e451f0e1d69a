//! HTTP/2 frames (RFC 9113 §4 and §6): the nine-byte frame header, the codes the connection
//! reacts to, and writers that append whole frames to the connection's output buffer.

/// What a client sends first on a prior-knowledge HTTP/2 connection.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The length of every frame header.
pub(super) const HEADER_LEN: usize = 9;

/// The frame size both sides may always send (`SETTINGS_MAX_FRAME_SIZE` starts here).
pub(super) const DEFAULT_MAX_FRAME: usize = 16_384;

/// The window each side starts with, per stream and for the connection.
pub(super) const DEFAULT_WINDOW: i64 = 65_535;

/// The largest window flow control allows.
pub(super) const MAX_WINDOW: i64 = (1 << 31) - 1;

pub(super) mod kind {
    pub(crate) const DATA: u8 = 0x0;
    pub(crate) const HEADERS: u8 = 0x1;
    pub(crate) const PRIORITY: u8 = 0x2;
    pub(crate) const RST_STREAM: u8 = 0x3;
    pub(crate) const SETTINGS: u8 = 0x4;
    pub(crate) const PUSH_PROMISE: u8 = 0x5;
    pub(crate) const PING: u8 = 0x6;
    pub(crate) const GOAWAY: u8 = 0x7;
    pub(crate) const WINDOW_UPDATE: u8 = 0x8;
    pub(crate) const CONTINUATION: u8 = 0x9;
}

pub(super) mod flag {
    pub(crate) const END_STREAM: u8 = 0x1;
    pub(crate) const ACK: u8 = 0x1;
    pub(crate) const END_HEADERS: u8 = 0x4;
    pub(crate) const PADDED: u8 = 0x8;
    pub(crate) const PRIORITY: u8 = 0x20;
}

pub(super) mod setting {
    pub(crate) const HEADER_TABLE_SIZE: u16 = 0x1;
    pub(crate) const ENABLE_PUSH: u16 = 0x2;
    pub(crate) const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub(crate) const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub(crate) const MAX_FRAME_SIZE: u16 = 0x5;
    pub(crate) const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// An HTTP/2 error code (RFC 9113 §7), for RST_STREAM and GOAWAY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    NoError = 0x0,
    Protocol = 0x1,
    Internal = 0x2,
    FlowControl = 0x3,
    StreamClosed = 0x5,
    FrameSize = 0x6,
    RefusedStream = 0x7,
    Cancel = 0x8,
    Compression = 0x9,
    EnhanceYourCalm = 0xb,
}

/// A frame header.
#[derive(Clone, Copy, Debug)]
pub(super) struct Head {
    pub(super) len: usize,
    pub(super) kind: u8,
    pub(super) flags: u8,
    pub(super) stream: u32,
}

impl Head {
    pub(super) fn parse(b: &[u8; HEADER_LEN]) -> Self {
        Self {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            // The reserved bit is ignored on receipt.
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    pub(super) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A 31-bit big-endian value (a stream id or a window increment) at the front of `b`.
pub(super) fn u31(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff
}

/// The payload of a padded frame without its padding; `None` if the padding is longer than
/// the frame.
pub(super) fn unpad(head: &Head, payload: &[u8]) -> Option<std::ops::Range<usize>> {
    if !head.has(flag::PADDED) {
        return Some(0..payload.len());
    }
    let pad = usize::from(*payload.first()?);
    let end = payload.len().checked_sub(pad)?;
    (end >= 1).then_some(1..end)
}

/// Appends a frame header.
pub(super) fn head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len < 1 << 24);
    let len = (len as u32).to_be_bytes();
    out.extend_from_slice(&[len[1], len[2], len[3], kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

pub(super) fn settings(out: &mut Vec<u8>, values: &[(u16, u32)]) {
    head(out, values.len() * 6, kind::SETTINGS, 0, 0);
    for (id, value) in values {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub(super) fn settings_ack(out: &mut Vec<u8>) {
    head(out, 0, kind::SETTINGS, flag::ACK, 0);
}

pub(super) fn ping(out: &mut Vec<u8>, flags: u8, payload: &[u8; 8]) {
    head(out, 8, kind::PING, flags, 0);
    out.extend_from_slice(payload);
}

pub(super) fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    head(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

pub(super) fn rst_stream(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    head(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&(reason as u32).to_be_bytes());
}

pub(super) fn goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason) {
    head(out, 8, kind::GOAWAY, 0, 0);
    out.extend_from_slice(&last_stream.to_be_bytes());
    out.extend_from_slice(&(reason as u32).to_be_bytes());
}

/// Appends a HEADERS frame carrying `block`, followed by CONTINUATION frames if the block is
/// larger than the peer's frame size.
pub(super) fn headers(out: &mut Vec<u8>, stream: u32, block: &[u8], end_stream: bool, max: usize) {
    let end = if end_stream { flag::END_STREAM } else { 0 };
    let mut chunks = block.chunks(max.max(1));
    let first = chunks.next().unwrap_or_default();
    let mut rest = chunks.peekable();
    let first_flags = if rest.peek().is_none() {
        end | flag::END_HEADERS
    } else {
        end
    };
    head(out, first.len(), kind::HEADERS, first_flags, stream);
    out.extend_from_slice(first);
    while let Some(chunk) = rest.next() {
        let flags = if rest.peek().is_none() {
            flag::END_HEADERS
        } else {
            0
        };
        head(out, chunk.len(), kind::CONTINUATION, flags, stream);
        out.extend_from_slice(chunk);
    }
}

/// Appends one DATA frame (the caller keeps it within the frame size and the windows).
pub(super) fn data(out: &mut Vec<u8>, stream: u32, data: &[u8], end_stream: bool) {
    let flags = if end_stream { flag::END_STREAM } else { 0 };
    head(out, data.len(), kind::DATA, flags, stream);
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_split_into_continuations() {
        let mut out = Vec::new();
        headers(&mut out, 3, &[7; 10], true, 4);
        let mut frames = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            let h = Head::parse(rest[..HEADER_LEN].try_into().unwrap());
            frames.push((h.kind, h.flags, h.len, h.stream));
            rest = &rest[HEADER_LEN + h.len..];
        }
        assert_eq!(
            frames,
            [
                (kind::HEADERS, flag::END_STREAM, 4, 3),
                (kind::CONTINUATION, 0, 4, 3),
                (kind::CONTINUATION, flag::END_HEADERS, 2, 3),
            ]
        );
    }

    #[test]
    fn padding_longer_than_the_frame_is_refused() {
        let padded = Head {
            len: 3,
            kind: kind::DATA,
            flags: flag::PADDED,
            stream: 1,
        };
        assert_eq!(unpad(&padded, &[1, b'a', 0]), Some(1..2));
        assert_eq!(unpad(&padded, &[3, b'a', 0]), None);
        assert_eq!(unpad(&padded, &[]), None);
    }
}

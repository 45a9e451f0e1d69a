//! The HPACK Huffman code (RFC 7541 Appendix B). The code is canonical, so the RFC's table is
//! given here by its code lengths alone and decoded the canonical way: by length, the codes of
//! each length being consecutive.

/// Bits in each symbol's code, symbols 0–255 and then EOS (256), from RFC 7541 Appendix B.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

const EOS: u16 = 256;
const MAX_LEN: usize = 30;

/// The canonical decoding tables: per code length, the first code, how many codes, and where
/// their symbols start in `symbols` (which lists symbols by length, then by value).
struct Canonical {
    first: [u32; MAX_LEN + 1],
    count: [u32; MAX_LEN + 1],
    offset: [u16; MAX_LEN + 1],
    symbols: [u16; 257],
}

const CANONICAL: Canonical = canonical();

const fn canonical() -> Canonical {
    let mut count = [0u32; MAX_LEN + 1];
    let mut i = 0;
    while i < 257 {
        count[LENGTHS[i] as usize] += 1;
        i += 1;
    }
    let mut first = [0u32; MAX_LEN + 1];
    let mut offset = [0u16; MAX_LEN + 1];
    let mut code = 0u32;
    let mut at = 0u16;
    let mut len = 1;
    while len <= MAX_LEN {
        code = (code + count[len - 1]) << 1;
        first[len] = code;
        offset[len] = at;
        at += count[len] as u16;
        len += 1;
    }
    let mut symbols = [0u16; 257];
    let mut next = offset;
    let mut s = 0;
    while s < 257 {
        let len = LENGTHS[s] as usize;
        symbols[next[len] as usize] = s as u16;
        next[len] += 1;
        s += 1;
    }
    Canonical {
        first,
        count,
        offset,
        symbols,
    }
}

/// A Huffman string that does not decode: EOS inside it, or padding that is longer than seven
/// bits or not the EOS code's leading ones (RFC 7541 §5.2).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invalid;

/// Appends the decoding of `input` to `out`.
pub(super) fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), Invalid> {
    let c = &CANONICAL;
    let mut code = 0u32;
    let mut len = 0usize;
    // Whether every bit since the last symbol was a one (the only padding allowed).
    let mut ones = true;
    for &byte in input {
        for shift in (0..8).rev() {
            let bit = u32::from(byte >> shift) & 1;
            code = code << 1 | bit;
            len += 1;
            ones &= bit == 1;
            let index = code.wrapping_sub(c.first[len]);
            if index < c.count[len] {
                let symbol = c.symbols[usize::from(c.offset[len]) + index as usize];
                if symbol == EOS {
                    return Err(Invalid);
                }
                out.push(symbol as u8);
                code = 0;
                len = 0;
                ones = true;
            } else if len == MAX_LEN {
                return Err(Invalid);
            }
        }
    }
    if len > 7 || !ones {
        return Err(Invalid);
    }
    Ok(())
}

/// The code of `symbol`, for the tests' encoder.
#[cfg(test)]
fn code(symbol: usize) -> (u32, usize) {
    let c = &CANONICAL;
    let len = usize::from(LENGTHS[symbol]);
    let rank = (0..symbol)
        .filter(|&s| usize::from(LENGTHS[s]) == len)
        .count();
    (c.first[len] + rank as u32, len)
}

#[cfg(test)]
pub(super) fn encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u64, 0usize);
    for &b in input {
        let (code, len) = code(usize::from(b));
        acc = acc << len | u64::from(code);
        bits += len;
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        out.push((acc << (8 - bits)) as u8 | (0xff >> bits));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_rfcs() {
        assert_eq!(code(usize::from(b'0')), (0x0, 5));
        assert_eq!(code(usize::from(b'a')), (0x3, 5));
        assert_eq!(code(usize::from(b' ')), (0x14, 6));
        assert_eq!(code(usize::from(b'A')), (0x21, 6));
        assert_eq!(code(0), (0x1ff8, 13));
        assert_eq!(code(255), (0x3ffffee, 26));
        assert_eq!(code(256), (0x3fff_ffff, 30));
    }

    #[test]
    fn rfc_examples_decode() {
        // RFC 7541 C.4.1 and C.6.1.
        let cases: [(&[u8], &str); 3] = [
            (
                &[
                    0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
                ],
                "www.example.com",
            ),
            (&[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf], "no-cache"),
            (&[0x64, 0x02], "302"),
        ];
        for (input, text) in cases {
            let mut out = Vec::new();
            decode(input, &mut out).unwrap();
            assert_eq!(out, text.as_bytes());
            assert_eq!(encode(text.as_bytes()), input);
        }
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mut out = Vec::new();
        decode(&encode(&all), &mut out).unwrap();
        assert_eq!(out, all);
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        let mut out = Vec::new();
        // '0' (00000) padded with zeros instead of ones.
        assert_eq!(decode(&[0b0000_0000], &mut out), Err(Invalid));
        // A whole byte of padding.
        assert_eq!(decode(&[0b0000_0111, 0xff], &mut out), Err(Invalid));
        // EOS itself.
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff], &mut out), Err(Invalid));
    }
}

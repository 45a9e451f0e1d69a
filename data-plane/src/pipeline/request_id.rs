//! Request ids: kept from a trusted peer, otherwise generated without locks or formatting.

use std::cell::Cell;

thread_local! {
    /// Each thread counts from its own random start.
    static NEXT: Cell<u64> = Cell::new(fastrand::u64(..));
}

/// A request id as the HTTP/1 path keeps it: generated on the stack, or the trusted peer's.
#[derive(Debug)]
pub(crate) enum RequestId {
    Generated([u8; 16]),
    Kept(Box<[u8]>),
}

impl RequestId {
    pub(crate) fn new() -> Self {
        Self::Generated(generate_raw())
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Generated(id) => id,
            Self::Kept(id) => id,
        }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// A new request id: 16 lower-case hex digits, unique per process in practice (a per-thread
/// counter from a random start, through a bijective mix so that ids do not look sequential).
fn generate_raw() -> [u8; 16] {
    let n = NEXT.with(|next| {
        let n = next.get();
        next.set(n.wrapping_add(1));
        n
    });
    let mut buf = [0u8; 16];
    let mut x = mix(n);
    for b in buf.iter_mut().rev() {
        *b = b"0123456789abcdef"[(x & 0xf) as usize];
        x >>= 4;
    }
    buf
}

/// splitmix64's finaliser: a bijection of u64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_hex() {
        let ids: HashSet<_> = (0..10_000).map(|_| super::generate_raw()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id.iter().all(u8::is_ascii_hexdigit)));
    }
}

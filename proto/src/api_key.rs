//! API keys of `Consumer` resources: stored, compared and shown only as SHA-256 hashes. The
//! control plane hashes a key given in plain text before it writes the resource; a standalone
//! data plane does the same when it reads its file.

use crate::v1::{self, resource::Spec};

/// The lower-case hex SHA-256 of `key`: what is stored, and what a request's key is looked up by.
pub fn hash(key: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    for byte in digest(key) {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    hex
}

/// The SHA-256 of `key`.
pub fn digest(key: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Replaces every plain-text key of a Consumer with its hash (a key given as a hash stays).
pub fn hash_keys(resource: &mut v1::Resource) {
    if let Some(Spec::Consumer(consumer)) = &mut resource.spec {
        for key in &mut consumer.api_keys {
            if !key.key.is_empty() {
                key.key_hash = hash(key.key.as_bytes());
                key.key.clear();
            }
        }
    }
}

/// Whether `text` is a hash as [`hash`] writes it.
pub fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| HEX.contains(&b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_as_sha256_hex() {
        assert_eq!(
            super::hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(super::is_hash(&super::hash(b"x")));
        assert!(!super::is_hash("ABC"));
    }
}

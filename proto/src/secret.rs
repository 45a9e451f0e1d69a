//! Secrets sealed at rest: the private keys of `Certificate` resources, encrypted with
//! AES-256-GCM under the keys of a `--secret-key-file` (one per line, 64 hex characters; the
//! first seals, every one is tried to open, so a new key goes first and the old one stays until
//! what it sealed has been written again). A sealed value is `sealed:v1:<hex(nonce ‖
//! ciphertext ‖ tag)>` with the resource's kind and name as associated data, so it cannot be
//! moved to another certificate. A value without the prefix (written before keys were
//! configured) reads as it is. Used by the control plane's store and the data planes' disk
//! cache alike.

use std::fmt;

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
};

use crate::v1::{Resource, resource::Spec};

const PREFIX: &str = "sealed:v1:";

/// The keys of a key file.
pub struct SecretKeys {
    keys: Vec<LessSafeKey>,
    random: SystemRandom,
}

impl fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys themselves.
        f.debug_struct("SecretKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// What is wrong with a key file's text.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    #[error("line {0}: a key is 64 hex characters (32 bytes)")]
    Malformed(usize),
    #[error("no key (one per line, 64 hex characters; `#` starts a comment)")]
    Empty,
}

/// A secret that cannot be sealed or opened.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{0}: the private key does not open with any key given (was the key that sealed it removed?)"
    )]
    Open(String),
    #[error("{0}: sealing the private key failed")]
    Seal(String),
}

impl SecretKeys {
    /// Parses a key file's text.
    pub fn parse(text: &str) -> Result<Self, KeyTextError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = hex_decode(line)
                .filter(|b| b.len() == 32)
                .ok_or(KeyTextError::Malformed(i + 1))?;
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| KeyTextError::Malformed(i + 1))?;
            keys.push(LessSafeKey::new(key));
        }
        if keys.is_empty() {
            return Err(KeyTextError::Empty);
        }
        Ok(Self {
            keys,
            random: SystemRandom::new(),
        })
    }

    /// Seals a certificate's private key in place (other resources are left alone).
    pub fn seal(&self, resource: &mut Resource) -> Result<(), SecretError> {
        let aad = aad(resource);
        let Some(Spec::Certificate(spec)) = &mut resource.spec else {
            return Ok(());
        };
        if spec.private_key_pem.starts_with(PREFIX) {
            return Ok(());
        }
        let failed = || SecretError::Seal(format!("Certificate/{}", resource.name));
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| failed())?;
        let mut sealed = std::mem::take(&mut spec.private_key_pem).into_bytes();
        self.keys[0]
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut sealed,
            )
            .map_err(|_| failed())?;
        let mut out = String::with_capacity(PREFIX.len() + 2 * (NONCE_LEN + sealed.len()));
        out.push_str(PREFIX);
        hex_encode(&nonce, &mut out);
        hex_encode(&sealed, &mut out);
        spec.private_key_pem = out;
        Ok(())
    }

    /// Opens a certificate's sealed private key in place.
    pub fn open(&self, resource: &mut Resource) -> Result<(), SecretError> {
        let aad = aad(resource);
        let Some(Spec::Certificate(spec)) = &mut resource.spec else {
            return Ok(());
        };
        let Some(hex) = spec.private_key_pem.strip_prefix(PREFIX) else {
            return Ok(());
        };
        let failed = || SecretError::Open(format!("Certificate/{}", resource.name));
        let bytes = hex_decode(hex).ok_or_else(failed)?;
        if bytes.len() < NONCE_LEN {
            return Err(failed());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        for key in &self.keys {
            let mut buf = sealed.to_vec();
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| failed())?;
            if let Ok(plain) = key.open_in_place(nonce, Aad::from(&aad), &mut buf) {
                spec.private_key_pem = String::from_utf8(plain.to_vec()).map_err(|_| failed())?;
                return Ok(());
            }
        }
        Err(failed())
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// The associated data of a resource's secret: what it belongs to.
fn aad(resource: &Resource) -> Vec<u8> {
    format!("Certificate/{}", resource.name).into_bytes()
}

fn hex_encode(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1;

    const A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const B: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f";

    fn certificate(name: &str, key: &str) -> Resource {
        Resource {
            name: name.into(),
            version: 0,
            spec: Some(Spec::Certificate(v1::CertificateSpec {
                private_key_pem: key.into(),
                ..Default::default()
            })),
        }
    }

    fn key_of(resource: &Resource) -> &str {
        match &resource.spec {
            Some(Spec::Certificate(spec)) => &spec.private_key_pem,
            _ => unreachable!(),
        }
    }

    #[test]
    fn seals_opens_and_rotates() {
        let a = SecretKeys::parse(A).unwrap();
        let mut resource = certificate("gw", "the key");
        a.seal(&mut resource).unwrap();
        assert!(is_sealed(key_of(&resource)) && !key_of(&resource).contains("the key"));
        let sealed = resource.clone();
        // B first, A kept: opens what A sealed.
        let ba = SecretKeys::parse(&format!("# new first\n{B}\n{A}\n")).unwrap();
        ba.open(&mut resource).unwrap();
        assert_eq!(key_of(&resource), "the key");
        // B alone cannot.
        let mut again = sealed.clone();
        let b = SecretKeys::parse(B).unwrap();
        assert_eq!(
            b.open(&mut again),
            Err(SecretError::Open("Certificate/gw".into()))
        );
        // Moved to another name, it does not open either.
        let mut moved = sealed;
        moved.name = "other".into();
        assert!(a.open(&mut moved).is_err());
        // A value never sealed reads as it is.
        let mut plain = certificate("gw", "plain");
        a.open(&mut plain).unwrap();
        assert_eq!(key_of(&plain), "plain");
    }

    #[test]
    fn bad_key_text_is_refused_by_line() {
        assert_eq!(
            SecretKeys::parse(&format!("{A}\nabcd\n")).unwrap_err(),
            KeyTextError::Malformed(2)
        );
        assert_eq!(
            SecretKeys::parse("# nothing\n").unwrap_err(),
            KeyTextError::Empty
        );
        assert!(!format!("{:?}", SecretKeys::parse(A).unwrap()).contains("0001"));
    }
}

//! Secrets encrypted at rest: a [`Store`] in front of another that seals every certificate's
//! private key with AES-256-GCM before it is written and opens it when read (lists and
//! watches), so that a copy of etcd, of the embedded file or of their backups holds no usable
//! key. The rest of the control plane (validation, the reflector, the stream to the data
//! planes, which needs the key) sees keys in the clear and never knows.
//!
//! Keys come from `--secret-key-file`: one per line, 64 hex characters (32 bytes). The first
//! seals; every one is tried to open, so a new key can be put first and the old kept until
//! every sealed value has been written again. A sealed value is
//! `sealed:v1:<hex(nonce ‖ ciphertext ‖ tag)>`, with the resource's kind and name as the
//! associated data, so a sealed key cannot be moved to another certificate. A value without
//! the prefix (written before keys were configured) is read as it is.

use std::{fmt, path::Path, sync::Arc};

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
};
use futures_util::StreamExt;
use gateway_proto::v1::{DataPlaneStatus, Resource, resource::Spec};

use super::{BoxFuture, Event, Listing, Op, Store, StoreError, WatchStream};

const PREFIX: &str = "sealed:v1:";

/// The keys of `--secret-key-file`.
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

/// A `--secret-key-file` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: a key is 64 hex characters (32 bytes)")]
    Malformed { path: String, line: usize },
    #[error("{path} holds no key")]
    Empty { path: String },
}

impl SecretKeys {
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = || KeyFileError::Malformed {
                path: shown.clone(),
                line: i + 1,
            };
            let bytes = hex_decode(line)
                .filter(|b| b.len() == 32)
                .ok_or_else(malformed)?;
            let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| malformed())?;
            keys.push(LessSafeKey::new(key));
        }
        if keys.is_empty() {
            return Err(KeyFileError::Empty { path: shown });
        }
        Ok(Self {
            keys,
            random: SystemRandom::new(),
        })
    }

    fn seal(&self, aad: &[u8], plain: &str) -> Result<String, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| StoreError::Internal("no randomness for a nonce".into()))?;
        let mut sealed = plain.as_bytes().to_vec();
        self.keys[0]
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed,
            )
            .map_err(|_| StoreError::Internal("sealing a secret failed".into()))?;
        let mut out = String::with_capacity(PREFIX.len() + 2 * (NONCE_LEN + sealed.len()));
        out.push_str(PREFIX);
        hex_encode(&nonce, &mut out);
        hex_encode(&sealed, &mut out);
        Ok(out)
    }

    fn open(&self, aad: &[u8], stored: &str) -> Result<String, ()> {
        let Some(hex) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let bytes = hex_decode(hex).ok_or(())?;
        if bytes.len() < NONCE_LEN {
            return Err(());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        for key in &self.keys {
            let mut buf = sealed.to_vec();
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| ())?;
            if let Ok(plain) = key.open_in_place(nonce, Aad::from(aad), &mut buf) {
                return String::from_utf8(plain.to_vec()).map_err(|_| ());
            }
        }
        Err(())
    }
}

/// The associated data of a resource's secret: what it belongs to.
fn aad(resource: &Resource) -> Vec<u8> {
    format!("Certificate/{}", resource.name).into_bytes()
}

/// A store whose certificates' private keys are sealed at rest.
#[derive(Debug)]
pub struct SealedStore {
    inner: Arc<dyn Store>,
    keys: Arc<SecretKeys>,
}

impl SealedStore {
    pub fn new(inner: Arc<dyn Store>, keys: SecretKeys) -> Self {
        Self {
            inner,
            keys: Arc::new(keys),
        }
    }
}

/// Opens a resource's sealed secret in place.
fn open(keys: &SecretKeys, resource: &mut Resource) -> Result<(), StoreError> {
    let aad = aad(resource);
    if let Some(Spec::Certificate(spec)) = &mut resource.spec {
        spec.private_key_pem = keys.open(&aad, &spec.private_key_pem).map_err(|()| {
            StoreError::Internal(
                format!(
                    "Certificate/{}: the private key does not open with any key of \
                     --secret-key-file (was the key that sealed it removed?)",
                    resource.name
                )
                .into(),
            )
        })?;
    }
    Ok(())
}

impl Store for SealedStore {
    fn list(&self) -> BoxFuture<'_, Result<Listing, StoreError>> {
        Box::pin(async move {
            let mut listing = self.inner.list().await?;
            for resource in &mut listing.resources {
                open(&self.keys, resource)?;
            }
            Ok(listing)
        })
    }

    fn commit(
        &self,
        expected_version: i64,
        mut ops: Vec<Op>,
    ) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(async move {
            for op in &mut ops {
                if let Op::Put(resource) = op {
                    let aad = aad(resource);
                    if let Some(Spec::Certificate(spec)) = &mut resource.spec {
                        spec.private_key_pem = self.keys.seal(&aad, &spec.private_key_pem)?;
                    }
                }
            }
            self.inner.commit(expected_version, ops).await
        })
    }

    fn watch(&self, from_revision: i64) -> BoxFuture<'_, Result<WatchStream, StoreError>> {
        Box::pin(async move {
            let stream = self.inner.watch(from_revision).await?;
            let keys = self.keys.clone();
            let opened = stream.map(move |batch| {
                let mut batch = batch?;
                for event in &mut batch.events {
                    if let Event::Put(resource) = event {
                        open(&keys, resource)?;
                    }
                }
                Ok(batch)
            });
            Ok(Box::pin(opened) as WatchStream)
        })
    }

    fn put_dataplane(&self, status: DataPlaneStatus) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.put_dataplane(status)
    }

    fn remove_dataplane(&self, id: &str) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.remove_dataplane(id)
    }

    fn list_dataplanes(&self) -> BoxFuture<'_, Result<Vec<DataPlaneStatus>, StoreError>> {
        self.inner.list_dataplanes()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.inner.close()
    }
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
mod tests;

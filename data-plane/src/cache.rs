//! The on-disk cache of the last good snapshot, so that a restart while every control plane
//! is unreachable still serves. One file: a header (magic, length, CRC-32) and the protobuf
//! bytes, written atomically (temp file, fsync, rename, fsync of the directory), readable by its
//! owner alone. With `--secret-key-file` the certificates' private keys in it are sealed
//! (`gateway_proto::secret`), so that a copy of the file holds no usable key.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use gateway_proto::{
    secret::{self, SecretError, SecretKeys},
    v1::{self, resource::Spec},
};
use prost::Message;

/// The cache file inside the cache directory.
pub const FILE_NAME: &str = "snapshot.bin";

const MAGIC: &[u8; 8] = b"GWSNAP\x00\x01";
const HEADER_LEN: usize = MAGIC.len() + 8 + 4;

/// Why the cache could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file does not start with the cache's magic bytes.
    #[error("{path}: not a snapshot cache file")]
    BadMagic { path: PathBuf },
    /// The file ends inside its header (e.g. a torn write).
    #[error("{path}: truncated: {found} bytes, shorter than the header")]
    Truncated { path: PathBuf, found: usize },
    /// The file is shorter or longer than its header says (e.g. a torn write).
    #[error("{path}: truncated or oversized: header says {expected} bytes, found {found}")]
    Length {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// The checksum does not match the content.
    #[error("{path}: checksum mismatch")]
    Checksum { path: PathBuf },
    /// A sealed private key does not open with the keys given.
    #[error("{path}: {source}")]
    Secret {
        path: PathBuf,
        #[source]
        source: SecretError,
    },
    /// The file holds sealed private keys and no keys were given to open them.
    #[error("{path}: holds sealed private keys; start with the --secret-key-file that sealed them")]
    NoKeys { path: PathBuf },
    /// The content is not a snapshot.
    #[error("{path}: cannot decode the snapshot")]
    Decode {
        path: PathBuf,
        #[source]
        source: prost::DecodeError,
    },
}

/// The path of the cache file in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Writes `snapshot` as the cache in `dir`, atomically.
pub fn store(
    dir: &Path,
    snapshot: &v1::Snapshot,
    keys: Option<&SecretKeys>,
) -> Result<(), CacheError> {
    let bytes = encode(snapshot, keys).map_err(|source| CacheError::Secret {
        path: path(dir),
        source,
    })?;
    store_encoded(dir, &bytes)
}

fn has_certificates(snapshot: &v1::Snapshot) -> bool {
    snapshot
        .resources
        .iter()
        .any(|r| matches!(r.spec, Some(Spec::Certificate(_))))
}

/// The cache file's bytes for `snapshot`, its private keys sealed with `keys`: the part that
/// needs the snapshot, so that a writer can take it and leave the slower synced write for later.
pub fn encode(snapshot: &v1::Snapshot, keys: Option<&SecretKeys>) -> Result<Vec<u8>, SecretError> {
    let body = match keys {
        Some(keys) if has_certificates(snapshot) => {
            let mut sealed = snapshot.clone();
            for resource in &mut sealed.resources {
                keys.seal(resource)?;
            }
            sealed.encode_to_vec()
        }
        _ => snapshot.encode_to_vec(),
    };
    let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Writes bytes from [`encode`] as the cache in `dir`, atomically and durably.
pub fn store_encoded(dir: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| CacheError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let target = path(dir);
    let temp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let written = (|| {
        // Owner only: the snapshot holds the certificates' private keys.
        let mut file = owner_only().open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(source) = written {
        let _ = fs::remove_file(&temp);
        return Err(CacheError::Io { path: temp, source });
    }
    fs::rename(&temp, &target).map_err(|source| {
        let _ = fs::remove_file(&temp);
        CacheError::Io {
            path: target.clone(),
            source,
        }
    })?;
    // Make the rename itself durable.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    Ok(())
}

/// Reads the cache in `dir`, opening its sealed private keys with `keys`: `None` when there is
/// none, an error when it does not verify or a key does not open.
pub fn load(dir: &Path, keys: Option<&SecretKeys>) -> Result<Option<v1::Snapshot>, CacheError> {
    let path = path(dir);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CacheError::Io { path, source }),
    };
    let magic_len = bytes.len().min(MAGIC.len());
    if bytes.is_empty() || bytes[..magic_len] != MAGIC[..magic_len] {
        return Err(CacheError::BadMagic { path });
    }
    if bytes.len() < HEADER_LEN {
        return Err(CacheError::Truncated {
            path,
            found: bytes.len(),
        });
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[MAGIC.len()..MAGIC.len() + 8]);
    let expected = u64::from_le_bytes(len);
    let body = &bytes[HEADER_LEN..];
    if body.len() as u64 != expected {
        return Err(CacheError::Length {
            path,
            expected,
            found: body.len() as u64,
        });
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[MAGIC.len() + 8..HEADER_LEN]);
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err(CacheError::Checksum { path });
    }
    let mut snapshot = match v1::Snapshot::decode(body) {
        Ok(snapshot) => snapshot,
        Err(source) => return Err(CacheError::Decode { path, source }),
    };
    for resource in &mut snapshot.resources {
        let Some(Spec::Certificate(spec)) = &resource.spec else {
            continue;
        };
        match keys {
            Some(keys) => keys.open(resource).map_err(|source| CacheError::Secret {
                path: path.clone(),
                source,
            })?,
            None if secret::is_sealed(&spec.private_key_pem) => {
                return Err(CacheError::NoKeys { path });
            }
            None => {}
        }
    }
    Ok(Some(snapshot))
}

/// Options that create (or truncate) a file readable and writable by its owner alone.
fn owner_only() -> fs::OpenOptions {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> v1::Snapshot {
        v1::Snapshot {
            version: 42,
            resources: vec![v1::Resource {
                name: "users".into(),
                version: 7,
                spec: Some(v1::resource::Spec::Upstream(v1::UpstreamSpec {
                    endpoints: vec![v1::Endpoint {
                        address: "127.0.0.1:9001".into(),
                        weight: None,
                    }],
                    ..Default::default()
                })),
            }],
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path(), None).unwrap().is_none());
        store(dir.path(), &snapshot(), None).unwrap();
        assert_eq!(load(dir.path(), None).unwrap(), Some(snapshot()));
        // Overwrites atomically, leaving no temp file behind.
        store(dir.path(), &v1::Snapshot::default(), None).unwrap();
        assert_eq!(
            load(dir.path(), None).unwrap(),
            Some(v1::Snapshot::default())
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    #[cfg(unix)]
    fn the_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &snapshot(), None).unwrap();
        let mode = fs::metadata(path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn corrupt_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &snapshot(), None).unwrap();
        let file = path(dir.path());
        let good = fs::read(&file).unwrap();

        fs::write(&file, &good[..good.len() - 3]).unwrap();
        assert!(matches!(
            load(dir.path(), None),
            Err(CacheError::Length { .. })
        ));

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        fs::write(&file, &flipped).unwrap();
        assert!(matches!(
            load(dir.path(), None),
            Err(CacheError::Checksum { .. })
        ));

        fs::write(&file, &good[..10]).unwrap();
        assert!(matches!(
            load(dir.path(), None),
            Err(CacheError::Truncated { .. })
        ));

        fs::write(&file, b"garbage").unwrap();
        assert!(matches!(
            load(dir.path(), None),
            Err(CacheError::BadMagic { .. })
        ));

        fs::write(&file, b"").unwrap();
        assert!(matches!(
            load(dir.path(), None),
            Err(CacheError::BadMagic { .. })
        ));
    }

    #[test]
    fn private_keys_are_sealed_in_the_file_when_keys_are_given() {
        let key = "-----BEGIN PRIVATE KEY-----\nTHE-SECRET-BYTES\n-----END PRIVATE KEY-----\n";
        let mut with_key = snapshot();
        with_key.resources.push(v1::Resource {
            name: "gw".into(),
            version: 1,
            spec: Some(Spec::Certificate(v1::CertificateSpec {
                hostnames: vec!["gw.test".into()],
                private_key_pem: key.into(),
                ..Default::default()
            })),
        });
        let keys =
            SecretKeys::parse("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &with_key, Some(&keys)).unwrap();
        let raw = fs::read(path(dir.path())).unwrap();
        assert!(!raw.windows(16).any(|w| w == b"THE-SECRET-BYTES"));
        assert_eq!(
            load(dir.path(), Some(&keys)).unwrap(),
            Some(with_key.clone())
        );
        // Without the keys the cache is refused by name, not served with a broken key.
        assert!(matches!(
            load(dir.path(), None),
            Err(CacheError::NoKeys { .. })
        ));
        // Without keys given at all, it is written as it is.
        store(dir.path(), &with_key, None).unwrap();
        let raw = fs::read(path(dir.path())).unwrap();
        assert!(raw.windows(16).any(|w| w == b"THE-SECRET-BYTES"));
    }
}

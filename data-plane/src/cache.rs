//! The on-disk cache of the last good snapshot, so that a restart while every control plane
//! is unreachable still serves. One file: a header (magic, length, CRC-32) and the protobuf
//! bytes, written atomically (temp file, fsync, rename, fsync of the directory).

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use gateway_proto::v1;
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
pub fn store(dir: &Path, snapshot: &v1::Snapshot) -> Result<(), CacheError> {
    store_encoded(dir, &encode(snapshot))
}

/// The cache file's bytes for `snapshot`: the part that needs the snapshot, so that a writer can
/// take it and leave the slower synced write for later.
pub fn encode(snapshot: &v1::Snapshot) -> Vec<u8> {
    let body = snapshot.encode_to_vec();
    let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes
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

/// Reads the cache in `dir`: `None` when there is none, an error when it does not verify.
pub fn load(dir: &Path) -> Result<Option<v1::Snapshot>, CacheError> {
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
    v1::Snapshot::decode(body)
        .map(Some)
        .map_err(|source| CacheError::Decode { path, source })
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
        assert!(load(dir.path()).unwrap().is_none());
        store(dir.path(), &snapshot()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(snapshot()));
        // Overwrites atomically, leaving no temp file behind.
        store(dir.path(), &v1::Snapshot::default()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(v1::Snapshot::default()));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    #[cfg(unix)]
    fn the_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &snapshot()).unwrap();
        let mode = fs::metadata(path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn corrupt_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &snapshot()).unwrap();
        let file = path(dir.path());
        let good = fs::read(&file).unwrap();

        fs::write(&file, &good[..good.len() - 3]).unwrap();
        assert!(matches!(load(dir.path()), Err(CacheError::Length { .. })));

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        fs::write(&file, &flipped).unwrap();
        assert!(matches!(load(dir.path()), Err(CacheError::Checksum { .. })));

        fs::write(&file, &good[..10]).unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(CacheError::Truncated { .. })
        ));

        fs::write(&file, b"garbage").unwrap();
        assert!(matches!(load(dir.path()), Err(CacheError::BadMagic { .. })));

        fs::write(&file, b"").unwrap();
        assert!(matches!(load(dir.path()), Err(CacheError::BadMagic { .. })));
    }
}

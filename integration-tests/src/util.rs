//! Small helpers: free ports, unique names, files.

use std::{net::TcpListener, path::Path};

/// A port that was free a moment ago, for programs that cannot report the port they bound
/// (etcd). Everything that can is started on port 0 and read back instead.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A random lower-case suffix for names that must not collide between tests.
pub fn random_suffix() -> String {
    (0..10).map(|_| fastrand::lowercase()).collect()
}

/// A fresh etcd prefix for one test: `/gateway-test-<random>/v1`.
pub fn unique_prefix() -> String {
    format!("/gateway-test-{}/v1", random_suffix())
}

/// Writes `contents` to `path`, creating parent directories; panics on failure.
pub fn write_file(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) {
    let path = path.as_ref();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    }
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

//! Locating the workspace's binaries.
//!
//! Cargo exposes `CARGO_BIN_EXE_*` only for the binaries of the package under test, so the
//! gateway's programs are looked up in the directory of the test executable's profile
//! (`target/<profile>/`), or in `GATEWAY_BIN_DIR` when set (e.g. release binaries).

use std::path::PathBuf;

/// The control plane's program name.
pub const CONTROL_PLANE: &str = "gateway-control-plane";
/// The data plane's program name.
pub const DATA_PLANE: &str = "gateway-data-plane";
/// The CLI's program name.
pub const GATEWAYCTL: &str = "gatewayctl";
/// The echo backend of this crate.
pub const DEMO_BACKEND: &str = "demo-backend";

/// The directory that holds the built binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GATEWAY_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // The test executable is `target/<profile>/deps/e2e-<hash>`; binaries are one level up.
    let exe = std::env::current_exe().expect("the path of the test executable");
    let mut dir = exe
        .parent()
        .expect("the test executable's directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The path of a workspace binary; panics with what to do when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let dir = bin_dir();
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        panic!(
            "binary `{name}` not found at {}: run `cargo build --workspace --bins` first \
             (with the same profile as the tests), or set GATEWAY_BIN_DIR to the directory \
             that holds the gateway's binaries",
            path.display()
        );
    }
    path
}

//! The data plane's disk cache of the last good snapshot.

use std::path::{Path, PathBuf};

use integration_tests::{
    ControlPlane, ControlPlaneOpts, DataPlane, DataPlaneOpts, DemoBackend, eventually,
};

use crate::support::{docs, route, upstream, wait_connected, wait_served};

/// Every file below `dir`.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// A control plane (embedded store) and a data plane that has acknowledged `/cached`.
async fn served_once(backend: &DemoBackend) -> (ControlPlane, DataPlane) {
    let cp = ControlPlane::start(ControlPlaneOpts::embedded()).await;
    let dp = DataPlane::start(DataPlaneOpts::control_planes([cp.url()])).await;
    let ctl = cp.ctl();
    wait_connected(&ctl, &[dp.id()]).await;
    ctl.apply_yaml(
        &docs(&[
            upstream("echo", &[backend.addr()]),
            route("cached", "/cached", "echo"),
        ]),
        &["--wait"],
    )
    .await
    .success();
    wait_served(&dp, "/cached/x", backend.name()).await;
    dp.wait_cached().await;
    (cp, dp)
}

/// (e) A data plane restarted while the control plane is down serves its cached snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_restarted_without_control_plane_serves_from_its_cache() {
    let backend = DemoBackend::start("echo-e").await;
    let (mut cp, mut dp) = served_once(&backend).await;
    let version = dp.config_version().await.unwrap();
    assert!(version.is_some(), "/config has a version once served");

    cp.kill().await;
    dp.restart().await;
    wait_served(&dp, "/cached/x", "echo-e").await;
    assert_eq!(dp.ready_status().await.unwrap(), 200);
    assert_eq!(dp.config_version().await.unwrap(), version);

    // When the control plane is back, it catches up with changes.
    cp.restart().await;
    cp.ctl()
        .apply_yaml(&route("later", "/later", "echo"), &[])
        .await
        .success();
    wait_served(&dp, "/later/x", "echo-e").await;
}

/// (f) A corrupt cache is refused (logged), the data plane runs on without a config, and
/// serves once the control plane delivers one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cache_is_refused_and_the_control_plane_config_is_served() {
    let backend = DemoBackend::start("echo-f").await;
    let (mut cp, mut dp) = served_once(&backend).await;
    cp.kill().await;
    dp.kill().await;

    let files = files_below(dp.cache_dir());
    assert!(
        !files.is_empty(),
        "the data plane wrote no cache file in {}",
        dp.cache_dir().display()
    );
    for file in &files {
        let mut garbage = b"\x00\x01not a snapshot\xff\xfe".repeat(16);
        garbage.truncate(garbage.len() - 3);
        std::fs::write(file, garbage).unwrap();
    }

    let mark = dp.process().stderr_mark();
    dp.restart().await;
    eventually(
        "the data plane to log that it refuses its cache",
        || async {
            let log = dp.process().stderr_since(mark).to_lowercase();
            anyhow::ensure!(log.contains("cache"), "log so far:\n{log}");
            Ok(())
        },
    )
    .await;
    assert!(dp.process_mut().is_running(), "the data plane crashed");
    assert_eq!(
        dp.ready_status().await.unwrap(),
        503,
        "ready without a config"
    );
    assert_eq!(dp.config_version().await.unwrap(), None);

    cp.restart().await;
    wait_served(&dp, "/cached/x", "echo-f").await;
    assert_eq!(dp.ready_status().await.unwrap(), 200);
}

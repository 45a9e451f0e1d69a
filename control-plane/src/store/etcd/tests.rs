//! The etcd store against a real etcd started on free ports. These tests need the `etcd`
//! binary (`ETCD_BIN`, `PATH` or /usr/bin/etcd) and fail, never skip, without it.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::StreamExt as _;

use super::*;
use crate::store::conformance::{self, upstream};

/// A throw-away etcd, killed on drop.
struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn etcd_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ETCD_BIN") {
        return bin.into();
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file());
    match on_path {
        Some(bin) => bin,
        None => panic!(
            "these tests need an etcd binary: install etcd-server (apt-get install etcd-server), \
             put `etcd` on PATH or set ETCD_BIN"
        ),
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

async fn start_etcd() -> Etcd {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let child = Command::new(etcd_binary())
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("default={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    let etcd = Etcd {
        child,
        url,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut client) = Client::connect([&etcd.url], None).await
            && client.status().await.is_ok()
        {
            return etcd;
        }
        assert!(Instant::now() < deadline, "etcd did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_on_etcd() {
    let etcd = start_etcd().await;
    let store = EtcdStore::connect(std::slice::from_ref(&etcd.url), "/conformance/a")
        .await
        .expect("connect");
    conformance::run_all(Arc::new(store.clone())).await;
    // A second prefix on the same etcd is a fresh store.
    let other = EtcdStore::connect(std::slice::from_ref(&etcd.url), "/conformance/b/")
        .await
        .expect("connect");
    conformance::run_all(Arc::new(other)).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_fails_old_watches_and_large_commits_pass() {
    let etcd = start_etcd().await;
    let store = EtcdStore::connect(std::slice::from_ref(&etcd.url), "/gw")
        .await
        .expect("connect");
    // More operations than two levels of nested transactions hold (63 * 63).
    let ops = (0..10_000)
        .map(|i| Op::Put(upstream(&format!("u{i}"), 9000)))
        .collect();
    let v1 = store.commit(0, ops).await.expect("large commit");
    let listing = store.list().await.expect("list");
    assert_eq!(listing.resources.len(), 10_000);
    assert!(listing.resources.iter().all(|r| r.version == v1));
    let v2 = store
        .commit(v1, vec![Op::Put(upstream("u0", 9001))])
        .await
        .expect("commit");

    let mut client = Client::connect([&etcd.url], None).await.expect("client");
    client.compact(v2, None).await.expect("compact");
    let mut old = store.watch(v1).await.expect("watch");
    match old.next().await {
        Some(Err(StoreError::Compacted { compact_revision })) => assert!(compact_revision >= v2),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(store.list().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_entries_go_with_the_lease() {
    let etcd = start_etcd().await;
    let urls = std::slice::from_ref(&etcd.url);
    let one = EtcdStore::connect(urls, "/gw").await.expect("connect");
    let two = EtcdStore::connect(urls, "/gw").await.expect("connect");
    let status = DataPlaneStatus {
        id: "dp-1".into(),
        ..DataPlaneStatus::default()
    };
    one.put_dataplane(status.clone()).await.expect("put");
    two.put_dataplane(DataPlaneStatus {
        id: "dp-2".into(),
        ..DataPlaneStatus::default()
    })
    .await
    .expect("put");
    // The data plane moved to `two`: `one` must not remove `two`'s entry.
    two.put_dataplane(status).await.expect("put");
    one.remove_dataplane("dp-1").await.expect("remove");
    let ids = |all: Vec<DataPlaneStatus>| all.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(one.list_dataplanes().await.expect("list")),
        ["dp-1", "dp-2"]
    );
    // Closing revokes the lease: its entries go at once.
    two.close().await;
    assert!(one.list_dataplanes().await.expect("list").is_empty());
    one.close().await;
}

#[tokio::test]
async fn unreachable_etcd_is_unavailable_not_fatal() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let store = EtcdStore::connect(&[url], "/gw")
        .await
        .expect("connect is lazy");
    assert!(matches!(
        store.list().await,
        Err(StoreError::Unavailable(_))
    ));
    store.close().await;
}

#[test]
fn prefix_ends() {
    assert_eq!(prefix_end(b"/gw/routes/"), b"/gw/routes0".to_vec());
    assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
}

#[test]
fn nests_large_transactions() {
    let ops: Vec<TxnOp> = (0..1000)
        .map(|i| TxnOp::put(format!("k{i}"), "v", None))
        .collect();
    // Two levels of at most 63: 16 transactions at the top (plus the marker: 17 + 63 <= 128).
    assert_eq!(nest(ops).len(), 1000usize.div_ceil(63));
    // Past 63 * 63, three levels of at most 42: 10,000 -> 239 -> 6 at the top.
    let ops: Vec<TxnOp> = (0..10_000)
        .map(|i| TxnOp::put(format!("k{i}"), "v", None))
        .collect();
    assert_eq!(nest(ops).len(), 6);
    let small: Vec<TxnOp> = (0..5)
        .map(|i| TxnOp::put(format!("k{i}"), "v", None))
        .collect();
    assert_eq!(nest(small).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_over_etcds_request_limit_is_too_large_and_writes_nothing() {
    let etcd = start_etcd().await;
    let store = EtcdStore::connect(std::slice::from_ref(&etcd.url), "/gw")
        .await
        .expect("connect");
    // ~19.5 bytes an endpoint: 28 upstreams are over etcd's default --max-request-bytes
    // (1.5 MiB), 40 over its gRPC message limit (2 MiB). Both are too large, not unavailable.
    for upstreams in [28, 40] {
        let error = store
            .commit(0, big_upstreams(upstreams))
            .await
            .expect_err("over the limit");
        assert!(matches!(error, StoreError::TooLarge(_)), "{error:?}");
    }
    assert!(store.list().await.expect("list").resources.is_empty());
}

fn big_upstreams(count: usize) -> Vec<Op> {
    (0..count)
        .map(|u| {
            let mut resource = upstream(&format!("big-{u}"), 9000);
            if let Some(gateway_proto::v1::resource::Spec::Upstream(spec)) = &mut resource.spec {
                spec.endpoints = (0..3000)
                    .map(|e| gateway_proto::v1::Endpoint {
                        address: format!("10.{}.{}.{}:8080", u, e / 250, e % 250),
                        weight: None,
                    })
                    .collect();
            }
            Op::Put(resource)
        })
        .collect()
}

use std::sync::Arc;

use futures_util::StreamExt as _;

use super::*;
use crate::store::conformance::{self, upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    conformance::run_all(Arc::new(store)).await;
}

#[tokio::test]
async fn survives_reopen_with_the_same_revisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v1 = {
        let store = EmbeddedStore::open(dir.path()).expect("open");
        store
            .commit(0, vec![Op::Put(upstream("users", 9001))])
            .await
            .expect("commit")
    };
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    let listing = store.list().await.expect("list");
    assert_eq!((listing.version, listing.revision), (v1, v1));
    assert_eq!(listing.resources.len(), 1);
    assert_eq!(listing.resources[0].version, v1);
    // History from before the reopen is gone: re-list.
    assert!(matches!(
        store.watch(v1).await.err(),
        Some(StoreError::Compacted { compact_revision }) if compact_revision == v1 + 1
    ));
    let v2 = store
        .commit(v1, vec![Op::Put(upstream("users", 9002))])
        .await
        .expect("commit after reopen");
    assert_eq!(v2, v1 + 1);
}

#[tokio::test]
async fn second_open_of_one_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _store = EmbeddedStore::open(dir.path()).expect("open");
    let second = EmbeddedStore::open(dir.path());
    assert!(
        matches!(&second, Err(StoreError::Open(e)) if e.to_string().contains("in use")),
        "{second:?}"
    );
}

#[tokio::test]
async fn compaction_and_lagging_watchers_get_compacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open_with(dir.path(), EmbeddedOptions { history: 4 }).expect("open");
    let mut lagging = store.watch(1).await.expect("watch");
    let mut version = 0;
    for port in 1..=10 {
        version = store
            .commit(version, vec![Op::Put(upstream("users", port))])
            .await
            .expect("commit");
    }
    // Four batches were kept for it; then it finds it fell behind.
    let mut seen = Vec::new();
    let error = loop {
        match lagging.next().await {
            Some(Ok(batch)) => seen.push(batch.revision),
            Some(Err(e)) => break e,
            None => panic!("the watch ended without an error"),
        }
    };
    assert!(matches!(error, StoreError::Compacted { .. }), "{error:?}");
    assert!(lagging.next().await.is_none(), "a failed watch ends");
    assert!(seen.len() <= 4, "{seen:?}");

    // History keeps the last four commits.
    assert!(store.watch(version - 3).await.is_ok());
    assert!(matches!(
        store.watch(version - 4).await.err(),
        Some(StoreError::Compacted { compact_revision }) if compact_revision == version - 3
    ));
    store.compact(version);
    assert!(matches!(
        store.watch(version).await.err(),
        Some(StoreError::Compacted { .. })
    ));
    // The future is always watchable.
    let mut live = store
        .watch(version + 1)
        .await
        .expect("watch from the next revision");
    store
        .commit(
            version,
            vec![Op::Delete(
                gateway_proto::ResourceKind::Upstream,
                "users".into(),
            )],
        )
        .await
        .expect("commit");
    let batch = live.next().await.expect("batch").expect("ok");
    assert_eq!(batch.revision, version + 1);
    assert_eq!(batch.version_changed, Some(version + 1));
}

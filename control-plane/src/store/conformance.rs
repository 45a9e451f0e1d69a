//! The store conformance suite: what every [`Store`] must do, run against the embedded store by
//! the unit tests and against etcd by the integration tests.
//!
//! [`run_all`] expects a fresh store (an empty data directory, or an etcd prefix nobody else
//! uses) and panics with a message naming the broken property. The service registry's checks
//! are in [`services`].

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt as _;
use gateway_proto::{
    ResourceKind,
    v1::{self, DataPlaneStatus, Resource, resource::Spec},
};

use super::{Event, Listing, Op, Store, StoreError, WatchStream};

mod services;

/// How long a watch may take to deliver a commit.
const PATIENCE: Duration = Duration::from_secs(10);

/// Runs every check, in order, on one fresh store.
pub async fn run_all(store: Arc<dyn Store>) {
    empty_list(store.as_ref()).await;
    create_update_delete(store.as_ref()).await;
    guard_conflict(store.as_ref()).await;
    invalid_op_writes_nothing(store.as_ref()).await;
    watch_sees_every_commit(store.as_ref()).await;
    concurrent_commits(store.clone()).await;
    registry(store.as_ref()).await;
    services::run(store.as_ref()).await;
}

/// An upstream with one endpoint.
pub fn upstream(name: &str, port: u16) -> Resource {
    Resource {
        name: name.to_owned(),
        version: 0,
        spec: Some(Spec::Upstream(v1::UpstreamSpec {
            endpoints: vec![v1::Endpoint {
                address: format!("127.0.0.1:{port}"),
                weight: None,
            }],
            ..Default::default()
        })),
    }
}

/// A route sending everything under `/<name>` to `upstream`.
pub fn route(name: &str, upstream: &str) -> Resource {
    Resource {
        name: name.to_owned(),
        version: 0,
        spec: Some(Spec::Route(v1::RouteSpec {
            hostnames: vec![],
            rules: vec![v1::RouteRule {
                matches: vec![v1::RouteMatch {
                    path: Some(v1::PathMatch {
                        r#type: v1::path_match::Type::PathPrefix as i32,
                        value: format!("/{name}"),
                    }),
                    ..Default::default()
                }],
                backend_refs: vec![v1::BackendRef {
                    name: upstream.to_owned(),
                    weight: None,
                }],
                ..Default::default()
            }],
            ..Default::default()
        })),
    }
}

async fn list(store: &dyn Store, check: &str) -> Listing {
    match store.list().await {
        Ok(listing) => listing,
        Err(e) => panic!("store conformance: {check}: list failed: {e}"),
    }
}

async fn commit(store: &dyn Store, expected: i64, ops: Vec<Op>, check: &str) -> i64 {
    match store.commit(expected, ops).await {
        Ok(version) => version,
        Err(e) => panic!("store conformance: {check}: commit at version {expected} failed: {e}"),
    }
}

fn find<'a>(listing: &'a Listing, kind: ResourceKind, name: &str) -> Option<&'a Resource> {
    listing
        .resources
        .iter()
        .find(|r| r.name == name && ResourceKind::of(r) == Some(kind))
}

async fn empty_list(store: &dyn Store) {
    let check = "empty list";
    let listing = list(store, check).await;
    assert_eq!(
        listing.version, 0,
        "store conformance: {check}: a fresh store must have config version 0"
    );
    assert!(
        listing.resources.is_empty(),
        "store conformance: {check}: a fresh store must hold no resources, found {:?}",
        listing
            .resources
            .iter()
            .map(|r| &r.name)
            .collect::<Vec<_>>()
    );
}

async fn create_update_delete(store: &dyn Store) {
    let check = "create, update, delete";
    let before = list(store, check).await;
    let v1 = commit(
        store,
        before.version,
        vec![Op::Put(upstream("cud-users", 9001))],
        check,
    )
    .await;
    assert!(
        v1 > before.version,
        "store conformance: {check}: the version must grow"
    );
    let listing = list(store, check).await;
    assert_eq!(
        listing.version, v1,
        "store conformance: {check}: listed version after create"
    );
    assert!(
        listing.revision >= v1,
        "store conformance: {check}: list revision < version"
    );
    let created = find(&listing, ResourceKind::Upstream, "cud-users")
        .unwrap_or_else(|| panic!("store conformance: {check}: created upstream not listed"));
    assert_eq!(
        created.version, v1,
        "store conformance: {check}: mod revision of a new key"
    );
    assert_eq!(
        created.spec,
        upstream("cud-users", 9001).spec,
        "store conformance: {check}: spec"
    );

    let v2 = commit(
        store,
        v1,
        vec![Op::Put(route("cud-api", "cud-users"))],
        check,
    )
    .await;
    let v3 = commit(store, v2, vec![Op::Put(upstream("cud-users", 9002))], check).await;
    assert!(
        v1 < v2 && v2 < v3,
        "store conformance: {check}: versions {v1}, {v2}, {v3}"
    );
    let listing = list(store, check).await;
    assert_eq!(listing.version, v3);
    let users = find(&listing, ResourceKind::Upstream, "cud-users");
    let api = find(&listing, ResourceKind::Route, "cud-api");
    assert_eq!(
        users.map(|r| r.version),
        Some(v3),
        "store conformance: {check}: updated key"
    );
    assert_eq!(
        api.map(|r| r.version),
        Some(v2),
        "store conformance: {check}: untouched key"
    );
    assert_eq!(
        users.and_then(|r| r.spec.clone()),
        upstream("cud-users", 9002).spec
    );
    let kinds: Vec<_> = listing.resources.iter().map(ResourceKind::of).collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(
        kinds, sorted,
        "store conformance: {check}: listing sorted by kind"
    );

    let v4 = commit(
        store,
        v3,
        vec![
            Op::Delete(ResourceKind::Route, "cud-api".into()),
            Op::Delete(ResourceKind::Upstream, "cud-users".into()),
        ],
        check,
    )
    .await;
    let listing = list(store, check).await;
    assert_eq!(
        listing.version, v4,
        "store conformance: {check}: a delete moves the version"
    );
    assert!(
        find(&listing, ResourceKind::Route, "cud-api").is_none()
            && find(&listing, ResourceKind::Upstream, "cud-users").is_none(),
        "store conformance: {check}: deleted resources still listed"
    );
}

async fn guard_conflict(store: &dyn Store) {
    let check = "guard conflict";
    let before = list(store, check).await;
    let v = commit(
        store,
        before.version,
        vec![Op::Put(upstream("guard", 9001))],
        check,
    )
    .await;
    match store
        .commit(before.version, vec![Op::Put(upstream("guard-lost", 9001))])
        .await
    {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("store conformance: {check}: a stale version must conflict, got {other:?}"),
    }
    let after = list(store, check).await;
    assert_eq!(
        after.version, v,
        "store conformance: {check}: a conflict moved the version"
    );
    assert!(
        find(&after, ResourceKind::Upstream, "guard-lost").is_none(),
        "store conformance: {check}: a conflicting commit wrote something"
    );
}

async fn invalid_op_writes_nothing(store: &dyn Store) {
    let check = "invalid op";
    let before = list(store, check).await;
    let no_spec = Resource {
        name: "no-spec".into(),
        ..Resource::default()
    };
    let result = store
        .commit(
            before.version,
            vec![Op::Put(upstream("valid-one", 1)), Op::Put(no_spec)],
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::InvalidOp(_))),
        "store conformance: {check}: a resource without spec must be refused, got {result:?}"
    );
    let after = list(store, check).await;
    assert_eq!(
        after, before,
        "store conformance: {check}: a refused commit wrote something"
    );
}

async fn next_batch(watch: &mut WatchStream, check: &str) -> super::WatchBatch {
    match tokio::time::timeout(PATIENCE, watch.next()).await {
        Ok(Some(Ok(batch))) => batch,
        Ok(Some(Err(e))) => panic!("store conformance: {check}: watch failed: {e}"),
        Ok(None) => panic!("store conformance: {check}: watch ended"),
        Err(_) => panic!("store conformance: {check}: no watch event within {PATIENCE:?}"),
    }
}

async fn watch_sees_every_commit(store: &dyn Store) {
    let check = "watch";
    let listing = list(store, check).await;
    let mut watch = match store.watch(listing.revision + 1).await {
        Ok(watch) => watch,
        Err(e) => panic!("store conformance: {check}: watch from the listed revision + 1: {e}"),
    };
    let v1 = commit(
        store,
        listing.version,
        vec![Op::Put(upstream("w-users", 9001))],
        check,
    )
    .await;
    let v2 = commit(
        store,
        v1,
        vec![
            Op::Put(route("w-api", "w-users")),
            Op::Put(upstream("w-users", 9003)),
        ],
        check,
    )
    .await;
    let v3 = commit(
        store,
        v2,
        vec![Op::Delete(ResourceKind::Route, "w-api".into())],
        check,
    )
    .await;

    let first = next_batch(&mut watch, check).await;
    assert_eq!(
        (first.revision, first.version_changed),
        (v1, Some(v1)),
        "{check}: first batch"
    );
    assert_eq!(
        first.events,
        vec![Event::Put(Resource {
            version: v1,
            ..upstream("w-users", 9001)
        })],
        "store conformance: {check}: events of the first commit"
    );
    let second = next_batch(&mut watch, check).await;
    assert_eq!(
        (second.revision, second.version_changed),
        (v2, Some(v2)),
        "{check}: second"
    );
    assert_eq!(
        second.events,
        vec![
            Event::Put(Resource {
                version: v2,
                ..route("w-api", "w-users")
            }),
            Event::Put(Resource {
                version: v2,
                ..upstream("w-users", 9003)
            }),
        ],
        "store conformance: {check}: events of the second commit, in commit order"
    );
    let third = next_batch(&mut watch, check).await;
    assert_eq!(
        (third.revision, third.version_changed),
        (v3, Some(v3)),
        "{check}: third"
    );
    assert_eq!(
        third.events,
        vec![Event::Delete(ResourceKind::Route, "w-api".into())],
        "store conformance: {check}: events of the delete"
    );

    // A watch from the middle of that history starts there.
    match store.watch(v2).await {
        Ok(mut from_v2) => {
            let batch = next_batch(&mut from_v2, check).await;
            assert_eq!(
                batch.revision, v2,
                "store conformance: {check}: watch from v2"
            );
        }
        Err(e) => panic!("store conformance: {check}: watch from a recent revision: {e}"),
    }
}

async fn concurrent_commits(store: Arc<dyn Store>) {
    let check = "concurrent commits";
    const WRITERS: usize = 20;
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("conc-{i}");
            for _ in 0..1000 {
                let listing = list(store.as_ref(), check).await;
                match store
                    .commit(
                        listing.version,
                        vec![Op::Put(upstream(&name, 9000 + i as u16))],
                    )
                    .await
                {
                    Ok(version) => return version,
                    Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                    Err(e) => panic!("store conformance: {check}: {e}"),
                }
            }
            panic!("store conformance: {check}: writer {i} lost 1000 races in a row");
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        match task.await {
            Ok(version) => versions.push(version),
            Err(e) => panic!("store conformance: {check}: writer failed: {e}"),
        }
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(
        versions.len(),
        WRITERS,
        "store conformance: {check}: two commits, one version"
    );
    let listing = list(store.as_ref(), check).await;
    for i in 0..WRITERS {
        assert!(
            find(&listing, ResourceKind::Upstream, &format!("conc-{i}")).is_some(),
            "store conformance: {check}: the write of conc-{i} was lost"
        );
    }
    assert_eq!(
        listing.version,
        versions[WRITERS - 1],
        "store conformance: {check}: version"
    );
}

async fn registry(store: &dyn Store) {
    let check = "registry";
    let version = list(store, check).await.version;
    let status = |id: &str, acked| DataPlaneStatus {
        id: id.to_owned(),
        address: "127.0.0.1:8080".into(),
        acked_version: acked,
        control_plane: "127.0.0.1:18000".into(),
        ..DataPlaneStatus::default()
    };
    let put = |s: DataPlaneStatus| async move {
        if let Err(e) = store.put_dataplane(s).await {
            panic!("store conformance: {check}: put_dataplane: {e}");
        }
    };
    let ids = |all: &[DataPlaneStatus]| all.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    let listed = || async {
        match store.list_dataplanes().await {
            Ok(all) => all,
            Err(e) => panic!("store conformance: {check}: list_dataplanes: {e}"),
        }
    };
    put(status("dp-b", 0)).await;
    put(status("dp-a", 0)).await;
    put(status("dp-a", 7)).await;
    let all = listed().await;
    assert_eq!(
        ids(&all),
        ["dp-a", "dp-b"],
        "store conformance: {check}: sorted by id"
    );
    assert_eq!(
        all[0].acked_version, 7,
        "store conformance: {check}: a put replaces"
    );
    if let Err(e) = store.remove_dataplane("dp-a").await {
        panic!("store conformance: {check}: remove_dataplane: {e}");
    }
    assert_eq!(
        ids(&listed().await),
        ["dp-b"],
        "store conformance: {check}: removed"
    );
    if let Err(e) = store.remove_dataplane("dp-b").await {
        panic!("store conformance: {check}: remove_dataplane: {e}");
    }
    assert!(
        listed().await.is_empty(),
        "store conformance: {check}: all removed"
    );
    assert_eq!(
        list(store, check).await.version,
        version,
        "store conformance: {check}: registry writes must not move the config version"
    );
}

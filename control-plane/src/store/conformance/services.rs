//! The service registry's part of the conformance suite: registering, replacing and
//! deregistering instances, watching them, and leases that run out unless renewed. None of it
//! may move the config version.

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::time::Instant;

use super::{PATIENCE, list};
use crate::store::{
    Instance, InstanceBatch, InstanceEvent, InstanceLease, InstanceWatch, Registration, Store,
};

/// Runs the registry checks on a store that holds no instances yet.
pub(super) async fn run(store: &dyn Store) {
    register_replace_deregister(store).await;
    watch_sees_puts_and_deletes(store).await;
    leases_run_out_unless_renewed(store).await;
}

fn value(address: &str) -> Vec<u8> {
    format!("{{\"address\": \"{address}\", \"weight\": 1}}").into_bytes()
}

async fn register(
    store: &dyn Store,
    service: &str,
    id: &str,
    address: &str,
    ttl: Duration,
    check: &str,
) -> Box<dyn InstanceLease> {
    let registration = Registration {
        service: service.into(),
        id: id.into(),
        value: value(address),
        ttl,
    };
    match store.register_instance(registration).await {
        Ok(lease) => lease,
        Err(e) => panic!("store conformance: {check}: register {service}/{id}: {e}"),
    }
}

async fn instances(store: &dyn Store, check: &str) -> Vec<(String, String, Vec<u8>)> {
    match store.list_instances().await {
        Ok(listing) => listing
            .instances
            .into_iter()
            .map(|i| (i.service, i.id, i.value))
            .collect(),
        Err(e) => panic!("store conformance: {check}: list_instances: {e}"),
    }
}

async fn ids(store: &dyn Store, check: &str) -> Vec<String> {
    instances(store, check)
        .await
        .into_iter()
        .map(|(service, id, _)| format!("{service}/{id}"))
        .collect()
}

async fn deregister(lease: Box<dyn InstanceLease>, check: &str) {
    if let Err(e) = lease.deregister().await {
        panic!("store conformance: {check}: deregister: {e}");
    }
}

async fn register_replace_deregister(store: &dyn Store) {
    let check = "service registry";
    let config = list(store, check).await;
    let ttl = Duration::from_secs(30);
    let first_a = register(store, "users", "a", "10.0.0.1:80", ttl, check).await;
    let b = register(store, "users", "b", "10.0.0.2:80", ttl, check).await;
    let orders = register(store, "orders", "a", "10.0.0.3:80", ttl, check).await;
    assert!(
        first_a.key().ends_with("registry/users/a"),
        "store conformance: {check}: the key of users/a is {}",
        first_a.key()
    );
    assert_eq!(
        instances(store, check).await,
        [
            ("orders".into(), "a".into(), value("10.0.0.3:80")),
            ("users".into(), "a".into(), value("10.0.0.1:80")),
            ("users".into(), "b".into(), value("10.0.0.2:80")),
        ],
        "store conformance: {check}: listed by service then id, values as written"
    );

    // Registering an id again replaces it; the old holder's lease no longer removes it.
    let second_a = register(store, "users", "a", "10.0.0.9:80", ttl, check).await;
    deregister(first_a, check).await;
    let listed = instances(store, check).await;
    assert!(
        listed.contains(&("users".into(), "a".into(), value("10.0.0.9:80"))),
        "store conformance: {check}: a replaced instance, after its old lease was deregistered: {listed:?}"
    );

    deregister(b, check).await;
    assert_eq!(
        ids(store, check).await,
        ["orders/a", "users/a"],
        "store conformance: {check}: deregistered at once"
    );
    deregister(second_a, check).await;
    deregister(orders, check).await;
    assert!(
        ids(store, check).await.is_empty(),
        "store conformance: {check}: all deregistered"
    );
    let after = list(store, check).await;
    assert_eq!(
        (after.version, after.resources.len()),
        (config.version, config.resources.len()),
        "store conformance: {check}: registry writes must not move the config version"
    );
}

async fn next(watch: &mut InstanceWatch, check: &str) -> InstanceBatch {
    match tokio::time::timeout(PATIENCE, watch.next()).await {
        Ok(Some(Ok(batch))) => batch,
        Ok(Some(Err(e))) => panic!("store conformance: {check}: instance watch failed: {e}"),
        Ok(None) => panic!("store conformance: {check}: instance watch ended"),
        Err(_) => panic!("store conformance: {check}: no instance event within {PATIENCE:?}"),
    }
}

async fn watch_sees_puts_and_deletes(store: &dyn Store) {
    let check = "service registry watch";
    let listing = match store.list_instances().await {
        Ok(listing) => listing,
        Err(e) => panic!("store conformance: {check}: list_instances: {e}"),
    };
    let mut watch = match store.watch_instances(listing.revision + 1).await {
        Ok(watch) => watch,
        Err(e) => panic!("store conformance: {check}: watch from the listing's revision + 1: {e}"),
    };
    let lease = register(
        store,
        "watched",
        "x",
        "10.0.0.4:80",
        Duration::from_secs(30),
        check,
    )
    .await;
    deregister(lease, check).await;
    let put = next(&mut watch, check).await;
    assert_eq!(
        put.events,
        [InstanceEvent::Put(Instance {
            service: "watched".into(),
            id: "x".into(),
            value: value("10.0.0.4:80"),
        })],
        "store conformance: {check}: a registration"
    );
    let delete = next(&mut watch, check).await;
    assert_eq!(
        delete.events,
        [InstanceEvent::Delete {
            service: "watched".into(),
            id: "x".into(),
        }],
        "store conformance: {check}: a deregistration"
    );
    assert!(
        listing.revision < put.revision && put.revision < delete.revision,
        "store conformance: {check}: revisions {}, {}, {}",
        listing.revision,
        put.revision,
        delete.revision
    );
}

async fn leases_run_out_unless_renewed(store: &dyn Store) {
    let check = "instance leases";
    let config = list(store, check).await.version;
    let ttl = Duration::from_secs(1);
    let mut kept = register(store, "leased", "kept", "10.0.0.5:80", ttl, check).await;
    let dropped = register(store, "leased", "dropped", "10.0.0.6:80", ttl, check).await;
    // The store may round the TTL up (etcd grants at least 2 s).
    let granted = kept.ttl().max(ttl);
    drop(dropped);
    let started = Instant::now();
    let renew_every = granted / 4;
    let mut dropped_gone = None;
    // Renew one, leave the other, for three TTLs.
    while started.elapsed() < granted * 3 || dropped_gone.is_none() {
        assert!(
            started.elapsed() < PATIENCE,
            "store conformance: {check}: an instance not renewed was still listed after {PATIENCE:?}"
        );
        if let Err(e) = kept.keep_alive().await {
            panic!("store conformance: {check}: keep_alive: {e}");
        }
        let listed = ids(store, check).await;
        assert!(
            listed.contains(&"leased/kept".to_owned()),
            "store conformance: {check}: a renewed instance went after {:?}: {listed:?}",
            started.elapsed()
        );
        if dropped_gone.is_none() && !listed.contains(&"leased/dropped".to_owned()) {
            dropped_gone = Some(started.elapsed());
        }
        tokio::time::sleep(renew_every).await;
    }
    tracing::info!(?dropped_gone, ?granted, "an instance not renewed went");

    // No more renewals: it goes too.
    let stopped = Instant::now();
    while ids(store, check).await.contains(&"leased/kept".to_owned()) {
        assert!(
            stopped.elapsed() < PATIENCE,
            "store conformance: {check}: an instance no longer renewed was still listed after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A renewal after it ran out registers it again.
    if let Err(e) = kept.keep_alive().await {
        panic!("store conformance: {check}: keep_alive after the lease ran out: {e}");
    }
    assert_eq!(
        ids(store, check).await,
        ["leased/kept"],
        "store conformance: {check}: a renewal after the lease ran out registers again"
    );
    deregister(kept, check).await;
    assert!(ids(store, check).await.is_empty());
    assert_eq!(
        list(store, check).await.version,
        config,
        "store conformance: {check}: leases must not move the config version"
    );
}

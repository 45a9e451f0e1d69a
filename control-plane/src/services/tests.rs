use gateway_proto::v1::ControlPlaneMessage;

use super::*;
use crate::{
    shutdown,
    store::{EmbeddedStore, InstanceLease, Registration},
};

const PATIENCE: Duration = Duration::from_secs(10);

async fn register(
    store: &EmbeddedStore,
    service: &str,
    id: &str,
    value: &[u8],
) -> Box<dyn InstanceLease> {
    store
        .register_instance(Registration {
            service: service.into(),
            id: id.into(),
            value: value.to_vec(),
            ttl: Duration::from_secs(30),
        })
        .await
        .expect("register")
}

fn json(address: &str) -> Vec<u8> {
    InstanceValue {
        address: address.into(),
        weight: 1,
    }
    .encode()
}

/// Waits for a table that `check` accepts.
async fn wait_for(
    rx: &mut ServicesRx,
    what: &str,
    check: impl Fn(&ServiceTable) -> bool,
) -> Arc<ServiceTable> {
    let found = tokio::time::timeout(PATIENCE, rx.wait_for(|t| t.as_deref().is_some_and(&check)))
        .await
        .unwrap_or_else(|_| panic!("no table with {what} within {PATIENCE:?}"))
        .expect("the mirror runs");
    found.clone().expect("a table")
}

fn addresses(table: &ServiceTable, service: &str) -> Vec<String> {
    table
        .endpoints(service)
        .iter()
        .map(|e| e.address.clone())
        .collect()
}

fn decode(bytes: Bytes) -> v1::Services {
    match ControlPlaneMessage::decode(bytes).expect("decodes").message {
        Some(control_plane_message::Message::Services(services)) => services,
        other => panic!("not a Services message: {other:?}"),
    }
}

#[tokio::test]
async fn mirrors_the_registry_and_skips_what_it_cannot_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    // One before the mirror starts (the listing), the rest after (the watch).
    let b = register(&store, "users", "b", &json("127.0.0.1:9002")).await;
    let metrics = Arc::new(Metrics::default());
    let (trigger, signal) = shutdown::channel();
    let (mirror, task) = ServiceMirror::spawn(Arc::new(store.clone()), metrics.clone(), signal);
    let mut rx = mirror.subscribe();
    let first = wait_for(&mut rx, "users/b", |t| {
        addresses(t, "users") == ["127.0.0.1:9002"]
    })
    .await;
    let complete = decode(first.complete_message());
    assert!(complete.complete);
    assert_eq!(complete.services.len(), 1);

    let a = register(&store, "users", "a", &json("127.0.0.1:9001")).await;
    // Garbage, a bad address, a service no Upstream can name, and a second id on one address.
    let _garbage = register(&store, "users", "c", b"not json").await;
    let _bad = register(&store, "users", "d", br#"{"address": "nope"}"#).await;
    let _unnamed = register(&store, "Bad_Service", "x", &json("127.0.0.1:9009")).await;
    let _twice = register(&store, "users", "e", &json("127.0.0.1:9001")).await;
    let marker = register(&store, "orders", "a", &json("127.0.0.1:9100")).await;
    let table = wait_for(&mut rx, "orders", |t| !t.endpoints("orders").is_empty()).await;
    assert_eq!(
        addresses(&table, "users"),
        ["127.0.0.1:9001", "127.0.0.1:9002"],
        "sorted by address, one per address, unreadable ones skipped"
    );
    assert_eq!(table.services().len(), 2, "{:?}", table.services());
    assert!(
        metrics
            .render()
            .contains("gateway_cp_registry_values_skipped_total 3\n")
    );
    assert!(
        metrics
            .render()
            .contains("gateway_cp_registered_instances 3\n")
    );

    // Deregistrations: the delta lists the changed services only, a gone one with no
    // endpoints.
    drop(a);
    b.deregister().await.expect("deregister");
    marker.deregister().await.expect("deregister");
    let before = rx.borrow().as_ref().map_or(0, |t| t.generation());
    let table = wait_for(&mut rx, "orders gone", |t| t.endpoints("orders").is_empty()).await;
    // users/a was only dropped, not deregistered: still there (its lease has 30 s).
    assert_eq!(addresses(&table, "users"), ["127.0.0.1:9001"]);
    if table.generation() == before + 1 {
        let delta = decode(table.delta_message());
        assert!(!delta.complete);
        let changed: Vec<(&str, usize)> = delta
            .services
            .iter()
            .map(|s| (s.service.as_str(), s.endpoints.len()))
            .collect();
        assert_eq!(changed, [("orders", 0), ("users", 1)], "{delta:?}");
    }

    trigger.trigger();
    task.await.expect("the mirror stops");
}

#[tokio::test]
async fn bursts_are_coalesced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let (trigger, signal) = shutdown::channel();
    let (mirror, task) = ServiceMirror::spawn(
        Arc::new(store.clone()),
        Arc::new(Metrics::default()),
        signal,
    );
    let mut rx = mirror.subscribe();
    let start = wait_for(&mut rx, "the first listing", |_| true)
        .await
        .generation();
    let mut leases = Vec::new();
    for i in 0..20 {
        leases.push(
            register(
                &store,
                "burst",
                &format!("i{i}"),
                &json(&format!("127.0.0.1:{}", 9000 + i)),
            )
            .await,
        );
    }
    let table = wait_for(&mut rx, "20 instances", |t| {
        t.endpoints("burst").len() == 20
    })
    .await;
    // Written within the coalescing window, 20 registrations are a few publications.
    assert!(
        table.generation() - start < 20,
        "generation {} after {start}",
        table.generation()
    );
    trigger.trigger();
    task.await.expect("the mirror stops");
}

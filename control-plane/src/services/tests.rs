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

/// Delegates to an embedded store; the first `fail` instance watches break at once.
#[derive(Debug)]
struct BrokenWatches {
    inner: EmbeddedStore,
    fail: std::sync::atomic::AtomicUsize,
}

impl Store for BrokenWatches {
    fn list(&self) -> crate::store::BoxFuture<'_, Result<crate::store::Listing, StoreError>> {
        self.inner.list()
    }
    fn commit(
        &self,
        expected: i64,
        ops: Vec<crate::store::Op>,
    ) -> crate::store::BoxFuture<'_, Result<i64, StoreError>> {
        self.inner.commit(expected, ops)
    }
    fn watch(
        &self,
        from: i64,
    ) -> crate::store::BoxFuture<'_, Result<crate::store::WatchStream, StoreError>> {
        self.inner.watch(from)
    }
    fn put_dataplane(
        &self,
        status: v1::DataPlaneStatus,
    ) -> crate::store::BoxFuture<'_, Result<(), StoreError>> {
        self.inner.put_dataplane(status)
    }
    fn remove_dataplane(&self, id: &str) -> crate::store::BoxFuture<'_, Result<(), StoreError>> {
        self.inner.remove_dataplane(id)
    }
    fn list_dataplanes(
        &self,
    ) -> crate::store::BoxFuture<'_, Result<Vec<v1::DataPlaneStatus>, StoreError>> {
        self.inner.list_dataplanes()
    }
    fn close(&self) -> crate::store::BoxFuture<'_, ()> {
        self.inner.close()
    }
    fn register_instance(
        &self,
        registration: Registration,
    ) -> crate::store::BoxFuture<'_, Result<Box<dyn InstanceLease>, StoreError>> {
        self.inner.register_instance(registration)
    }
    fn list_instances(&self) -> crate::store::BoxFuture<'_, Result<InstanceListing, StoreError>> {
        self.inner.list_instances()
    }
    fn watch_instances(
        &self,
        from: i64,
    ) -> crate::store::BoxFuture<'_, Result<crate::store::InstanceWatch, StoreError>> {
        use std::sync::atomic::Ordering;
        let broken = self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if broken {
            return Box::pin(async {
                Err(StoreError::Compacted {
                    compact_revision: 0,
                })
            });
        }
        self.inner.watch_instances(from)
    }
}

#[tokio::test]
async fn a_broken_watch_lists_again_and_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = EmbeddedStore::open(dir.path()).expect("open");
    let store = Arc::new(BrokenWatches {
        inner: inner.clone(),
        fail: 3.into(),
    });
    let (trigger, signal) = shutdown::channel();
    let (mirror, task) = ServiceMirror::spawn(store, Arc::new(Metrics::default()), signal);
    let mut rx = mirror.subscribe();
    // Written while the watches keep breaking: each new listing brings it in.
    let _lease = register(&inner, "users", "a", &json("127.0.0.1:9001")).await;
    wait_for(&mut rx, "users/a", |t| {
        addresses(t, "users") == ["127.0.0.1:9001"]
    })
    .await;
    // And once a watch holds, changes come through it.
    let _more = register(&inner, "users", "b", &json("127.0.0.1:9002")).await;
    wait_for(&mut rx, "users/b", |t| addresses(t, "users").len() == 2).await;
    trigger.trigger();
    task.await.expect("the mirror stops");
}

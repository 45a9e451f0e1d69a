use std::sync::atomic::{AtomicUsize, Ordering};

use gateway_proto::{
    delta,
    v1::{ControlPlaneMessage, DataPlaneStatus, control_plane_message},
};
use prost::Message as _;

use super::*;
use crate::{
    shutdown,
    store::{
        BoxFuture, EmbeddedStore, InstanceLease, InstanceListing, InstanceWatch, Op, Registration,
        WatchStream,
        conformance::{route, upstream},
    },
};

/// Delegates to an embedded store, failing the first `fail_lists` lists and first
/// `fail_watches` watches.
#[derive(Debug)]
struct Flaky {
    inner: EmbeddedStore,
    fail_lists: AtomicUsize,
    fail_watches: AtomicUsize,
}

fn take(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl Store for Flaky {
    fn list(&self) -> BoxFuture<'_, Result<Listing, StoreError>> {
        if take(&self.fail_lists) {
            return Box::pin(async { Err(StoreError::Unavailable("down".into())) });
        }
        self.inner.list()
    }
    fn commit(&self, expected: i64, ops: Vec<Op>) -> BoxFuture<'_, Result<i64, StoreError>> {
        self.inner.commit(expected, ops)
    }
    fn watch(&self, from: i64) -> BoxFuture<'_, Result<WatchStream, StoreError>> {
        if take(&self.fail_watches) {
            return Box::pin(async {
                Err(StoreError::Compacted {
                    compact_revision: 1000,
                })
            });
        }
        self.inner.watch(from)
    }
    fn put_dataplane(&self, status: DataPlaneStatus) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.put_dataplane(status)
    }
    fn remove_dataplane(&self, id: &str) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.remove_dataplane(id)
    }
    fn list_dataplanes(&self) -> BoxFuture<'_, Result<Vec<DataPlaneStatus>, StoreError>> {
        self.inner.list_dataplanes()
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        self.inner.close()
    }
    fn register_instance(
        &self,
        registration: Registration,
    ) -> BoxFuture<'_, Result<Box<dyn InstanceLease>, StoreError>> {
        self.inner.register_instance(registration)
    }
    fn list_instances(&self) -> BoxFuture<'_, Result<InstanceListing, StoreError>> {
        self.inner.list_instances()
    }
    fn watch_instances(&self, from: i64) -> BoxFuture<'_, Result<InstanceWatch, StoreError>> {
        self.inner.watch_instances(from)
    }
}

fn names(snapshot: &Snapshot) -> Vec<(Option<ResourceKind>, String, i64)> {
    snapshot
        .resources
        .iter()
        .map(|r| (ResourceKind::of(r), r.name.clone(), r.version))
        .collect()
}

#[tokio::test]
async fn mirrors_commits_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("open"));
    let v1 = store
        .commit(0, vec![Op::Put(upstream("users", 9001))])
        .await
        .expect("commit");
    let (_trigger, signal) = shutdown::channel();
    let (reflector, _task) = Reflector::spawn(store.clone(), Arc::default(), signal);
    let first = reflector.wait_for_version(v1).await.expect("loaded");
    assert!(reflector.is_ready());
    assert_eq!(first.version(), v1);
    assert_eq!(
        names(first.snapshot()),
        [(Some(ResourceKind::Upstream), "users".into(), v1)]
    );

    let v2 = store
        .commit(v1, vec![Op::Put(route("api", "users"))])
        .await
        .expect("commit");
    let v3 = store
        .commit(v2, vec![Op::Delete(ResourceKind::Upstream, "users".into())])
        .await
        .expect("commit");
    let last = reflector.wait_for_version(v3).await.expect("published");
    assert_eq!(last.version(), v3);
    assert_eq!(
        names(last.snapshot()),
        [(Some(ResourceKind::Route), "api".into(), v2)]
    );
    assert_eq!(reflector.current().map(|s| s.version()), Some(v3));

    // What changed since each earlier version, as the deltas a data plane holding it gets.
    let delta = async |base, form| {
        let bytes = last.delta_from(base, form).await.expect("a delta");
        match ControlPlaneMessage::decode(bytes).expect("decodes").message {
            Some(control_plane_message::Message::Delta(delta)) => delta,
            other => panic!("not a delta: {other:?}"),
        }
    };
    let from_v2 = delta(v2, Form::Plain).await;
    assert_eq!((from_v2.base_version, from_v2.version), (v2, v3));
    assert!(from_v2.resources.is_empty());
    assert_eq!(
        from_v2.removed,
        [delta::key(ResourceKind::Upstream, "users")]
    );
    let from_v1 = delta(v1, Form::Plain).await;
    assert_eq!(from_v1.resources.len(), 1, "the route added");
    assert_eq!(from_v1.removed.len(), 1, "the upstream removed");
    assert!(
        last.delta_from(v3 + 100, Form::Plain).await.is_none(),
        "an unknown base"
    );
    // Built once per base and form: the same bytes for every stream.
    let small = last.delta_from(v1, Form::Packed).await.expect("a delta");
    assert_eq!(
        small.as_ptr(),
        last.delta_from(v1, Form::Packed).await.unwrap().as_ptr()
    );
    assert_eq!(
        last.full(Form::Plain).await.as_ptr(),
        last.full(Form::Plain).await.as_ptr()
    );
    // A small message goes unpacked even in the packed form: gzip would only add to it.
    assert_eq!(delta(v1, Form::Packed).await, from_v1);

    // A large one is packed.
    let routes: Vec<Op> = (0..100)
        .map(|i| Op::Put(route(&format!("route-{i}"), "users")))
        .chain([Op::Put(upstream("users", 9001))])
        .collect();
    let v4 = store.commit(v3, routes).await.expect("commit");
    let large = reflector.wait_for_version(v4).await.expect("published");
    let packed = large.delta_from(v3, Form::Packed).await.expect("a delta");
    let Some(control_plane_message::Message::Packed(gz)) =
        ControlPlaneMessage::decode(packed.clone()).unwrap().message
    else {
        panic!("not packed");
    };
    let inner = delta::unpack(&gz, 1 << 20).expect("unpacks");
    let Some(control_plane_message::Message::Delta(unpacked)) = inner.message else {
        panic!("a packed delta");
    };
    assert_eq!(unpacked.resources.len(), 101);
    assert!(packed.len() < large.delta_from(v3, Form::Plain).await.unwrap().len() / 2);
}

#[tokio::test]
async fn relists_after_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = EmbeddedStore::open(dir.path()).expect("open");
    let store = Arc::new(Flaky {
        inner,
        fail_lists: AtomicUsize::new(2),
        fail_watches: AtomicUsize::new(2),
    });
    let metrics = Arc::new(Metrics::default());
    let (trigger, signal) = shutdown::channel();
    let (reflector, task) = Reflector::spawn(store.clone(), metrics.clone(), signal);
    let empty = reflector.wait_for_version(0).await.expect("loaded");
    assert!(empty.snapshot().resources.is_empty());
    let v1 = store
        .commit(0, vec![Op::Put(upstream("users", 9001))])
        .await
        .expect("commit");
    let snapshot = reflector.wait_for_version(v1).await.expect("published");
    assert_eq!(snapshot.snapshot().resources.len(), 1);
    assert!(metrics.render().contains("gateway_cp_relists_total 2\n"));
    trigger.trigger();
    task.await.expect("reflector stops on shutdown");
}

//! The configuration a data plane holds from the control plane, shared by the subscriber
//! (which changes it) and the cache writer (which writes it to disk).

use std::sync::{Arc, Mutex};

use gateway_proto::{v1, validate::Graph};

/// The configuration held, behind the lock both take.
pub(crate) type Shared = Arc<Mutex<Option<Held>>>;

/// The configuration a data plane serves, as the control plane sent it: what deltas apply
/// to, with the graph the incremental check needs.
#[derive(Debug)]
pub(crate) struct Held {
    pub(super) snapshot: v1::Snapshot,
    pub(super) graph: Graph,
}

impl Held {
    pub(super) fn new(snapshot: v1::Snapshot) -> Self {
        let graph = Graph::of(&snapshot.resources);
        Self { snapshot, graph }
    }

    pub(crate) fn version(&self) -> i64 {
        self.snapshot.version
    }

    pub(crate) fn snapshot(&self) -> &v1::Snapshot {
        &self.snapshot
    }
}

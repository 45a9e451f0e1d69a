//! The configuration store, in configuration terms: list the whole config at one revision,
//! commit a batch of changes in one guarded transaction, watch the changes after a revision,
//! and keep the data-plane registry.
//!
//! It also holds the service registry (`registry/<service>/<id>`, see
//! `gateway_proto::registry`): instances on leases of their TTL, listed and watched apart from
//! the configuration, whose version they never move.
//!
//! Two implementations share one set of semantics (see `docs/architecture.md`):
//! [`EtcdStore`] (the source of truth shared by several control planes) and [`EmbeddedStore`]
//! (a redb file for a single control plane). Both keep one global revision that moves by one per
//! commit, a mod revision per key, and the marker key `_meta/revision` whose mod revision is the
//! config version. [`conformance`] checks an implementation against those semantics.

use std::{fmt, future::Future, pin::Pin, time::Duration};

use futures_util::Stream;
use gateway_proto::{
    ResourceKind,
    v1::{DataPlaneStatus, Resource},
};

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
mod embedded;
mod etcd;
mod keys;
mod sealed;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use etcd::EtcdStore;
pub use sealed::{KeyFileError, SealedStore, load_keys};

/// A boxed, sendable future: what the [`Store`] methods return, so `Arc<dyn Store>` works.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The changes after a revision, one batch per store revision, in order. It ends (or yields an
/// error and then ends) when the watch breaks; the caller re-lists.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchBatch, StoreError>> + Send>>;

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The service registry's changes after a revision, one batch per store revision, in order.
/// Like [`WatchStream`], it ends (or yields an error and then ends) when the watch breaks.
pub type InstanceWatch = Pin<Box<dyn Stream<Item = Result<InstanceBatch, StoreError>> + Send>>;

/// The configuration store and the data-plane registry.
pub trait Store: Send + Sync + fmt::Debug {
    /// Every resource, read at one store revision (paged with a pinned revision on etcd).
    fn list(&self) -> BoxFuture<'_, Result<Listing, StoreError>>;

    /// Applies `ops` in one transaction guarded by "the config version is still
    /// `expected_version`" (0: nothing was ever written), and moves the config version.
    /// Returns the new config version, or [`StoreError::Conflict`] with nothing written.
    fn commit(&self, expected_version: i64, ops: Vec<Op>)
    -> BoxFuture<'_, Result<i64, StoreError>>;

    /// Every change from `from_revision` (inclusive) on. Fails, at once or as the stream's
    /// first item, with [`StoreError::Compacted`] when that history is gone.
    fn watch(&self, from_revision: i64) -> BoxFuture<'_, Result<WatchStream, StoreError>>;

    /// Records a data plane connected to this control plane (replacing its previous entry).
    /// The entry lives as long as this control plane does.
    fn put_dataplane(&self, status: DataPlaneStatus) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Forgets a data plane that this control plane registered. An entry that another control
    /// plane has registered since is left alone.
    fn remove_dataplane(&self, id: &str) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Every registered data plane, from every control plane sharing the store, sorted by id.
    fn list_dataplanes(&self) -> BoxFuture<'_, Result<Vec<DataPlaneStatus>, StoreError>>;

    /// Releases what this process holds (the etcd registry lease, so its entries go at once).
    fn close(&self) -> BoxFuture<'_, ()>;

    /// Writes a service instance on a lease of `registration.ttl` (replacing an entry of the
    /// same service and id). The instance stays while the returned lease is renewed; it goes
    /// at once when the lease is deregistered, and within the TTL when it is dropped.
    fn register_instance(
        &self,
        registration: Registration,
    ) -> BoxFuture<'_, Result<Box<dyn InstanceLease>, StoreError>>;

    /// Every instance of the service registry, read at one store revision, sorted by service
    /// then id. The values are as stored: readers check them.
    fn list_instances(&self) -> BoxFuture<'_, Result<InstanceListing, StoreError>>;

    /// Every change of the service registry from `from_revision` (inclusive) on; like
    /// [`Store::watch`], [`StoreError::Compacted`] when that history is gone.
    fn watch_instances(
        &self,
        from_revision: i64,
    ) -> BoxFuture<'_, Result<InstanceWatch, StoreError>>;
}

/// What to register: the service, the instance's id, the stored value (the registry's JSON,
/// `gateway_proto::registry::InstanceValue`) and the lease's time to live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub service: String,
    pub id: String,
    pub value: Vec<u8>,
    pub ttl: Duration,
}

/// A registered instance's lease, held by whoever keeps the instance alive.
pub trait InstanceLease: Send + fmt::Debug {
    /// The instance's key in the store (with the etcd prefix; relative on the embedded store).
    fn key(&self) -> &str;

    /// The lease's time to live.
    fn ttl(&self) -> Duration;

    /// Renews the lease for another TTL. When it has run out already (the store was out of
    /// reach for longer than the TTL) and the key is gone, writes the instance again on a new
    /// lease; when another holder has registered the same id since, leaves it to them.
    fn keep_alive(&mut self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Removes the instance at once (only if it is still on this lease).
    fn deregister(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// One instance as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub service: String,
    pub id: String,
    pub value: Vec<u8>,
}

/// The whole service registry at one store revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceListing {
    /// The store revision the listing was read at: watch from `revision + 1`.
    pub revision: i64,
    /// Sorted by service, then id.
    pub instances: Vec<Instance>,
}

/// One change of the service registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceEvent {
    /// An instance was registered, or its value replaced.
    Put(Instance),
    /// An instance was deregistered, or its lease ran out.
    Delete { service: String, id: String },
}

/// Every change to the service registry of one store revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceBatch {
    pub revision: i64,
    pub events: Vec<InstanceEvent>,
}

/// The whole configuration at one store revision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listing {
    /// The config version: the mod revision of the marker key, 0 if nothing was ever written.
    pub version: i64,
    /// The store revision the listing was read at: watch from `revision + 1`.
    pub revision: i64,
    /// Every resource, with `version` set to its key's mod revision, sorted by kind then name.
    pub resources: Vec<Resource>,
}

/// One change of a commit.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Create or replace a resource (its `version` is ignored).
    Put(Resource),
    /// Delete a resource (a no-op when it does not exist).
    Delete(ResourceKind, String),
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A resource was created or replaced; its `version` is the revision of the change.
    Put(Resource),
    /// A resource was deleted.
    Delete(ResourceKind, String),
}

/// Every change of one store revision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WatchBatch {
    /// The store revision of these changes.
    pub revision: i64,
    /// The resource changes, in commit order.
    pub events: Vec<Event>,
    /// The new config version, when this revision was a configuration write.
    pub version_changed: Option<i64>,
}

/// What can go wrong talking to a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The guard failed: another write moved the config version first. Nothing was written.
    #[error("the configuration changed since version {expected} was read")]
    Conflict {
        /// The version the commit expected.
        expected: i64,
    },
    /// The history asked for is gone; list again and watch from the listing's revision.
    #[error("the store history before revision {compact_revision} has been compacted")]
    Compacted {
        /// The oldest revision one may still watch from (0 when the store did not say).
        compact_revision: i64,
    },
    /// The store cannot be reached now; retrying later may work.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The store answered with an error, or its data cannot be read.
    #[error("store error: {0}")]
    Internal(#[source] BoxError),
    /// The store cannot be opened with this configuration (bad endpoint, locked file, ...).
    #[error("cannot open the store: {0}")]
    Open(#[source] BoxError),
    /// The commit is larger than the store takes in one transaction (etcd's
    /// `--max-request-bytes`, 1.5 MiB by default). Nothing was written.
    #[error(
        "the batch is too large for one store transaction ({0}); apply it in smaller parts or \
         raise etcd's --max-request-bytes"
    )]
    TooLarge(String),
    /// A commit carried an operation the store cannot write (a resource without a spec).
    #[error("invalid store operation: {0}")]
    InvalidOp(String),
}

impl StoreError {
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        StoreError::Internal(message.into().into())
    }
}

/// Sorts resources by kind (dependency order) then name: the order of listings and snapshots.
pub fn sort_resources(resources: &mut [Resource]) {
    resources.sort_by(|a, b| {
        (ResourceKind::of(a), a.name.as_str()).cmp(&(ResourceKind::of(b), b.name.as_str()))
    });
}

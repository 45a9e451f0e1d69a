//! The embedded store: a redb database (`store.redb`) in the data directory, for one control
//! plane without etcd. Same semantics as etcd: one global revision per commit, a mod revision
//! per key, the marker key and its guard. Watchers are fed in-process from a bounded history of
//! recent commits; a watch from before that history, or a watcher that falls behind, gets
//! [`StoreError::Compacted`] and re-lists. The data-plane registry and the service registry
//! ([`instances`]) are kept in memory.

use std::{
    collections::{BTreeMap, VecDeque},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, Weak},
};

use futures_util::stream;
use gateway_proto::v1::DataPlaneStatus;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use tokio::sync::broadcast;

use super::{
    BoxFuture, Event, InstanceLease, InstanceListing, InstanceWatch, Listing, Op, Registration,
    Store, StoreError, WatchBatch, WatchStream,
    keys::{self, Key},
    sort_resources,
};

mod instances;

use instances::Instances;

/// Every key: relative key → (mod revision, value).
const KV: TableDefinition<'_, &str, (i64, &[u8])> = TableDefinition::new("kv");
/// Store-wide counters: `revision`.
const META: TableDefinition<'_, &str, i64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// The database file inside the data directory.
pub(super) const FILE_NAME: &str = "store.redb";

/// Tuning of the embedded store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// How many recent commits are kept for watchers; also the most a watcher may lag behind.
    pub history: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self { history: 1024 }
    }
}

/// The redb-backed store. Cheap to share behind an `Arc`.
#[derive(Clone, Debug)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    db: Database,
    /// Serialises commits with their publication, so watchers see revisions in order.
    writer: Mutex<()>,
    feed: Mutex<Feed>,
    registry: Mutex<BTreeMap<String, DataPlaneStatus>>,
    instances: Arc<Instances>,
}

/// The recent history and the live feed of commits.
#[derive(Debug)]
struct Feed {
    history: VecDeque<Arc<WatchBatch>>,
    capacity: usize,
    /// The newest revision whose changes are no longer in `history`.
    floor: i64,
    tx: broadcast::Sender<Arc<WatchBatch>>,
}

// === impl EmbeddedStore ===

impl EmbeddedStore {
    /// Opens (creating it if needed) `store.redb` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    /// Opens with explicit options.
    pub fn open_with(dir: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        let open_err = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Open(format!("{what} {}: {e}", dir.display()).into())
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err("cannot create data directory", &e))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Open(
                format!(
                    "{} is in use by another process (one control plane per data directory)",
                    path.display()
                )
                .into(),
            ),
            other => open_err("cannot open the store in", &other),
        })?;
        // Create the tables so that readers never meet a missing one, and read the revision.
        let txn = db.begin_write().map_err(backend)?;
        let revision = {
            txn.open_table(KV).map_err(backend)?;
            let meta = txn.open_table(META).map_err(backend)?;
            meta.get(REVISION)
                .map_err(backend)?
                .map_or(0, |v| v.value())
        };
        txn.commit().map_err(backend)?;
        let capacity = options.history.max(1);
        let (tx, _) = broadcast::channel(capacity);
        tracing::info!(path = %path.display(), revision, "opened the embedded store");
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                db,
                writer: Mutex::new(()),
                feed: Mutex::new(Feed {
                    history: VecDeque::new(),
                    capacity,
                    floor: revision,
                    tx,
                }),
                registry: Mutex::new(BTreeMap::new()),
                instances: Arc::default(),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Forgets the kept history up to and including `revision`: later watches from before it
    /// get [`StoreError::Compacted`], as after an etcd compaction.
    pub fn compact(&self, revision: i64) {
        let mut feed = lock(&self.shared.feed);
        while feed.history.front().is_some_and(|b| b.revision <= revision) {
            feed.history.pop_front();
        }
        feed.floor = feed.floor.max(revision);
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(|e| StoreError::internal(format!("store task failed: {e}")))?
    }
}

impl Store for EmbeddedStore {
    fn list(&self) -> BoxFuture<'_, Result<Listing, StoreError>> {
        Box::pin(self.blocking(Shared::list))
    }

    fn commit(
        &self,
        expected_version: i64,
        ops: Vec<Op>,
    ) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(self.blocking(move |shared| shared.commit(expected_version, ops)))
    }

    fn watch(&self, from_revision: i64) -> BoxFuture<'_, Result<WatchStream, StoreError>> {
        let result = self.shared.subscribe(from_revision);
        Box::pin(async move { result })
    }

    fn put_dataplane(&self, status: DataPlaneStatus) -> BoxFuture<'_, Result<(), StoreError>> {
        lock(&self.shared.registry).insert(status.id.clone(), status);
        Box::pin(async { Ok(()) })
    }

    fn remove_dataplane(&self, id: &str) -> BoxFuture<'_, Result<(), StoreError>> {
        lock(&self.shared.registry).remove(id);
        Box::pin(async { Ok(()) })
    }

    fn list_dataplanes(&self) -> BoxFuture<'_, Result<Vec<DataPlaneStatus>, StoreError>> {
        let all = lock(&self.shared.registry).values().cloned().collect();
        Box::pin(async move { Ok(all) })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        lock(&self.shared.registry).clear();
        self.shared.instances.clear();
        Box::pin(async {})
    }

    fn register_instance(
        &self,
        registration: Registration,
    ) -> BoxFuture<'_, Result<Box<dyn InstanceLease>, StoreError>> {
        // Inside the future: the expiry timer is spawned on the caller's runtime.
        Box::pin(async move { self.shared.instances.register(registration) })
    }

    fn list_instances(&self) -> BoxFuture<'_, Result<InstanceListing, StoreError>> {
        let listing = self.shared.instances.list();
        Box::pin(async move { Ok(listing) })
    }

    fn watch_instances(
        &self,
        from_revision: i64,
    ) -> BoxFuture<'_, Result<InstanceWatch, StoreError>> {
        let watch = self.shared.instances.watch(from_revision);
        Box::pin(async move { watch })
    }
}

// === impl Shared ===

impl Shared {
    fn list(&self) -> Result<Listing, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        let kv = txn.open_table(KV).map_err(backend)?;
        let revision = meta
            .get(REVISION)
            .map_err(backend)?
            .map_or(0, |v| v.value());
        let mut listing = Listing {
            revision,
            ..Listing::default()
        };
        for entry in kv.iter().map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            let key = key.value();
            let (mod_revision, bytes) = value.value();
            match keys::parse(key) {
                Key::Marker => listing.version = mod_revision,
                Key::Resource(kind, name) => match keys::decode(kind, name, bytes, mod_revision) {
                    Ok(resource) => listing.resources.push(resource),
                    Err(reason) => tracing::error!(key, %reason, "skipping an unreadable key"),
                },
                Key::Other => {}
            }
        }
        sort_resources(&mut listing.resources);
        Ok(listing)
    }

    fn commit(&self, expected: i64, ops: Vec<Op>) -> Result<i64, StoreError> {
        // Resolve every key first, so that a bad op writes nothing.
        let mut writes = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put(resource) => {
                    let (kind, key) = keys::of_resource(&resource)?;
                    writes.push((key, Some((kind, resource))));
                }
                Op::Delete(kind, name) => {
                    writes.push((gateway_proto::resource_key(kind, &name), None));
                }
            }
        }

        let _writer = lock(&self.writer);
        let txn = self.db.begin_write().map_err(backend)?;
        let mut batch = WatchBatch::default();
        {
            let mut kv = txn.open_table(KV).map_err(backend)?;
            let mut meta = txn.open_table(META).map_err(backend)?;
            let current = kv
                .get(keys::MARKER)
                .map_err(backend)?
                .map_or(0, |v| v.value().0);
            if current != expected {
                return Err(StoreError::Conflict { expected });
            }
            let revision = meta
                .get(REVISION)
                .map_err(backend)?
                .map_or(0, |v| v.value())
                + 1;
            batch.revision = revision;
            for (key, write) in writes {
                match write {
                    Some((_, mut resource)) => {
                        let value = keys::encode(&resource);
                        kv.insert(key.as_str(), (revision, value.as_slice()))
                            .map_err(backend)?;
                        resource.version = revision;
                        batch.events.push(Event::Put(resource));
                    }
                    None => {
                        if kv.remove(key.as_str()).map_err(backend)?.is_some()
                            && let Key::Resource(kind, name) = keys::parse(&key)
                        {
                            batch.events.push(Event::Delete(kind, name.to_owned()));
                        }
                    }
                }
            }
            kv.insert(keys::MARKER, (revision, &[][..]))
                .map_err(backend)?;
            meta.insert(REVISION, revision).map_err(backend)?;
            batch.version_changed = Some(revision);
        }
        txn.commit().map_err(backend)?;
        let revision = batch.revision;
        self.publish(batch);
        Ok(revision)
    }

    fn publish(&self, batch: WatchBatch) {
        let batch = Arc::new(batch);
        let mut feed = lock(&self.feed);
        feed.history.push_back(batch.clone());
        while feed.history.len() > feed.capacity {
            if let Some(old) = feed.history.pop_front() {
                feed.floor = old.revision;
            }
        }
        // No receivers is fine: nobody watches.
        let _ = feed.tx.send(batch);
    }

    /// Backlog and live feed are taken under one lock, so no commit falls between them.
    fn subscribe(self: &Arc<Self>, from: i64) -> Result<WatchStream, StoreError> {
        let feed = lock(&self.feed);
        if from <= feed.floor {
            return Err(StoreError::Compacted {
                compact_revision: feed.floor + 1,
            });
        }
        let backlog: VecDeque<Arc<WatchBatch>> = feed
            .history
            .iter()
            .filter(|b| b.revision >= from)
            .cloned()
            .collect();
        let state = Subscription {
            backlog,
            rx: feed.tx.subscribe(),
            from,
            shared: Arc::downgrade(self),
            done: false,
        };
        drop(feed);
        Ok(Box::pin(stream::unfold(state, Subscription::next)))
    }
}

struct Subscription {
    backlog: VecDeque<Arc<WatchBatch>>,
    rx: broadcast::Receiver<Arc<WatchBatch>>,
    from: i64,
    shared: Weak<Shared>,
    done: bool,
}

impl Subscription {
    async fn next(mut self) -> Option<(Result<WatchBatch, StoreError>, Self)> {
        if self.done {
            return None;
        }
        if let Some(batch) = self.backlog.pop_front() {
            return Some((Ok(batch.as_ref().clone()), self));
        }
        loop {
            match self.rx.recv().await {
                Ok(batch) if batch.revision < self.from => continue,
                Ok(batch) => return Some((Ok(batch.as_ref().clone()), self)),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let shared = self.shared.upgrade()?;
                    let compact_revision = lock(&shared.feed).floor + 1;
                    self.done = true;
                    return Some((Err(StoreError::Compacted { compact_revision }), self));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent even if a holder panicked: every update is one step.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn backend(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Internal(Box::new(e.into()))
}

#[cfg(test)]
mod tests;

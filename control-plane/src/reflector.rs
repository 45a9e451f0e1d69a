//! The reflector: an in-memory mirror of the store, published as immutable snapshots.
//!
//! It lists the store at revision R, publishes an `Arc<Published>` (the snapshot, and which
//! keys changed in the versions before it) through a `tokio::sync::watch` channel (so a slow
//! reader only ever sees the newest), watches from R+1 and applies each batch, publishing
//! whenever the config version moves. A compacted or broken watch leads, after a jittered
//! backoff, to a new list, diffed against the mirror.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures_util::StreamExt as _;
use gateway_proto::{
    ResourceKind,
    v1::{Resource, Snapshot},
};
use tokio::{sync::watch, task::JoinHandle};

pub(crate) use self::published::Form;
pub use self::published::Published;

use crate::{
    backoff::Backoff,
    metrics::Metrics,
    shutdown::Shutdown,
    store::{Event, Listing, Store, StoreError, WatchBatch},
};

mod published;

/// The published state: `None` until the first listing.
pub type SnapshotRx = watch::Receiver<Option<Arc<Published>>>;

/// A handle on the running reflector. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Reflector {
    rx: SnapshotRx,
}

// === impl Reflector ===

impl Reflector {
    /// Starts mirroring `store` until `shutdown`.
    pub fn spawn(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = watch::channel(None);
        let mirror = Mirror {
            store,
            metrics,
            tx,
            resources: BTreeMap::new(),
            version: 0,
            loaded: false,
            changed: Vec::new(),
        };
        let task = tokio::spawn(mirror.run(shutdown));
        (Self { rx }, task)
    }

    /// The newest snapshot, once the store has been listed.
    pub fn current(&self) -> Option<Arc<Published>> {
        self.rx.borrow().clone()
    }

    /// True once a snapshot has been loaded (what `/ready` reports).
    pub fn is_ready(&self) -> bool {
        self.rx.borrow().is_some()
    }

    /// A receiver of every new snapshot.
    pub fn subscribe(&self) -> SnapshotRx {
        self.rx.clone()
    }

    /// Waits until a snapshot of at least `version` is published; returns it.
    pub async fn wait_for_version(&self, version: i64) -> Option<Arc<Published>> {
        let mut rx = self.rx.clone();
        let snapshot = rx
            .wait_for(|s| s.as_ref().is_some_and(|s| s.version() >= version))
            .await
            .ok()?;
        snapshot.clone()
    }
}

type Key = (ResourceKind, String);

struct Mirror {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    tx: watch::Sender<Option<Arc<Published>>>,
    resources: BTreeMap<Key, Resource>,
    version: i64,
    loaded: bool,
    /// The keys written or deleted since the last publication.
    changed: Vec<(ResourceKind, Box<str>)>,
}

/// Why a watch stopped.
enum Stopped {
    Shutdown,
    Broken,
}

impl Mirror {
    async fn run(mut self, mut shutdown: Shutdown) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let listing = tokio::select! {
                _ = shutdown.wait() => return,
                listing = self.store.list() => listing,
            };
            let listing = match listing {
                Ok(listing) => listing,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the store; retrying");
                    if sleep_or_shutdown(&mut shutdown, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
            };
            let from = listing.revision + 1;
            self.load(listing);
            let watch = tokio::select! {
                _ = shutdown.wait() => return,
                watch = self.store.watch(from) => watch,
            };
            let stopped = match watch {
                Ok(mut watch) => loop {
                    let item = tokio::select! {
                        _ = shutdown.wait() => break Stopped::Shutdown,
                        item = watch.next() => item,
                    };
                    match item {
                        Some(Ok(batch)) => {
                            backoff.reset();
                            self.apply(batch);
                        }
                        Some(Err(e)) => {
                            log_broken(&e);
                            break Stopped::Broken;
                        }
                        None => {
                            tracing::warn!("the store watch ended; listing again");
                            break Stopped::Broken;
                        }
                    }
                },
                Err(e) => {
                    log_broken(&e);
                    Stopped::Broken
                }
            };
            if matches!(stopped, Stopped::Shutdown) {
                return;
            }
            self.metrics.relisted();
            if sleep_or_shutdown(&mut shutdown, backoff.next_delay()).await {
                return;
            }
        }
    }

    /// Replaces the mirror with a listing, logging what changed.
    fn load(&mut self, listing: Listing) {
        let fresh: BTreeMap<Key, Resource> = listing
            .resources
            .into_iter()
            .filter_map(|r| ResourceKind::of(&r).map(|kind| ((kind, r.name.clone()), r)))
            .collect();
        let (mut added, mut updated) = (0usize, 0usize);
        for (key, resource) in &fresh {
            match self.resources.get(key) {
                None => added += 1,
                Some(old) if old != resource => updated += 1,
                Some(_) => continue,
            }
            self.changed.push((key.0, key.1.as_str().into()));
        }
        let mut removed = 0usize;
        for key in self.resources.keys().filter(|k| !fresh.contains_key(*k)) {
            removed += 1;
            self.changed.push((key.0, key.1.as_str().into()));
        }
        let changed = added + updated + removed > 0 || listing.version != self.version;
        if self.loaded {
            tracing::info!(
                version = listing.version,
                revision = listing.revision,
                added,
                updated,
                removed,
                "listed the store again"
            );
        } else {
            tracing::info!(
                version = listing.version,
                revision = listing.revision,
                resources = fresh.len(),
                "loaded the configuration"
            );
        }
        self.resources = fresh;
        self.version = listing.version;
        if changed || !self.loaded {
            self.publish();
        }
        self.loaded = true;
    }

    fn apply(&mut self, batch: WatchBatch) {
        for event in batch.events {
            match event {
                Event::Put(resource) => {
                    if let Some(kind) = ResourceKind::of(&resource) {
                        self.changed.push((kind, resource.name.as_str().into()));
                        self.resources
                            .insert((kind, resource.name.clone()), resource);
                    }
                }
                Event::Delete(kind, name) => {
                    self.changed.push((kind, name.as_str().into()));
                    self.resources.remove(&(kind, name));
                }
            }
        }
        if let Some(version) = batch.version_changed
            && version != self.version
        {
            self.version = version;
            tracing::debug!(version, "configuration changed");
            self.publish();
        }
    }

    fn publish(&mut self) {
        let started = std::time::Instant::now();
        // In key order, which is the order `delta::sort` gives: kind, then name.
        let snapshot = Snapshot {
            version: self.version,
            resources: self.resources.values().cloned().collect(),
        };
        let changed = std::mem::take(&mut self.changed);
        let history = match &*self.tx.borrow() {
            Some(before) if before.version() != self.version => {
                published::extend(before.history(), before.version(), changed)
            }
            // The content moved without the version (a write that bypassed the marker): the
            // keys of this version no longer tell what changed since older ones.
            Some(before) if changed.is_empty() => before.history().clone(),
            Some(_) => published::History::new(),
            None => published::History::new(),
        };
        let published = Arc::new(Published::new(snapshot, history));
        self.metrics.snapshot_built(started.elapsed());
        self.metrics.set_config_version(self.version);
        self.tx.send_replace(Some(published));
    }
}

fn log_broken(error: &StoreError) {
    match error {
        StoreError::Compacted { compact_revision } => tracing::info!(
            compact_revision,
            "the store history was compacted past the watch; listing again"
        ),
        other => tracing::warn!(error = %other, "the store watch broke; listing again"),
    }
}

/// Sleeps for `delay`; true when shutdown came first.
async fn sleep_or_shutdown(shutdown: &mut Shutdown, delay: Duration) -> bool {
    tokio::select! {
        _ = shutdown.wait() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

#[cfg(test)]
mod tests;

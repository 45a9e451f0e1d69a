//! The service registry of the embedded store: in memory only (leases would not outlive a
//! restart anyway: their holders register again), with a revision of its own, so that the
//! database's revision and the config version never move for it. Each instance has a deadline
//! that its holder's renewals push back; a timer task per instance removes it once the
//! deadline passes. Watchers are fed like the configuration's: a bounded history, then a
//! broadcast; one that falls behind gets [`StoreError::Compacted`] and lists again.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use futures_util::stream;
use gateway_proto::registry;
use tokio::{sync::broadcast, time::Instant};

use super::lock;
use crate::store::{
    BoxFuture, Instance, InstanceBatch, InstanceEvent, InstanceLease, InstanceListing,
    InstanceWatch, Registration, StoreError,
};

/// Batches kept for watchers that list and then watch.
const HISTORY: usize = 1024;

/// The registry. Shared by the store and every lease it handed out.
#[derive(Debug)]
pub(super) struct Instances {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<InstanceBatch>>,
}

#[derive(Debug, Default)]
struct State {
    revision: i64,
    next_lease: u64,
    entries: BTreeMap<(String, String), Entry>,
    history: VecDeque<Arc<InstanceBatch>>,
    /// The newest revision no longer in `history`.
    floor: i64,
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    lease: u64,
    deadline: Instant,
}

impl Default for Instances {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            tx: broadcast::channel(HISTORY).0,
        }
    }
}

// === impl Instances ===

impl Instances {
    pub(super) fn register(
        self: &Arc<Self>,
        registration: Registration,
    ) -> Result<Box<dyn InstanceLease>, StoreError> {
        let key = (registration.service, registration.id);
        let lease = {
            let mut state = lock(&self.state);
            state.next_lease += 1;
            let lease = state.next_lease;
            self.put(
                &mut state,
                &key,
                &registration.value,
                lease,
                registration.ttl,
            );
            lease
        };
        self.spawn_expiry(key.clone(), lease);
        Ok(Box::new(EmbeddedLease {
            instances: Arc::downgrade(self),
            shown: registry::key(&key.0, &key.1),
            key,
            value: registration.value,
            ttl: registration.ttl,
            lease,
        }))
    }

    /// Writes an entry and publishes it (under the state's lock: watchers see revisions in
    /// order).
    fn put(
        &self,
        state: &mut State,
        key: &(String, String),
        value: &[u8],
        lease: u64,
        ttl: Duration,
    ) {
        state.entries.insert(
            key.clone(),
            Entry {
                value: value.to_vec(),
                lease,
                deadline: Instant::now() + ttl,
            },
        );
        let event = InstanceEvent::Put(Instance {
            service: key.0.clone(),
            id: key.1.clone(),
            value: value.to_vec(),
        });
        self.publish(state, event);
    }

    /// Removes the entry if it is still on `lease`.
    fn remove(&self, key: &(String, String), lease: u64) {
        let mut state = lock(&self.state);
        if state.entries.get(key).is_some_and(|e| e.lease == lease) {
            state.entries.remove(key);
            let event = InstanceEvent::Delete {
                service: key.0.clone(),
                id: key.1.clone(),
            };
            self.publish(&mut state, event);
        }
    }

    fn publish(&self, state: &mut State, event: InstanceEvent) {
        state.revision += 1;
        let batch = Arc::new(InstanceBatch {
            revision: state.revision,
            events: vec![event],
        });
        state.history.push_back(batch.clone());
        while state.history.len() > HISTORY {
            if let Some(old) = state.history.pop_front() {
                state.floor = old.revision;
            }
        }
        // No receivers is fine: nobody watches.
        let _ = self.tx.send(batch);
    }

    /// Removes the instance once its deadline passes without a renewal.
    fn spawn_expiry(self: &Arc<Self>, key: (String, String), lease: u64) {
        let instances = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let deadline = {
                    let Some(instances) = instances.upgrade() else {
                        return;
                    };
                    let state = lock(&instances.state);
                    match state.entries.get(&key) {
                        Some(entry) if entry.lease == lease => entry.deadline,
                        // Deregistered, or registered again by another holder.
                        _ => return,
                    }
                };
                if deadline > Instant::now() {
                    tokio::time::sleep_until(deadline).await;
                    continue;
                }
                if let Some(instances) = instances.upgrade() {
                    tracing::info!(service = %key.0, id = %key.1, "instance's lease ran out");
                    instances.remove(&key, lease);
                }
                return;
            }
        });
    }

    pub(super) fn list(&self) -> InstanceListing {
        let state = lock(&self.state);
        InstanceListing {
            revision: state.revision,
            instances: state
                .entries
                .iter()
                .map(|((service, id), entry)| Instance {
                    service: service.clone(),
                    id: id.clone(),
                    value: entry.value.clone(),
                })
                .collect(),
        }
    }

    /// Backlog and live feed are taken under one lock, so that no change falls between them.
    pub(super) fn watch(&self, from: i64) -> Result<InstanceWatch, StoreError> {
        let state = lock(&self.state);
        if from <= state.floor {
            return Err(StoreError::Compacted {
                compact_revision: state.floor + 1,
            });
        }
        let backlog: VecDeque<Arc<InstanceBatch>> = state
            .history
            .iter()
            .filter(|b| b.revision >= from)
            .cloned()
            .collect();
        let feed = Feed {
            backlog,
            rx: self.tx.subscribe(),
            from,
            done: false,
        };
        drop(state);
        Ok(Box::pin(stream::unfold(feed, Feed::next)))
    }

    /// Forgets every instance (the store is closing): no event, nobody will watch.
    pub(super) fn clear(&self) {
        lock(&self.state).entries.clear();
    }
}

struct Feed {
    backlog: VecDeque<Arc<InstanceBatch>>,
    rx: broadcast::Receiver<Arc<InstanceBatch>>,
    from: i64,
    done: bool,
}

impl Feed {
    async fn next(mut self) -> Option<(Result<InstanceBatch, StoreError>, Self)> {
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
                    self.done = true;
                    let error = StoreError::Compacted {
                        compact_revision: 0,
                    };
                    return Some((Err(error), self));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// A lease on the embedded registry.
#[derive(Debug)]
struct EmbeddedLease {
    instances: Weak<Instances>,
    key: (String, String),
    shown: String,
    value: Vec<u8>,
    ttl: Duration,
    lease: u64,
}

impl InstanceLease for EmbeddedLease {
    fn key(&self) -> &str {
        &self.shown
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn keep_alive(&mut self) -> BoxFuture<'_, Result<(), StoreError>> {
        let result = match self.instances.upgrade() {
            Some(instances) => {
                let mut state = lock(&instances.state);
                let again = match state.entries.get_mut(&self.key) {
                    Some(entry) if entry.lease == self.lease => {
                        entry.deadline = Instant::now() + self.ttl;
                        false
                    }
                    Some(_) => {
                        tracing::warn!(key = %self.shown, "instance registered by another holder since; leaving it to them");
                        false
                    }
                    None => true,
                };
                if again {
                    tracing::info!(key = %self.shown, "instance's lease had run out; registered it again");
                    instances.put(&mut state, &self.key, &self.value, self.lease, self.ttl);
                    drop(state);
                    instances.spawn_expiry(self.key.clone(), self.lease);
                }
                Ok(())
            }
            None => Err(StoreError::Unavailable("the store is closed".into())),
        };
        Box::pin(async move { result })
    }

    fn deregister(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        if let Some(instances) = self.instances.upgrade() {
            instances.remove(&self.key, self.lease);
        }
        Box::pin(async { Ok(()) })
    }
}

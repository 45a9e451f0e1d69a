//! The service mirror: the registry's instances, as the data planes are sent them.
//!
//! Like the [`reflector`](crate::reflector), it lists the registry at revision R, watches from
//! R+1, and lists again (diffing against what it holds) after a broken or compacted watch. It
//! is not configuration: it has no version and never moves the config's. Values that are not
//! the registry's JSON, or name a bad address, are skipped with a warning. Changes are
//! coalesced for [`COALESCE`] (a deployment that restarts a hundred instances is a few
//! publications, not a hundred), then published as an `Arc<ServiceTable>` through a
//! `tokio::sync::watch` channel: a slow stream only ever sees the newest.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, OnceLock},
    time::Duration,
};

use bytes::Bytes;
use futures_util::StreamExt as _;
use gateway_proto::{
    registry::{self, InstanceValue},
    v1::{self, ControlPlaneMessage, control_plane_message},
};
use prost::Message as _;
use tokio::{sync::watch, task::JoinHandle, time::Instant};

use crate::{
    backoff::Backoff,
    metrics::Metrics,
    shutdown::Shutdown,
    store::{InstanceEvent, InstanceListing, Store, StoreError},
};

/// How long changes are gathered before they are published.
pub const COALESCE: Duration = Duration::from_millis(50);

/// The published registry: `None` until the first listing.
pub type ServicesRx = watch::Receiver<Option<Arc<ServiceTable>>>;

/// Each service's endpoints (sorted by address, one per address), once per publication.
#[derive(Debug)]
pub struct ServiceTable {
    generation: u64,
    services: BTreeMap<Arc<str>, Arc<[v1::Endpoint]>>,
    /// The services whose endpoints changed since the previous generation (gone ones too).
    changed: Vec<Arc<str>>,
    complete: OnceLock<Bytes>,
    delta: OnceLock<Bytes>,
}

impl ServiceTable {
    /// Counts publications from 1.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every service with at least one instance.
    pub fn services(&self) -> &BTreeMap<Arc<str>, Arc<[v1::Endpoint]>> {
        &self.services
    }

    /// The endpoints of `service` (none when it has no instance).
    pub fn endpoints(&self, service: &str) -> &[v1::Endpoint] {
        self.services.get(service).map_or(&[], |e| e)
    }

    /// The whole registry as a `Services` message, encoded once for every stream.
    pub(crate) fn complete_message(&self) -> Bytes {
        self.complete
            .get_or_init(|| {
                let services = self.services.iter().map(|(s, e)| entry(s, e)).collect();
                encode(services, true)
            })
            .clone()
    }

    /// What changed since the previous generation, encoded once for every stream that holds it.
    pub(crate) fn delta_message(&self) -> Bytes {
        self.delta
            .get_or_init(|| {
                let services = self
                    .changed
                    .iter()
                    .map(|s| entry(s, self.endpoints(s)))
                    .collect();
                encode(services, false)
            })
            .clone()
    }
}

fn entry(service: &str, endpoints: &[v1::Endpoint]) -> v1::ServiceInstances {
    v1::ServiceInstances {
        service: service.to_owned(),
        endpoints: endpoints.to_vec(),
    }
}

fn encode(services: Vec<v1::ServiceInstances>, complete: bool) -> Bytes {
    let message = ControlPlaneMessage {
        message: Some(control_plane_message::Message::Services(v1::Services {
            services,
            complete,
        })),
    };
    Bytes::from(message.encode_to_vec())
}

/// A handle on the running mirror. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ServiceMirror {
    rx: ServicesRx,
}

impl ServiceMirror {
    /// Starts mirroring `store`'s registry until `shutdown`.
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
            instances: BTreeMap::new(),
            dirty: BTreeSet::new(),
            published: BTreeMap::new(),
            generation: 0,
        };
        (Self { rx }, tokio::spawn(mirror.run(shutdown)))
    }

    /// The newest table, once the registry has been listed.
    pub fn current(&self) -> Option<Arc<ServiceTable>> {
        self.rx.borrow().clone()
    }

    /// A receiver of every new table.
    pub fn subscribe(&self) -> ServicesRx {
        self.rx.clone()
    }
}

/// Instances by service, then id: the valid ones only.
type Instances = BTreeMap<String, BTreeMap<String, InstanceValue>>;

struct Mirror {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    tx: watch::Sender<Option<Arc<ServiceTable>>>,
    instances: Instances,
    /// Services changed since the last publication.
    dirty: BTreeSet<String>,
    published: BTreeMap<Arc<str>, Arc<[v1::Endpoint]>>,
    generation: u64,
}

impl Mirror {
    async fn run(mut self, mut shutdown: Shutdown) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let listing = tokio::select! {
                _ = shutdown.wait() => return,
                listing = self.store.list_instances() => listing,
            };
            match listing {
                Ok(listing) => {
                    let from = listing.revision + 1;
                    self.load(listing);
                    if self.follow(from, &mut shutdown, &mut backoff).await {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list the service registry; retrying"),
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// Watches from `from` until the watch breaks (false) or shutdown (true), publishing
    /// what changed [`COALESCE`] after its first change.
    async fn follow(&mut self, from: i64, shutdown: &mut Shutdown, backoff: &mut Backoff) -> bool {
        let mut changes = tokio::select! {
            _ = shutdown.wait() => return true,
            changes = self.store.watch_instances(from) => match changes {
                Ok(changes) => changes,
                Err(e) => {
                    log_broken(&e);
                    return false;
                }
            },
        };
        let mut due: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.wait() => return true,
                _ = sleep_until(due) => {
                    due = None;
                    self.publish();
                }
                item = changes.next() => match item {
                    Some(Ok(batch)) => {
                        backoff.reset();
                        for event in batch.events {
                            self.apply(event);
                        }
                        if !self.dirty.is_empty() && due.is_none() {
                            due = Some(Instant::now() + COALESCE);
                        }
                    }
                    Some(Err(e)) => {
                        log_broken(&e);
                        self.publish();
                        return false;
                    }
                    None => {
                        tracing::warn!("the service registry watch ended; listing again");
                        self.publish();
                        return false;
                    }
                },
            }
        }
    }

    /// Replaces what is held with a listing; what differs is published at once.
    fn load(&mut self, listing: InstanceListing) {
        let mut fresh = Instances::new();
        for instance in listing.instances {
            if let Some(value) = self.read(&instance.service, &instance.id, &instance.value) {
                fresh
                    .entry(instance.service)
                    .or_default()
                    .insert(instance.id, value);
            }
        }
        let services: BTreeSet<&String> = fresh.keys().chain(self.instances.keys()).collect();
        for service in services {
            if fresh.get(service) != self.instances.get(service) {
                self.dirty.insert(service.clone());
            }
        }
        self.instances = fresh;
        tracing::info!(
            revision = listing.revision,
            services = self.instances.len(),
            "listed the service registry"
        );
        self.publish();
    }

    fn apply(&mut self, event: InstanceEvent) {
        let (service, id, value) = match event {
            InstanceEvent::Put(instance) => {
                let value = self.read(&instance.service, &instance.id, &instance.value);
                (instance.service, instance.id, value)
            }
            InstanceEvent::Delete { service, id } => (service, id, None),
        };
        let held = self.instances.entry(service.clone()).or_default();
        let changed = match value {
            Some(value) => held.insert(id, value.clone()) != Some(value),
            // A value that became unreadable takes the instance out: its old one is stale.
            None => held.remove(&id).is_some(),
        };
        if held.is_empty() {
            self.instances.remove(&service);
        }
        if changed {
            self.dirty.insert(service);
        }
    }

    /// A stored value, checked; `None` (with a warning) when it cannot be used.
    fn read(&self, service: &str, id: &str, value: &[u8]) -> Option<InstanceValue> {
        let checked = registry::check_service(service).and_then(|()| InstanceValue::decode(value));
        match checked {
            Ok(value) => Some(value),
            Err(error) => {
                self.metrics.instance_skipped();
                tracing::warn!(%service, %id, %error, "skipping a registry entry");
                None
            }
        }
    }

    /// Publishes the dirty services' new endpoints, if any changed (always the first time).
    fn publish(&mut self) {
        let mut changed = Vec::new();
        for service in std::mem::take(&mut self.dirty) {
            let endpoints = endpoints(self.instances.get(&service), &service);
            let name: Arc<str> = service.as_str().into();
            let before = self.published.get(&name);
            if before.map_or(endpoints.is_empty(), |b| **b == *endpoints) {
                continue;
            }
            if endpoints.is_empty() {
                self.published.remove(&name);
            } else {
                self.published.insert(name.clone(), endpoints.into());
            }
            tracing::info!(%service, instances = self.endpoints_of(&name), "service instances changed");
            changed.push(name);
        }
        if changed.is_empty() && self.generation > 0 {
            return;
        }
        self.generation += 1;
        self.metrics
            .set_registered_instances(self.published.values().map(|e| e.len()).sum());
        let table = ServiceTable {
            generation: self.generation,
            services: self.published.clone(),
            changed,
            complete: OnceLock::new(),
            delta: OnceLock::new(),
        };
        self.tx.send_replace(Some(Arc::new(table)));
    }

    fn endpoints_of(&self, service: &str) -> usize {
        self.published.get(service).map_or(0, |e| e.len())
    }
}

/// A service's endpoints: by address, one per address (the lowest id's, when two instances
/// registered the same address).
fn endpoints(
    instances: Option<&BTreeMap<String, InstanceValue>>,
    service: &str,
) -> Vec<v1::Endpoint> {
    let mut by_address: BTreeMap<&str, (&str, &InstanceValue)> = BTreeMap::new();
    for (id, value) in instances.into_iter().flatten() {
        if let Some((first, _)) = by_address.get(value.address.as_str()) {
            tracing::warn!(%service, %id, address = %value.address, other = %first, "two instances registered one address; keeping the first id's");
            continue;
        }
        by_address.insert(value.address.as_str(), (id, value));
    }
    by_address
        .values()
        .map(|(_, value)| value.endpoint())
        .collect()
}

fn log_broken(error: &StoreError) {
    match error {
        StoreError::Compacted { .. } => {
            tracing::info!("the registry history was compacted past the watch; listing again");
        }
        other => tracing::warn!(error = %other, "the service registry watch broke; listing again"),
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;

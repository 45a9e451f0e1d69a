//! The discovery service (`gateway.v1.Discovery/Stream`): one stream per data plane.
//!
//! The data plane says `Hello` first. The control plane then sends the newest configuration
//! whenever its version differs from what the data plane holds, never while one is unanswered
//! (a slow data plane skips versions), and records every `Ack`/`Nack` in the data-plane
//! registry. A data plane that says it understands deltas gets, after its first snapshot, only
//! what changed since the version it acknowledged. Every message is encoded once per version
//! and shared by all streams ([`wire`]). A data plane that takes them also gets the service
//! registry's instances ([`services`]): the whole registry on connect, then what changes.
//! Heartbeats go both ways; a peer silent for too long is dropped.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use gateway_proto::v1::{DataPlaneMessage, DataPlaneStatus, Feature, data_plane_message::Message};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub use self::wire::DiscoveryServer;
use self::wire::Outbound;

use crate::{
    metrics::Metrics, reflector::Reflector, services::ServiceMirror, shutdown::Shutdown,
    store::Store,
};

mod services;
mod session;
mod wire;

/// The shortest time between two registry writes of one data plane's status.
const REGISTRY_WRITE_INTERVAL: Duration = Duration::from_millis(250);

/// Timings and identity of the discovery service.
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    /// How often a heartbeat is sent (5 s).
    pub heartbeat_interval: Duration,
    /// A data plane silent this long is dropped (15 s).
    pub dead_after: Duration,
    /// This control plane's address, as recorded in the registry (its `--listen`).
    pub control_plane: String,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(5),
            dead_after: Duration::from_secs(15),
            control_plane: String::new(),
        }
    }
}

/// The `Discovery` service.
#[derive(Clone, Debug)]
pub struct DiscoveryService {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn Store>,
    reflector: Reflector,
    services: ServiceMirror,
    metrics: Arc<Metrics>,
    config: DiscoveryConfig,
    shutdown: Shutdown,
    /// The newest session of each data-plane id: only it may remove the registry entry.
    sessions: Mutex<HashMap<String, u64>>,
    next_session: AtomicU64,
}

// === impl DiscoveryService ===

impl DiscoveryService {
    /// A discovery service streaming the reflector's snapshots and the mirror's service
    /// instances; its streams end on `shutdown`.
    pub fn new(
        store: Arc<dyn Store>,
        reflector: Reflector,
        services: ServiceMirror,
        metrics: Arc<Metrics>,
        config: DiscoveryConfig,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                reflector,
                services,
                metrics,
                config,
                shutdown,
                sessions: Mutex::new(HashMap::new()),
                next_session: AtomicU64::new(1),
            }),
        }
    }
}

impl DiscoveryService {
    /// One `Discovery.Stream` call.
    async fn open(
        &self,
        request: Request<Streaming<DataPlaneMessage>>,
    ) -> Result<Response<ReceiverStream<Outbound>>, Status> {
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(self.shared.config.dead_after, inbound.message()).await;
        let hello = match first {
            Ok(Ok(Some(DataPlaneMessage {
                message: Some(Message::Hello(hello)),
            }))) => hello,
            Ok(Ok(Some(_))) => {
                return Err(Status::invalid_argument("the first message must be Hello"));
            }
            Ok(Ok(None)) => return Err(Status::invalid_argument("the stream ended before Hello")),
            Ok(Err(status)) => return Err(status),
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "no Hello within {:?}",
                    self.shared.config.dead_after
                )));
            }
        };
        if hello.id.is_empty() {
            return Err(Status::invalid_argument("Hello.id: must not be empty"));
        }
        let now = SystemTime::now();
        let status = DataPlaneStatus {
            id: hello.id.clone(),
            address: if hello.address.is_empty() {
                peer.map(|p| p.ip().to_string()).unwrap_or_default()
            } else {
                hello.address.clone()
            },
            build_version: hello.build_version.clone(),
            acked_version: hello.version,
            control_plane: self.shared.config.control_plane.clone(),
            connected_at: Some(now.into()),
            last_seen: Some(now.into()),
            ..DataPlaneStatus::default()
        };
        let number = self.shared.next_session.fetch_add(1, Ordering::Relaxed);
        self.shared
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hello.id.clone(), number);
        tracing::info!(
            id = %hello.id,
            address = %status.address,
            version = hello.version,
            build = %hello.build_version,
            features = ?hello.features().collect::<Vec<_>>(),
            "data plane connected"
        );
        let wants_services = hello.features().any(|f| f == Feature::Services);
        let (tx, rx) = mpsc::channel(4);
        let (status_tx, status_rx) = watch::channel(status);
        tokio::spawn(registry_writer(self.shared.clone(), status_rx, number));
        let feeds = session::Feeds {
            snapshots: self.shared.reflector.subscribe(),
            services: services::ServicesSent::new(
                wants_services.then(|| self.shared.services.subscribe()),
            ),
        };
        let session = session::Session::new(
            feeds,
            self.shared.metrics.clone(),
            self.shared.config.clone(),
            // Version 0 is what a data plane with no configuration says: it holds nothing, so
            // even an empty configuration (version 0, nothing stored yet) is news to it.
            (hello.version != 0).then_some(hello.version),
            session::Features {
                delta: hello.features().any(|f| f == Feature::Delta),
                packed: hello.features().any(|f| f == Feature::Packed),
            },
            tx,
            status_tx,
        );
        tokio::spawn(session.run(inbound, self.shared.shutdown.clone()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Writes the newest status of one session to the registry, then removes it when the session
/// ends (unless a newer session of the same data plane took over).
async fn registry_writer(
    shared: Arc<Shared>,
    mut status: watch::Receiver<DataPlaneStatus>,
    number: u64,
) {
    shared.metrics.dataplane_connected();
    status.mark_changed();
    let mut id = String::new();
    let mut written: Option<tokio::time::Instant> = None;
    while status.changed().await.is_ok() {
        // At most one write per interval: a burst of changes (an ACK each) is one write of the
        // newest status, not a store write per data plane per change.
        if let Some(at) = written {
            tokio::time::sleep_until(at + REGISTRY_WRITE_INTERVAL).await;
        }
        written = Some(tokio::time::Instant::now());
        let current = status.borrow_and_update().clone();
        id.clone_from(&current.id);
        if let Err(e) = shared.store.put_dataplane(current).await {
            tracing::warn!(%id, error = %e, "could not update the data-plane registry");
        }
    }
    shared.metrics.dataplane_disconnected();
    let newest = {
        let mut sessions = shared.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let newest = sessions.get(&id) == Some(&number);
        if newest {
            sessions.remove(&id);
        }
        newest
    };
    if newest && let Err(e) = shared.store.remove_dataplane(&id).await {
        tracing::warn!(%id, error = %e, "could not remove a data plane from the registry");
    }
    tracing::info!(%id, "data plane disconnected");
}

#[cfg(test)]
mod tests;

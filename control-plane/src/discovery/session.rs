//! One data plane's stream: what to send when, and what its answers mean.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use gateway_proto::v1::{
    self, ControlPlaneMessage, DataPlaneMessage, DataPlaneStatus, control_plane_message,
    data_plane_message::Message,
};
use prost::Message as _;
use tokio::{
    sync::{mpsc, watch},
    time::{Instant, MissedTickBehavior},
};
use tonic::{Status, Streaming};

use super::{DiscoveryConfig, services::ServicesSent, wire::Outbound};
use crate::{
    metrics::Metrics,
    reflector::{Form, SnapshotRx},
    shutdown::Shutdown,
};

/// How stale the registry's `last_seen` of an idle data plane may get: heartbeats refresh it
/// this often, not on every beat, to keep registry writes (etcd revisions) few.
const REGISTRY_REFRESH: Duration = Duration::from_secs(30);

/// What the data plane said it understands, in its Hello.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Features {
    pub(super) delta: bool,
    pub(super) packed: bool,
}

pub(super) struct Session {
    snapshots: SnapshotRx,
    metrics: Arc<Metrics>,
    config: DiscoveryConfig,
    /// The version the data plane serves; `None` while it serves nothing.
    held: Option<i64>,
    /// The version sent and not answered yet.
    pending: Option<i64>,
    /// The last version it refused: not sent again.
    refused: Option<i64>,
    features: Features,
    /// The data plane cannot use a delta against what it holds: the next message is whole.
    resync: bool,
    /// The version of the last whole snapshot sent: a Resync in answer to it is a refusal
    /// (sending it again would loop).
    whole_sent: Option<i64>,
    /// The registry's instances, sent apart from the configuration (not versioned, not
    /// answered).
    services: ServicesSent,
    tx: mpsc::Sender<Outbound>,
    status: watch::Sender<DataPlaneStatus>,
    /// When the status was last published to the registry.
    published: Instant,
}

/// What a session sends from: the reflector's configurations and the mirror's instances.
pub(super) struct Feeds {
    pub(super) snapshots: SnapshotRx,
    pub(super) services: ServicesSent,
}

/// Why a session ended.
enum End {
    Closed,
    Error(Status),
}

impl Session {
    pub(super) fn new(
        feeds: Feeds,
        metrics: Arc<Metrics>,
        config: DiscoveryConfig,
        held: Option<i64>,
        features: Features,
        tx: mpsc::Sender<Outbound>,
        status: watch::Sender<DataPlaneStatus>,
    ) -> Self {
        let Feeds {
            snapshots,
            services,
        } = feeds;
        Self {
            snapshots,
            metrics,
            config,
            held,
            pending: None,
            refused: None,
            features,
            // The version a data plane says it holds after a restart is its disk cache: a
            // delta against it is as good as against what it acknowledged on this stream.
            resync: false,
            whole_sent: None,
            services,
            tx,
            status,
            published: Instant::now(),
        }
    }

    pub(super) async fn run(
        mut self,
        mut inbound: Streaming<DataPlaneMessage>,
        mut shutdown: Shutdown,
    ) {
        let id = self.status.borrow().id.clone();
        let mut heartbeat = tokio::time::interval_at(
            Instant::now() + self.config.heartbeat_interval,
            self.config.heartbeat_interval,
        );
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let end = loop {
            // Instances first: a data plane that connects compiles its first configuration
            // with them.
            if let Some(message) = self.services.due()
                && let Err(end) = self.send(message).await
            {
                break end;
            }
            if let Err(end) = self.send_snapshot_if_due().await {
                break end;
            }
            tokio::select! {
                _ = shutdown.wait() => break End::Error(Status::unavailable("the control plane is shutting down")),
                changed = self.snapshots.changed() => if changed.is_err() {
                    break End::Error(Status::unavailable("the control plane is shutting down"));
                },
                () = self.services.changed() => {}
                message = inbound.message() => match message {
                    Ok(Some(message)) => {
                        last_heard = Instant::now();
                        self.answer(message);
                    }
                    Ok(None) => break End::Closed,
                    Err(status) => {
                        tracing::debug!(%id, %status, "data-plane stream failed");
                        break End::Closed;
                    }
                },
                _ = heartbeat.tick() => {
                    if let Err(end) = self.send(heartbeat_message()).await {
                        break end;
                    }
                }
                _ = tokio::time::sleep_until(last_heard + self.config.dead_after) => {
                    tracing::warn!(%id, after = ?self.config.dead_after, "data plane went silent; dropping it");
                    break End::Error(Status::unavailable(format!(
                        "nothing heard from the data plane for {:?}",
                        self.config.dead_after
                    )));
                }
            }
        };
        if let End::Error(status) = end {
            // Best effort: the data plane may be gone already.
            let _ = self.tx.try_send(Err(status));
        }
    }

    /// Sends the newest configuration if it differs from what the data plane holds, none is
    /// unanswered, and it was not refused already: as a delta against what the data plane
    /// holds when it can take one and the changes since are known, whole otherwise.
    async fn send_snapshot_if_due(&mut self) -> Result<(), End> {
        if self.pending.is_some() {
            return Ok(());
        }
        let Some(published) = self.snapshots.borrow_and_update().clone() else {
            return Ok(());
        };
        let version = published.version();
        if Some(version) == self.held || Some(version) == self.refused {
            return Ok(());
        }
        let form = if self.features.packed {
            Form::Packed
        } else {
            Form::Plain
        };
        let delta = match self.held {
            Some(base) if self.features.delta && !self.resync => {
                published.delta_from(base, form).await
            }
            _ => None,
        };
        let delta_sent = delta.is_some();
        let message = match delta {
            Some(delta) => delta,
            None => published.full(form).await,
        };
        self.send(message).await?;
        self.whole_sent = (!delta_sent).then_some(version);
        self.resync = false;
        self.pending = Some(version);
        self.metrics.snapshot_sent();
        tracing::debug!(version, base = ?self.held, delta = delta_sent, "configuration sent");
        self.status.send_modify(|s| s.pending_version = version);
        Ok(())
    }

    async fn send(&self, message: Bytes) -> Result<(), End> {
        match tokio::time::timeout(self.config.dead_after, self.tx.send(Ok(message))).await {
            Ok(Ok(())) => Ok(()),
            // The data plane hung up.
            Ok(Err(_)) => Err(End::Closed),
            Err(_) => Err(End::Error(Status::unavailable(
                "the data plane stopped reading its stream",
            ))),
        }
    }

    fn answer(&mut self, message: DataPlaneMessage) {
        let id = self.status.borrow().id.clone();
        let now = Some(SystemTime::now().into());
        let refresh = match message.message {
            Some(Message::Ack(_) | Message::Nack(_)) => true,
            Some(Message::Heartbeat(_)) => self.published.elapsed() >= REGISTRY_REFRESH,
            _ => false,
        };
        if refresh {
            self.published = Instant::now();
        }
        match message.message {
            Some(Message::Ack(ack)) => {
                self.metrics.answered(true);
                self.answered(ack.version);
                self.held = Some(ack.version);
                tracing::debug!(%id, version = ack.version, "data plane acknowledged");
                self.status.send_modify(|s| {
                    s.acked_version = ack.version;
                    s.pending_version = self.pending.unwrap_or(0);
                    s.nacked_version = 0;
                    s.last_error.clear();
                    s.last_seen = now;
                });
            }
            Some(Message::Nack(nack)) => {
                self.metrics.answered(false);
                self.answered(nack.version);
                self.refused = Some(nack.version);
                tracing::warn!(%id, version = nack.version, reason = %nack.reason, "data plane refused a snapshot");
                self.status.send_modify(|s| {
                    s.pending_version = self.pending.unwrap_or(0);
                    s.nacked_version = nack.version;
                    s.last_error = nack.reason;
                    s.last_seen = now;
                });
            }
            Some(Message::Heartbeat(_)) => {
                // Published only every REGISTRY_REFRESH: a registry write per heartbeat would
                // cost an etcd revision per data plane every few seconds.
                self.status.send_if_modified(|s| {
                    s.last_seen = now;
                    refresh
                });
            }
            Some(Message::Resync(resync)) => {
                let unanswered = self.pending.take();
                self.held = (resync.version != 0).then_some(resync.version);
                if unanswered.is_some() && unanswered == self.whole_sent {
                    // Not even the whole configuration could be read: refused, not resent.
                    tracing::warn!(%id, version = ?unanswered, "data plane cannot read the whole configuration");
                    self.refused = unanswered;
                } else {
                    tracing::info!(%id, held = resync.version, "data plane asks for the whole configuration");
                    self.refused = None;
                    self.resync = true;
                }
            }
            Some(Message::Hello(_)) => {
                tracing::warn!(%id, "ignoring a second Hello on one stream");
            }
            None => tracing::debug!(%id, "ignoring an empty message"),
        }
    }

    fn answered(&mut self, version: i64) {
        if self.pending == Some(version) {
            self.pending = None;
        }
    }
}

/// The encoded heartbeat, the same bytes for every stream.
fn heartbeat_message() -> Bytes {
    static ENCODED: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    ENCODED
        .get_or_init(|| {
            let beat = ControlPlaneMessage {
                message: Some(control_plane_message::Message::Heartbeat(v1::Heartbeat {})),
            };
            Bytes::from(beat.encode_to_vec())
        })
        .clone()
}

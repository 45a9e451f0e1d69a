//! The control-plane subscriber: one `Discovery.Stream` at a time, to the listed control planes
//! in turn. Says Hello with the version held and that it takes deltas and packed messages;
//! applies each snapshot or delta to the configuration it holds, compiles the result off the
//! request path, swaps it in, caches it and ACKs it, or NACKs it and keeps the last good table
//! (and configuration). A delta that does not fit what it holds gets a Resync, which the control
//! plane answers with the whole configuration. Heartbeats both ways; a silent peer is dropped
//! and the stream reopened with backoff and jitter.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use gateway_proto::{
    delta,
    v1::{
        self, Ack, DataPlaneMessage, Feature, Hello, Nack, Resync, control_plane_message,
        data_plane_message, discovery_client::DiscoveryClient,
    },
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    codec::CompressionEncoding,
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

use crate::{
    cache,
    config::ControlPlaneConfig,
    pipeline::Chain,
    state::State,
    table::{Source, Table},
};

/// Interval between heartbeats.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Silence after which the control plane counts as dead.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest message accepted or sent.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The URL is not a valid endpoint.
    #[error("invalid control plane URL")]
    Url(#[source] tonic::transport::Error),
    /// No connection could be made.
    #[error("cannot connect")]
    Connect(#[source] tonic::transport::Error),
    /// The token is not a valid header value.
    #[error("the data-plane token is not a valid header value")]
    Token,
    /// The control plane answered with an error status.
    #[error("stream failed: {0}")]
    Status(#[from] Box<tonic::Status>),
    /// The control plane closed the stream.
    #[error("the control plane closed the stream")]
    Closed,
    /// Nothing was heard for too long.
    #[error("no message from the control plane for {0:?}")]
    Silent(Duration),
    /// Opening the stream took too long.
    #[error("the control plane did not open the stream in time")]
    OpenTimeout,
}

/// Runs until `shutdown` turns true. `held` is the configuration served from the disk cache.
pub(crate) async fn run(
    config: ControlPlaneConfig,
    address: String,
    state: Arc<State>,
    mut held: Option<v1::Snapshot>,
    mut shutdown: watch::Receiver<bool>,
) {
    if config.urls.is_empty() {
        tracing::error!("no control plane URL given");
        return;
    }
    let mut attempt: u32 = 0;
    let mut next = 0usize;
    loop {
        let url = &config.urls[next % config.urls.len()];
        next = next.wrapping_add(1);
        let mut established = false;
        let result = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            result = session(&config, url, &address, &state, &mut held, &mut established) => result,
        };
        if let Err(error) = result {
            tracing::warn!(control_plane = %url, error = %Chain(&error), "discovery stream ended");
        }
        if established {
            attempt = 0;
        }
        // Full jitter: a random delay up to an exponentially growing cap.
        let cap = BACKOFF_MIN
            .saturating_mul(1u32 << attempt.min(16))
            .min(BACKOFF_MAX);
        attempt = attempt.saturating_add(1);
        let delay = cap.mul_f64(fastrand::f64());
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// One stream: connect, Hello, then snapshots and heartbeats until something fails.
async fn session(
    config: &ControlPlaneConfig,
    url: &str,
    address: &str,
    state: &Arc<State>,
    held: &mut Option<v1::Snapshot>,
    established: &mut bool,
) -> Result<(), StreamError> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(StreamError::Url)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let channel: Channel = endpoint.connect().await.map_err(StreamError::Connect)?;
    // Not `accept_compressed`: configurations come packed, compressed once by the control
    // plane for every data plane; gRPC compression would only compress them again.
    let mut client = DiscoveryClient::new(channel)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let (tx, rx) = mpsc::channel::<DataPlaneMessage>(16);
    let hello = Hello {
        id: config.id.clone(),
        version: state.version(),
        build_version: env!("CARGO_PKG_VERSION").to_owned(),
        address: address.to_owned(),
        features: vec![Feature::Delta as i32, Feature::Packed as i32],
    };
    // The channel has room: the receiver is not polled yet, but 16 slots are free.
    let _ = tx.try_send(message(data_plane_message::Message::Hello(hello)));

    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = &config.token {
        let value =
            MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| StreamError::Token)?;
        request.metadata_mut().insert("authorization", value);
    }
    let opened = tokio::time::timeout(PEER_TIMEOUT, client.stream(request))
        .await
        .map_err(|_| StreamError::OpenTimeout)?
        .map_err(|status| StreamError::Status(Box::new(status)))?;
    let mut inbound = opened.into_inner();
    *established = true;
    tracing::info!(control_plane = %url, version = state.version(), "discovery stream open");

    let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            received = inbound.message() => {
                let received = received.map_err(|status| StreamError::Status(Box::new(status)))?;
                let Some(received) = received else {
                    return Err(StreamError::Closed);
                };
                last_heard = Instant::now();
                let update = match received.message {
                    Some(control_plane_message::Message::Snapshot(snapshot)) => Update::Whole(snapshot),
                    Some(control_plane_message::Message::Delta(delta)) => Update::Delta(delta),
                    Some(control_plane_message::Message::Packed(packed)) => Update::Packed(packed),
                    Some(control_plane_message::Message::Heartbeat(_)) | None => continue,
                };
                let answer = apply(state, &config.cache_dir, held, update).await;
                if tx.send(answer).await.is_err() {
                    return Err(StreamError::Closed);
                }
            }
            _ = heartbeat.tick() => {
                let silent = last_heard.elapsed();
                if silent > PEER_TIMEOUT {
                    return Err(StreamError::Silent(silent));
                }
                let beat = message(data_plane_message::Message::Heartbeat(v1::Heartbeat {}));
                if tx.send(beat).await.is_err() {
                    return Err(StreamError::Closed);
                }
            }
        }
    }
}

/// A configuration as the control plane sent it.
enum Update {
    Whole(v1::Snapshot),
    Delta(v1::Delta),
    /// Either of them, gzip-compressed.
    Packed(Vec<u8>),
}

/// What became of an update.
enum Applied {
    Swapped(i64),
    Refused {
        version: i64,
        reason: String,
    },
    /// It does not apply to what this data plane holds.
    Resync(String),
}

/// Applies an update to the configuration held, then compiles, swaps and caches the result,
/// all on a blocking thread; the answer to send back. A refused result leaves `held` as it was.
async fn apply(
    state: &Arc<State>,
    cache_dir: &std::path::Path,
    held: &mut Option<v1::Snapshot>,
    update: Update,
) -> DataPlaneMessage {
    let shared = state.clone();
    let dir: PathBuf = cache_dir.to_owned();
    let mut current = held.take();
    let work = tokio::task::spawn_blocking(move || {
        let applied = apply_blocking(&shared, &dir, &mut current, update);
        (current, applied)
    });
    let applied = match work.await {
        Ok((current, applied)) => {
            *held = current;
            applied
        }
        // The held configuration went with the panic: the next update must be whole.
        Err(error) => Applied::Resync(format!("internal error while compiling: {error}")),
    };
    let version = held.as_ref().map_or(0, |h| h.version);
    match applied {
        Applied::Swapped(version) => message(data_plane_message::Message::Ack(Ack { version })),
        Applied::Refused { version, reason } => {
            state.metrics().rejected();
            tracing::warn!(version, %reason, "configuration refused; keeping the last good one");
            message(data_plane_message::Message::Nack(Nack { version, reason }))
        }
        Applied::Resync(reason) => {
            tracing::info!(held = version, %reason, "asking for the whole configuration");
            message(data_plane_message::Message::Resync(Resync { version }))
        }
    }
}

fn apply_blocking(
    state: &State,
    dir: &std::path::Path,
    held: &mut Option<v1::Snapshot>,
    update: Update,
) -> Applied {
    let update = match update {
        Update::Packed(packed) => match delta::unpack(&packed, MAX_MESSAGE_BYTES) {
            Ok(v1::ControlPlaneMessage {
                message: Some(control_plane_message::Message::Snapshot(snapshot)),
            }) => Update::Whole(snapshot),
            Ok(v1::ControlPlaneMessage {
                message: Some(control_plane_message::Message::Delta(delta)),
            }) => Update::Delta(delta),
            Ok(_) => return Applied::Resync("a packed message holds no configuration".into()),
            Err(error) => return Applied::Resync(format!("unreadable packed message: {error}")),
        },
        other => other,
    };
    let started = Instant::now();
    match update {
        Update::Whole(mut snapshot) => {
            // Deltas find resources by key: keep them in the one order.
            delta::sort(&mut snapshot.resources);
            match swap(state, &snapshot, started) {
                Ok(()) => {
                    store_cache(dir, &snapshot);
                    let version = snapshot.version;
                    *held = Some(snapshot);
                    Applied::Swapped(version)
                }
                Err(reason) => Applied::Refused {
                    version: snapshot.version,
                    reason,
                },
            }
        }
        Update::Delta(update) => {
            let Some(snapshot) = held.as_mut() else {
                return Applied::Resync("a delta, and no configuration to apply it to".into());
            };
            let version = update.version;
            let undo = match delta::apply(snapshot, update) {
                Ok(undo) => undo,
                Err(error) => return Applied::Resync(error.to_string()),
            };
            match swap(state, snapshot, started) {
                Ok(()) => {
                    store_cache(dir, snapshot);
                    Applied::Swapped(version)
                }
                Err(reason) => {
                    undo.revert(snapshot);
                    Applied::Refused { version, reason }
                }
            }
        }
        Update::Packed(_) => Applied::Resync("a packed message inside a packed message".into()),
    }
}

/// Validates and compiles `snapshot`, and swaps it in.
fn swap(state: &State, snapshot: &v1::Snapshot, started: Instant) -> Result<(), String> {
    let table = Table::compile(
        snapshot.version,
        &snapshot.resources,
        Source::ControlPlane,
        state.side(),
    )
    .map_err(|e| e.to_string())?;
    let (routes, upstreams) = (table.routes(), table.upstreams().count());
    state.install(table);
    tracing::info!(version = snapshot.version, routes, upstreams, elapsed = ?started.elapsed(), "configuration swapped in");
    Ok(())
}

fn store_cache(dir: &std::path::Path, snapshot: &v1::Snapshot) {
    if let Err(error) = cache::store(dir, snapshot) {
        tracing::warn!(error = %Chain(&error), "cannot write the snapshot cache");
    }
}

fn message(message: data_plane_message::Message) -> DataPlaneMessage {
    DataPlaneMessage {
        message: Some(message),
    }
}

/// Loads the cached snapshot from `dir` and serves it at once; problems are logged, never
/// fatal. Returns the snapshot served: the configuration deltas apply to.
pub(crate) fn restore_cache(dir: &std::path::Path, state: &State) -> Option<v1::Snapshot> {
    let mut snapshot = match cache::load(dir) {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(error = %Chain(&error), "ignoring the snapshot cache");
            return None;
        }
    };
    delta::sort(&mut snapshot.resources);
    match Table::compile(
        snapshot.version,
        &snapshot.resources,
        Source::Cache,
        state.side(),
    ) {
        Ok(table) => {
            tracing::info!(version = table.version(), "serving the cached snapshot");
            state.install(table);
            Some(snapshot)
        }
        Err(error) => {
            tracing::warn!(version = snapshot.version, %error, "ignoring the snapshot cache: it does not compile");
            None
        }
    }
}

#[cfg(test)]
mod tests;

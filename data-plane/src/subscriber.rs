//! The control-plane subscriber: one `Discovery.Stream` at a time, to the listed control planes
//! in turn. Says Hello with the version held and that it takes deltas, packed messages and
//! services; applies each snapshot or delta to the configuration it holds, compiles the result
//! off the request path, swaps it in, caches it and ACKs it, or NACKs it and keeps the last
//! good table (and configuration). A delta that does not fit what it holds gets a Resync,
//! which the control plane answers with the whole configuration. The service registry's
//! instances (`Services` messages, [`services`]) recompile the upstreams that discover them,
//! and a changed DNS answer the upstreams that name it (from the configuration held, whether a
//! stream is open or not).
//! Heartbeats both ways; a silent peer is dropped and the stream reopened with backoff and
//! jitter.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use gateway_proto::v1::{
    self, DataPlaneMessage, Feature, Hello, control_plane_message, data_plane_message,
    discovery_client::DiscoveryClient,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    codec::CompressionEncoding,
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

pub(crate) use self::{apply::restore_cache, held::Held};
use self::{
    apply::{Update, apply},
    cache_writer::CacheWriter,
    held::Shared,
};
use crate::{config::ControlPlaneConfig, pipeline::Chain, state::State};

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
    held: Option<Held>,
    shutdown: watch::Receiver<bool>,
) {
    if config.urls.is_empty() {
        tracing::error!("no control plane URL given");
        return;
    }
    let held: Shared = Arc::new(Mutex::new(held));
    let (writer, written) = CacheWriter::spawn(
        config.cache_dir.clone(),
        held.clone(),
        state.clone(),
        shutdown.clone(),
    );
    let names = tokio::spawn(crate::recompile::on_dns_changes(
        state.clone(),
        shutdown.clone(),
        {
            let held = held.clone();
            move |state: &State| {
                let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(held) = held.as_mut() {
                    let snapshot = &held.snapshot;
                    crate::recompile::refresh_names(
                        state,
                        snapshot.version,
                        &snapshot.resources,
                        &mut held.graph,
                    );
                }
            }
        },
    ));
    streams(&config, &address, &state, &held, &writer, shutdown).await;
    names.abort();
    // The writer writes what is held once more on shutdown.
    let _ = written.await;
}

/// Streams to the control planes in turn until `shutdown` turns true.
async fn streams(
    config: &ControlPlaneConfig,
    address: &str,
    state: &Arc<State>,
    held: &Shared,
    writer: &CacheWriter,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut attempt: u32 = 0;
    let mut next = 0usize;
    loop {
        let url = &config.urls[next % config.urls.len()];
        next = next.wrapping_add(1);
        let mut established = false;
        let result = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            result = session(config, url, address, state, held, writer, &mut established) => result,
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
    held: &Shared,
    writer: &CacheWriter,
    established: &mut bool,
) -> Result<(), StreamError> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(StreamError::Url)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &config.tls.ca {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &config.tls.identity {
            tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(tls).map_err(StreamError::Connect)?;
    }
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
        features: vec![
            Feature::Delta as i32,
            Feature::Packed as i32,
            Feature::Services as i32,
        ],
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
                    // Not configuration: taken in, never answered.
                    Some(control_plane_message::Message::Services(message)) => {
                        services::apply(state, held, message).await;
                        continue;
                    }
                    Some(control_plane_message::Message::Heartbeat(_)) | None => continue,
                };
                let answer = apply(state, held, writer, update).await;
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

fn message(message: data_plane_message::Message) -> DataPlaneMessage {
    DataPlaneMessage {
        message: Some(message),
    }
}

mod apply;
mod cache_writer;
mod held;
mod services;

#[cfg(test)]
mod tests;

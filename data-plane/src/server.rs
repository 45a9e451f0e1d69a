//! The traffic listener: HTTP/1.x on our own connection loop ([`crate::h1`]) and prior-knowledge
//! HTTP/2 (h2c) on hyper, on one port, drained gracefully on shutdown.

mod prefixed;

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use hyper::{server::conn::http2, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};

use self::prefixed::Prefixed;
use crate::{
    h1, h2,
    limits::{MAX_CONCURRENT_STREAMS, MAX_HEADER_BYTES},
    pipeline::{self, Chain, Local, ProxyError, request_id::RequestId},
    state::State,
};

/// How often an idle HTTP/2 connection is pinged, and how long the answer may take, so that a
/// dead peer's connection (and its streams) does not linger.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams a client may reset before the server has answered them, at once; past it the
/// connection gets GOAWAY (the HTTP/2 rapid-reset flood, CVE-2023-44487).
const H2_MAX_PENDING_RESETS: usize = 20;

/// Serves `listener` until `shutdown` turns true, then waits up to `drain` for in-flight
/// requests to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let h2 = Arc::new(http2_builder());
    let graceful = GracefulShutdown::new();
    // Every connection task holds a sender; the channel closes when the last one ends.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(counted) = Open::count(&state) else {
            // Over --max-connections: answer 503 and close, off the accept loop.
            tokio::spawn(refuse(stream));
            continue;
        };
        let conn = Arc::new(pipeline::Connection::new(state.clone(), peer));
        let shutdown = shutdown.clone();
        let open = open_tx.clone();
        let h2 = h2.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _open = open;
            let _counted = counted;
            if let h1::Ended::Http2 { stream, read } =
                h1::serve(stream, conn.clone(), shutdown).await
            {
                serve_h2(&h2, watcher, stream, read, conn).await;
            }
        });
    }
    drop(listener);
    drop(open_tx);
    tracing::info!("stopped accepting; draining");
    let drained = async {
        tokio::join!(graceful.shutdown(), open_rx.recv());
    };
    if tokio::time::timeout(drain, drained).await.is_err() {
        tracing::warn!(
            ?drain,
            "drain timeout elapsed; closing the remaining connections"
        );
    }
}

/// Serves a prior-knowledge HTTP/2 connection whose first bytes were already read.
async fn serve_h2(
    builder: &http2::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    stream: TcpStream,
    read: Vec<u8>,
    conn: Arc<pipeline::Connection>,
) {
    let peer = stream.peer_addr().ok();
    let service = service_fn(move |req| h2::handle(conn.clone(), req));
    let connection = builder.serve_connection(TokioIo::new(Prefixed::new(read, stream)), service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(?peer, error = %Chain(&error), "HTTP/2 connection ended with an error");
    }
}

fn http2_builder() -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
    builder
}

/// A client connection counted against `--max-connections` until dropped.
struct Open(Arc<State>);

impl Open {
    fn count(state: &Arc<State>) -> Option<Self> {
        let max = state.settings().max_connections;
        let before = state.open_connections().fetch_add(1, Ordering::Relaxed);
        let open = Self(state.clone());
        (max == 0 || before < max).then_some(open)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open_connections().fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers a connection over the limit with 503 `overloaded` and closes it. The request is not
/// read: the answer is written at once (clients read it as the response to their first
/// request), with a short linger so the close does not reset it away.
async fn refuse(mut stream: TcpStream) {
    let id = RequestId::new();
    let mut out = Vec::with_capacity(512);
    let local = Local::Error(ProxyError::Overloaded).into_response(id.as_bytes());
    h1::write_local(&mut out, local, &id, true);
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&out)).await;
    let _ = stream.shutdown().await;
}

/// A listener on 127.0.0.1:0 serving `resources` (none: not ready), for the pipeline tests; it
/// stops when the sender drops.
#[cfg(test)]
pub(crate) async fn serve_for_test(
    resources: Option<&str>,
    trusted: &[&str],
) -> (std::net::SocketAddr, watch::Sender<bool>) {
    use crate::{
        config::TrustedPeers,
        state::Settings,
        table::{Source, Table},
    };

    let state = Arc::new(State::new(Settings {
        trusted_peers: TrustedPeers::parse(trusted.iter().copied()).unwrap(),
        ..Settings::default()
    }));
    if let Some(yaml) = resources {
        let resources = gateway_proto::document::parse_documents(yaml).unwrap();
        state.install(Table::compile(1, &resources, Source::File, state.side()).unwrap());
    }
    serve_state_for_test(state).await
}

/// A listener on 127.0.0.1:0 serving whatever `state` holds.
#[cfg(test)]
pub(crate) async fn serve_state_for_test(
    state: Arc<State>,
) -> (std::net::SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(serve(listener, state, stopped, Duration::from_secs(1)));
    (addr, stop)
}

#[cfg(test)]
mod tests;

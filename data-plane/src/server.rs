//! The traffic listener: HTTP/1.x on our own connection loop ([`crate::h1`]) and prior-knowledge
//! HTTP/2 (h2c) on hyper, on one port, drained gracefully on shutdown.

mod prefixed;

use std::{sync::Arc, time::Duration};

use hyper::{server::conn::http2, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};

use self::prefixed::Prefixed;
use crate::{
    h1,
    proxy::{self, Chain},
    state::State,
};

/// Time a client has to send a request's headers (also the idle keep-alive limit).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request head (HTTP/1.1 head, HTTP/2 header list); larger gets a 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Concurrent HTTP/2 streams per client connection.
const MAX_CONCURRENT_STREAMS: u32 = 256;

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
        let conn = Arc::new(proxy::Connection::new(state.clone(), peer));
        let shutdown = shutdown.clone();
        let open = open_tx.clone();
        let h2 = h2.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _open = open;
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
    conn: Arc<proxy::Connection>,
) {
    let peer = stream.peer_addr().ok();
    let service = service_fn(move |req| proxy::handle(conn.clone(), req));
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
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    builder
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
        table::{Source, Table},
    };

    let state = Arc::new(State::new(
        TrustedPeers::parse(trusted.iter().copied()).unwrap(),
    ));
    if let Some(yaml) = resources {
        let resources = gateway_proto::document::parse_documents(yaml).unwrap();
        state.install(Table::compile(1, &resources, Source::File, state.side()).unwrap());
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(serve(listener, state, stopped, Duration::from_secs(1)));
    (addr, stop)
}

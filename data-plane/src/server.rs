//! The traffic listeners: HTTP/1.x ([`crate::h1`]) and prior-knowledge HTTP/2 (h2c,
//! [`crate::h2`]) on our own connection loops, on one port; the same over TLS ([`tls`], ALPN
//! `h2` or `http/1.1`) on another; both drained gracefully on shutdown.

mod tls;

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};
use tokio_rustls::TlsAcceptor;

use crate::{
    h1, h2,
    io::ClientIo,
    pipeline::{self, Local, ProxyError, request_id::RequestId},
    state::State,
};

/// Time a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound traffic listeners.
#[derive(Debug)]
pub(crate) struct Listeners {
    pub(crate) http: TcpListener,
    pub(crate) tls: Option<TcpListener>,
}

/// Serves the listeners until `shutdown` turns true, then waits up to `drain` for in-flight
/// requests to finish.
pub(crate) async fn serve(
    listeners: Listeners,
    state: Arc<State>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    // Every connection task holds a sender; the channel closes when the last one ends.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let tls = match listeners.tls {
        Some(listener) => match tls::acceptor(state.clone()) {
            Ok(acceptor) => Some((listener, acceptor)),
            Err(error) => {
                // Only a broken crypto provider gets here; plain traffic still flows.
                tracing::error!(%error, "TLS listener not started");
                None
            }
        },
        None => None,
    };
    let plain = accept(listeners.http, None, &state, shutdown.clone(), &open_tx);
    match tls {
        Some((listener, acceptor)) => {
            let secure = accept(listener, Some(acceptor), &state, shutdown, &open_tx);
            tokio::join!(plain, secure);
        }
        None => plain.await,
    }
    drop(open_tx);
    tracing::info!("stopped accepting; draining");
    if tokio::time::timeout(drain, open_rx.recv()).await.is_err() {
        tracing::warn!(
            ?drain,
            "drain timeout elapsed; closing the remaining connections"
        );
    }
}

/// Accepts on one listener until `shutdown` turns true.
async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: &Arc<State>,
    mut shutdown: watch::Receiver<bool>,
    open_tx: &mpsc::Sender<()>,
) {
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
        // A handshake in progress counts as much as a connection in use.
        let Some(counted) = Open::count(state) else {
            if tls.is_none() {
                // Over --max-connections: answer 503 and close, off the accept loop.
                tokio::spawn(refuse(stream));
            }
            continue;
        };
        let conn = pipeline::Connection::new(state.clone(), peer);
        let shutdown = shutdown.clone();
        let open = open_tx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _open = open;
            let _counted = counted;
            let Some(acceptor) = tls else {
                return serve_client(stream, Arc::new(conn), false, shutdown).await;
            };
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_client(stream, Arc::new(conn.over_tls()), h2, shutdown).await;
        });
    }
}

/// Serves one client connection: HTTP/2 when ALPN said so or the client starts with its
/// preface, HTTP/1.x otherwise.
async fn serve_client<C: ClientIo>(
    stream: C,
    conn: Arc<pipeline::Connection>,
    h2: bool,
    shutdown: watch::Receiver<bool>,
) {
    if h2 {
        return h2::serve(stream, Vec::new(), conn, shutdown).await;
    }
    if let h1::Ended::Http2 { stream, read } =
        h1::serve(stream, conn.clone(), shutdown.clone()).await
    {
        h2::serve(stream, read, conn, shutdown).await;
    }
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

/// Plain and TLS listeners on 127.0.0.1:0 serving whatever `state` holds.
#[cfg(test)]
pub(crate) async fn serve_tls_for_test(
    state: Arc<State>,
) -> (
    std::net::SocketAddr,
    std::net::SocketAddr,
    watch::Sender<bool>,
) {
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain, secure) = (http.local_addr().unwrap(), tls.local_addr().unwrap());
    let (stop, stopped) = watch::channel(false);
    let listeners = Listeners {
        http,
        tls: Some(tls),
    };
    tokio::spawn(serve(listeners, state, stopped, Duration::from_secs(1)));
    (plain, secure, stop)
}

/// A listener on 127.0.0.1:0 serving whatever `state` holds.
#[cfg(test)]
pub(crate) async fn serve_state_for_test(
    state: Arc<State>,
) -> (std::net::SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let listeners = Listeners {
        http: listener,
        tls: None,
    };
    tokio::spawn(serve(listeners, state, stopped, Duration::from_secs(1)));
    (addr, stop)
}

#[cfg(test)]
mod tests;

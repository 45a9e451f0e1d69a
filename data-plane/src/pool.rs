//! Connections to one endpoint, shared by every client connection and kept across table swaps
//! (they live in the side tables, keyed by address and how the endpoint is spoken to): idle
//! HTTP/1.1 keep-alive connections, and the multiplexed HTTP/2 ones ([`multiplexed`]).
//!
//! No task watches an idle HTTP/1.1 connection: a checkout asks the socket's cached readiness
//! whether the upstream closed it meanwhile, which costs no system call when nothing happened.

use std::{
    io,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use crate::connect::{Connector, UpstreamStream};

pub(crate) mod multiplexed;

pub(crate) use self::multiplexed::Multiplexed;

/// How long a connection may sit idle before it is closed instead of reused, unless the
/// upstream's `idleTimeout` says otherwise. Shorter than the usual upstream keep-alive
/// timeouts (60 s and up), so that we rarely reuse one that the upstream is closing.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// Idle connections kept per endpoint; more are closed when returned.
pub(crate) const MAX_IDLE: usize = 512;

/// The idle connections to one endpoint.
#[derive(Debug)]
pub struct EndpointPool {
    address: Box<str>,
    /// The side tables' key: the address, and how the endpoint is spoken to.
    key: Box<str>,
    connector: Connector,
    idle: Mutex<Vec<Idle>>,
    multiplexed: Multiplexed,
}

#[derive(Debug)]
struct Idle {
    upstream: Upstream,
    since: Instant,
}

/// A connection to an upstream endpoint with its read buffer (which lives with the
/// connection, so that idle client connections do not hold one), and whether it came from the
/// pool (a reused connection may have been closed by the upstream just as we sent, so its
/// failure before any response byte allows one retry of a replayable request).
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) stream: UpstreamStream,
    pub(crate) buf: Vec<u8>,
    pub(crate) reused: bool,
}

/// The initial size of an upstream connection's read buffer.
const READ_BUFFER: usize = 8 * 1024;

// === impl EndpointPool ===

impl EndpointPool {
    pub fn new(address: &str, key: &str, connector: Connector) -> Self {
        Self {
            address: address.into(),
            key: key.into(),
            connector,
            idle: Mutex::new(Vec::new()),
            multiplexed: Multiplexed::default(),
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The most recently used live idle connection idle for less than `idle_timeout`, if any.
    pub(crate) fn checkout(&self, idle_timeout: Duration) -> Option<Upstream> {
        loop {
            let idle = self.lock().pop()?;
            if idle.since.elapsed() >= idle_timeout {
                // The newest is too old, so are all the others.
                self.lock().clear();
                return None;
            }
            if idle.upstream.stream.is_open() {
                return Some(Upstream {
                    reused: true,
                    ..idle.upstream
                });
            }
        }
    }

    /// Returns a connection whose last response was read to its end.
    pub(crate) fn checkin(&self, upstream: Upstream) {
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                upstream,
                since: Instant::now(),
            });
        }
    }

    /// A new connection (with its TLS handshake, if any), within `timeout`.
    pub(crate) async fn connect(&self, timeout: Duration) -> io::Result<Upstream> {
        let stream = self.connector.connect(&self.address, timeout).await?;
        Ok(Upstream {
            stream,
            buf: Vec::with_capacity(READ_BUFFER),
            reused: false,
        })
    }

    /// The HTTP/2 connections to this endpoint.
    pub(crate) fn multiplexed(&self) -> &Multiplexed {
        &self.multiplexed
    }

    pub(crate) fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The number of idle connections (for tests and metrics).
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use tokio::{io::AsyncWriteExt, net::TcpListener};

    use super::*;

    #[tokio::test]
    async fn reuses_open_connections_and_drops_closed_ones() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let pool = EndpointPool::new(&address, &address, Connector::default());
        assert!(pool.checkout(IDLE_TIMEOUT).is_none());

        let first = pool.connect(Duration::from_secs(5)).await.unwrap();
        assert!(!first.reused);
        let (mut server_side, _) = listener.accept().await.unwrap();
        pool.checkin(first);
        let again = pool.checkout(IDLE_TIMEOUT).expect("the idle connection");
        assert!(again.reused);
        pool.checkin(again);

        // The upstream closes it while idle: the checkout sees the EOF and skips it.
        server_side.shutdown().await.unwrap();
        drop(server_side);
        let mut seen_closed = false;
        for _ in 0..100 {
            // The EOF arrives through the reactor; yield until it has been seen.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            let Some(upstream) = pool.checkout(IDLE_TIMEOUT) else {
                seen_closed = true;
                break;
            };
            pool.checkin(upstream);
        }
        assert!(seen_closed, "a closed idle connection was handed out");
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn a_connection_idle_past_the_upstreams_timeout_is_not_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let pool = EndpointPool::new(&address, &address, Connector::default());
        let first = pool.connect(Duration::from_secs(5)).await.unwrap();
        let _server_side = listener.accept().await.unwrap();
        pool.checkin(first);
        // Idle for no time at all is already idle for as long as a zero timeout allows.
        assert!(pool.checkout(Duration::ZERO).is_none());
        assert_eq!(pool.idle(), 0, "the stale connection is closed, not kept");
    }
}

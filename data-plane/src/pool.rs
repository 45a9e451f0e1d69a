//! Idle keep-alive connections to one endpoint, shared by every client connection and kept
//! across table swaps (they live in the side tables, keyed by address).
//!
//! No task watches an idle connection: a checkout asks the socket's cached readiness whether
//! the upstream closed it meanwhile, which costs no system call when nothing happened.

use std::{
    io,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio::net::TcpStream;

/// How long a connection may sit idle before it is closed instead of reused. Shorter than the
/// usual upstream keep-alive timeouts (60 s and up), so that we rarely reuse one that the
/// upstream is closing.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// Idle connections kept per endpoint; more are closed when returned.
pub(crate) const MAX_IDLE: usize = 512;

/// The idle connections to one endpoint.
#[derive(Debug)]
pub struct EndpointPool {
    address: Box<str>,
    idle: Mutex<Vec<Idle>>,
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
    pub(crate) stream: TcpStream,
    pub(crate) buf: Vec<u8>,
    pub(crate) reused: bool,
}

/// The initial size of an upstream connection's read buffer.
const READ_BUFFER: usize = 8 * 1024;

// === impl EndpointPool ===

impl EndpointPool {
    pub fn new(address: &str) -> Self {
        Self {
            address: address.into(),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The most recently used live idle connection, if any.
    pub(crate) fn checkout(&self) -> Option<Upstream> {
        loop {
            let idle = self.lock().pop()?;
            if idle.since.elapsed() >= IDLE_TIMEOUT {
                // The newest is too old, so are all the others.
                self.lock().clear();
                return None;
            }
            if is_open(&idle.upstream.stream) {
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

    /// A new connection, within `timeout`.
    pub(crate) async fn connect(&self, timeout: Duration) -> io::Result<Upstream> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(&*self.address))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Upstream {
            stream,
            buf: Vec::with_capacity(READ_BUFFER),
            reused: false,
        })
    }

    /// The number of idle connections (for tests and metrics).
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether an idle connection is still open: no bytes and no EOF waiting. The socket's
/// readiness is cached by the runtime, so an untouched connection answers without a syscall.
fn is_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use tokio::{io::AsyncWriteExt, net::TcpListener};

    use super::*;

    #[tokio::test]
    async fn reuses_open_connections_and_drops_closed_ones() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = EndpointPool::new(&listener.local_addr().unwrap().to_string());
        assert!(pool.checkout().is_none());

        let first = pool.connect(Duration::from_secs(5)).await.unwrap();
        assert!(!first.reused);
        let (mut server_side, _) = listener.accept().await.unwrap();
        pool.checkin(first);
        let again = pool.checkout().expect("the idle connection");
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
            let Some(upstream) = pool.checkout() else {
                seen_closed = true;
                break;
            };
            pool.checkin(upstream);
        }
        assert!(seen_closed, "a closed idle connection was handed out");
        assert_eq!(pool.idle(), 0);
    }
}

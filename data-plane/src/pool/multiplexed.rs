//! Multiplexed HTTP/2 connections to one endpoint (the h2 crate's client, over TCP or TLS with
//! ALPN h2). A request takes a stream on a connection with room under the peer's
//! SETTINGS_MAX_CONCURRENT_STREAMS, and a new connection is opened only when every one is full
//! (one at a time: requests that arrive meanwhile wait for it rather than open their own). A
//! connection that got GOAWAY takes no new streams while its open ones finish, and leaves the
//! list when its task ends.

use std::{
    io,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use h2::client::SendRequest;

use crate::{connect::Connector, health::now_ms};

/// Flow-control window per upstream stream: a response body streams this far ahead of the
/// client taking it.
const STREAM_WINDOW: u32 = 256 * 1024;
/// Flow-control window per upstream connection.
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

/// How many times a request looks for a usable connection (each failure drops one).
const ATTEMPTS: usize = 3;

/// An upstream's limit on the HTTP/2 connections it opens (`maxConnections`), over all its
/// endpoints: the count is the upstream's, each connection holding its place until it ends.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionCap {
    pub(crate) count: Arc<AtomicU32>,
    pub(crate) max: u32,
}

/// A connection's place under its upstream's cap, given back when dropped (with the
/// connection's task, or with a connection that could not be made).
#[derive(Debug)]
struct Place(Option<Arc<AtomicU32>>);

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(count) = &self.0 {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Why no stream could be opened.
#[derive(Debug)]
pub(crate) enum Unready {
    /// No usable connection could be made.
    Io(io::Error),
    /// Every connection is full and the upstream may open no other.
    Full,
}

/// The HTTP/2 connections to one endpoint.
#[derive(Debug, Default)]
pub(crate) struct Multiplexed {
    connections: Mutex<Vec<Connection>>,
    next_id: AtomicU64,
    /// Held while a connection is being opened.
    opening: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Connection {
    id: u64,
    send: SendRequest<Bytes>,
    /// Streams taken and not yet given back (h2 keeps its own count private).
    active: Arc<Streams>,
    /// The connection's task ended (closed, GOAWAY and drained, or failed).
    closed: Arc<AtomicBool>,
}

impl Multiplexed {
    /// A handle ready to open one stream (on a connection with room, or a new one), and the
    /// stream's place in the connection's count, held until the stream is done.
    pub(crate) async fn ready(
        &self,
        connector: &Connector,
        address: &str,
        (connect_timeout, idle_timeout): (Duration, Duration),
        cap: Option<&ConnectionCap>,
    ) -> Result<(SendRequest<Bytes>, StreamSlot), Unready> {
        for _ in 0..ATTEMPTS {
            let (id, send, slot) = match self.pick() {
                Some(picked) => picked,
                None => {
                    let _opening = self.opening.lock().await;
                    match self.pick() {
                        Some(picked) => picked,
                        None => {
                            let place = match cap {
                                Some(cap)
                                    if cap.count.fetch_add(1, Ordering::AcqRel) >= cap.max =>
                                {
                                    cap.count.fetch_sub(1, Ordering::AcqRel);
                                    return Err(Unready::Full);
                                }
                                cap => Place(cap.map(|cap| cap.count.clone())),
                            };
                            let timeouts = (connect_timeout, idle_timeout);
                            self.open(connector, address, timeouts, place)
                                .await
                                .map_err(Unready::Io)?
                        }
                    }
                }
            };
            match send.ready().await {
                Ok(ready) => return Ok((ready, slot)),
                // GOAWAY or a broken connection: not to be used again.
                Err(error) => {
                    tracing::debug!(%error, address, "HTTP/2 upstream connection unusable");
                    self.lock().retain(|c| c.id != id);
                }
            }
        }
        Err(Unready::Io(io::Error::other(
            "no usable HTTP/2 connection to the endpoint",
        )))
    }

    /// A connection whose open streams are under the peer's limit.
    fn pick(&self) -> Option<(u64, SendRequest<Bytes>, StreamSlot)> {
        let mut connections = self.lock();
        connections.retain(|c| !c.closed.load(Ordering::Acquire));
        connections
            .iter()
            .find(|c| c.active.open.load(Ordering::Relaxed) < c.send.current_max_send_streams())
            .map(|c| (c.id, c.send.clone(), StreamSlot::take(&c.active)))
    }

    async fn open(
        &self,
        connector: &Connector,
        address: &str,
        (connect_timeout, idle_timeout): (Duration, Duration),
        place: Place,
    ) -> io::Result<(u64, SendRequest<Bytes>, StreamSlot)> {
        let stream = connector.connect(address, connect_timeout).await?;
        let handshake = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .enable_push(false)
            .handshake::<_, Bytes>(stream);
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "HTTP/2 handshake timed out");
        let (send, mut connection) = tokio::time::timeout(connect_timeout, handshake)
            .await
            .map_err(|_| timed_out())?
            .map_err(io::Error::other)?;
        let ping = connection.ping_pong();
        let closed = Arc::new(AtomicBool::new(false));
        let done = closed.clone();
        let peer = address.to_owned();
        let active = Arc::new(Streams {
            open: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(now_ms()),
        });
        let streams = active.clone();
        tokio::spawn(async move {
            tokio::select! {
                ended = &mut connection => if let Err(error) = ended {
                    tracing::debug!(%error, address = peer, "HTTP/2 upstream connection ended");
                },
                () = streams.idle_for(idle_timeout) => {
                    // Dropping the connection closes it.
                    tracing::debug!(address = peer, "idle HTTP/2 upstream connection closed");
                }
            }
            done.store(true, Ordering::Release);
            drop(place);
        });
        // Until the peer's SETTINGS arrive its stream limit reads as unlimited, and streams
        // taken over the real limit would wait inside h2, unseen by `pick`. The peer's
        // SETTINGS come first and are applied before its answer to a PING is read: wait for
        // that answer before the connection takes requests.
        if let Some(mut ping) = ping {
            tokio::time::timeout(connect_timeout, ping.ping(h2::Ping::opaque()))
                .await
                .map_err(|_| timed_out())?
                .map_err(io::Error::other)?;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = StreamSlot::take(&active);
        self.lock().push(Connection {
            id,
            send: send.clone(),
            active,
            closed,
        });
        Ok((id, send, slot))
    }

    /// The number of open connections (for tests).
    #[cfg(test)]
    pub(crate) fn connections(&self) -> usize {
        let mut connections = self.lock();
        connections.retain(|c| !c.closed.load(Ordering::Acquire));
        connections.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection's open streams, and since when it has had none.
#[derive(Debug)]
struct Streams {
    open: AtomicUsize,
    idle_since_ms: AtomicU64,
}

impl Streams {
    /// Resolves once the connection has had no stream for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        // Looked at a few times per timeout: closed at most a quarter late.
        let tick = (timeout / 4).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(tick).await;
            let since = self.idle_since_ms.load(Ordering::Relaxed);
            if self.open.load(Ordering::Acquire) == 0
                && now_ms().saturating_sub(since) >= timeout_ms
            {
                return;
            }
        }
    }
}

/// One stream's place in its connection's count of open streams; given back on drop.
#[derive(Debug)]
pub(crate) struct StreamSlot(Arc<Streams>);

impl StreamSlot {
    fn take(active: &Arc<Streams>) -> Self {
        active.open.fetch_add(1, Ordering::AcqRel);
        Self(active.clone())
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle_since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }
}

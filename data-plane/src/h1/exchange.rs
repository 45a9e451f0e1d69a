//! One request/response exchange with an upstream connection: the head (with the first body
//! bytes) in one write, the rest of the request body streamed while the response comes back
//! (full duplex), then the response relayed to the client.

use std::{
    io,
    pin::Pin,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite},
    time::Sleep,
};

use super::{
    body::{self, Body, BodyError},
    response::{self, Asked, Head},
};
use crate::{
    io::ClientIo,
    limits::CLIENT_IDLE_TIMEOUT,
    pipeline::{BoxError, Outcome, ProxyError},
    pool,
    table::{Endpoint, Upstream},
};

/// Initial size of the read buffers, and how much they grow by for a long head.
pub(crate) const READ_SIZE: usize = 8 * 1024;

/// The buffers of one client connection, reused by every exchange on it.
#[derive(Debug)]
pub(crate) struct Buffers {
    /// From the client: heads, body bytes, pipelined requests.
    pub(crate) read: Vec<u8>,
    /// The head (and first body bytes) for the upstream; kept until the exchange ends so that
    /// it can be sent again.
    pub(crate) head: Vec<u8>,
    /// To the client: response heads, our error responses.
    pub(crate) out: Vec<u8>,
    /// Decoded chunks for an HTTP/1.0 client.
    scratch: Vec<u8>,
    /// The current exchange has written to the client (its answer can no longer be an error
    /// response); read after an exchange cut short by the rule's deadline.
    pub(crate) started: AtomicBool,
}

impl Default for Buffers {
    fn default() -> Self {
        Self {
            read: Vec::with_capacity(READ_SIZE),
            head: Vec::with_capacity(1024),
            out: Vec::with_capacity(1024),
            scratch: Vec::new(),
            started: AtomicBool::new(false),
        }
    }
}

/// A finished exchange.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) status: u16,
    /// The client connection can carry another request.
    pub(crate) keep_alive: bool,
    /// The upstream connection can go back to the pool.
    pub(crate) reusable: bool,
    /// A 101 was relayed: the connections are to be joined.
    pub(crate) upgraded: bool,
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No connection to the endpoint.
    Connect(io::Error),
    /// The upstream closed or reset the connection before sending a byte (on a pooled
    /// connection, most likely closed while idle).
    Closed(io::Error),
    /// The upstream broke off or sent garbage before the response head was complete.
    Unavailable(BoxError),
    /// No response head before the deadline.
    TimedOut,
    /// The rule's `timeouts` ran out before the response head (its duration, for the log).
    Deadline(Duration),
    /// The client's chunked body is malformed (nothing was sent to the client yet).
    BadBody(&'static str),
    /// The client's body went over the route's limit (nothing was sent to the client yet).
    TooLarge,
    /// The response had started, or the client went away: the connection can only close.
    Cut(BodyError),
    /// The upstream answered a status the rule retries (nothing was sent to the client).
    Status(u16),
    /// Too many requests already wait for a connection to the upstream (the breaker's
    /// `maxPendingRequests`): refused at once, never retried.
    Overloaded,
}

// === impl Failure ===

impl Failure {
    /// Whether a rule's retry may try again after this: the try could not connect, was reset
    /// or broken off before an answer, or answered a status the rule retries. Timeouts are
    /// not retried: a slow endpoint would get the load again.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Connect(_) | Self::Closed(_) | Self::Unavailable(_) | Self::Status(_)
        )
    }
}

impl From<crate::h2_client::Error> for Failure {
    fn from(error: crate::h2_client::Error) -> Self {
        use crate::h2_client::Error;
        match error {
            Error::Connect(error) => Self::Connect(error),
            Error::Unavailable(source) => Self::Unavailable(source),
            Error::TimedOut => Self::TimedOut,
            Error::Overloaded => Self::Overloaded,
        }
    }
}

impl Failure {
    /// The error to answer with, or `Err` when no answer can be sent any more.
    pub(crate) fn into_error(
        self,
        upstream: &Upstream,
        endpoint: &Endpoint,
    ) -> Result<ProxyError, BodyError> {
        let name = upstream.name().clone();
        let address = endpoint.address().into();
        Ok(match self {
            Self::Connect(error) if error.kind() == io::ErrorKind::TimedOut => {
                ProxyError::ConnectTimeout {
                    upstream: name,
                    endpoint: address,
                    source: error.into(),
                }
            }
            Self::Connect(error) | Self::Closed(error) => ProxyError::UpstreamUnavailable {
                upstream: name,
                endpoint: address,
                source: error.into(),
            },
            Self::Unavailable(source) => ProxyError::UpstreamUnavailable {
                upstream: name,
                endpoint: address,
                source,
            },
            // Retried, so never the last try's answer; were it, this says what it was.
            Self::Status(status) => ProxyError::UpstreamUnavailable {
                upstream: name,
                endpoint: address,
                source: format!("answered {status}").into(),
            },
            Self::Overloaded => ProxyError::UpstreamOverloaded { upstream: name },
            Self::TimedOut => ProxyError::UpstreamTimeout {
                upstream: name,
                endpoint: address,
                timeout: upstream.timeout(),
            },
            Self::Deadline(timeout) => ProxyError::UpstreamTimeout {
                upstream: name,
                endpoint: address,
                timeout,
            },
            Self::BadBody(reason) => ProxyError::Malformed { reason },
            Self::TooLarge => ProxyError::BodyTooLarge,
            Self::Cut(error) => return Err(error),
        })
    }
}

/// The one retry rule, for both front ends: a request that can be replayed (no body, an
/// idempotent method) is sent once more, on a new connection, when a reused one turns out to
/// have been closed by the upstream before any response byte.
pub(crate) fn may_retry(
    failure: &Failure,
    up: &pool::Upstream,
    replayable: bool,
    outcome: &mut Outcome,
) -> bool {
    let retry =
        matches!(failure, Failure::Closed(_)) && up.reused && replayable && !outcome.retried;
    outcome.retried |= retry;
    retry
}

/// The reason to give a client whose chunked body broke the rules.
pub(crate) fn chunked_reason(error: &BodyError) -> &'static str {
    match error {
        BodyError::Chunked(reason) => reason,
        _ => "invalid request body",
    }
}

/// Sends the request on `up` and relays the response to `client`.
pub(crate) async fn run<C: ClientIo>(
    client: &mut C,
    up: &mut pool::Upstream,
    bufs: &mut Buffers,
    req_body: &mut Body,
    asked: Asked<'_>,
    mut deadline: Pin<&mut Sleep>,
    upstream_idle: Duration,
) -> Result<Done, Failure> {
    let pool::Upstream {
        stream: up,
        buf: up_read,
        ..
    } = up;
    tokio::select! {
        biased;
        written = tokio::io::AsyncWriteExt::write_all(up, &bufs.head) => {
            written.map_err(Failure::Closed)?;
        }
        () = deadline.as_mut() => return Err(Failure::TimedOut),
    }
    let Buffers {
        read,
        out,
        scratch,
        started,
        ..
    } = bufs;
    let started = &*started;
    started.store(false, Ordering::Relaxed);
    // Borrowed halves cost nothing, so both paths use them.
    let (mut client_read, mut client_write) = ClientIo::split(client);
    let (mut up_read_half, mut up_write_half) = up.split();
    let receive = relay_response(
        &mut up_read_half,
        &mut client_write,
        up_read,
        out,
        scratch,
        asked,
        deadline,
        upstream_idle,
        started,
    );
    if req_body.is_done() {
        return receive.await;
    }
    // Full duplex: the upstream may answer (and stream) before the request body ends.
    let mut unused = Vec::new();
    let send = req_body.relay(
        &mut client_read,
        &mut up_write_half,
        read,
        &mut unused,
        CLIENT_IDLE_TIMEOUT,
    );
    duplex(send, receive, started).await
}

/// Sends the request body and receives the response at once (full duplex: an upstream may
/// answer, and stream, before the body ends), until the response is done. A body the upstream
/// stopped taking is no failure (it may be answering early); a client body that breaks the
/// rules is one, answered if nothing reached the client yet.
pub(crate) async fn duplex(
    send: impl Future<Output = Result<(), BodyError>>,
    receive: impl Future<Output = Result<Done, Failure>>,
    started: &AtomicBool,
) -> Result<Done, Failure> {
    tokio::pin!(send, receive);
    let mut sent = false;
    loop {
        tokio::select! {
            result = &mut send, if !sent => match result {
                Ok(()) | Err(BodyError::Write(_)) => sent = true,
                Err(BodyError::Chunked(reason)) if !started.load(Ordering::Relaxed) => return Err(Failure::BadBody(reason)),
                Err(BodyError::TooLarge) if !started.load(Ordering::Relaxed) => return Err(Failure::TooLarge),
                Err(error) => return Err(Failure::Cut(error)),
            },
            result = &mut receive => return result,
        }
    }
}

/// Reads from `up` until `parse` (the codec, rewriting into its sink) finds a final response
/// head, skipping 1xx ones, before `deadline`; the head's bytes are taken out of `buf`. Both
/// front ends read upstream response heads with this.
pub(crate) async fn read_head<U: AsyncRead + Unpin, T>(
    up: &mut U,
    buf: &mut Vec<u8>,
    mut deadline: Pin<&mut Sleep>,
    mut parse: impl FnMut(&[u8]) -> Result<Option<(Head, T)>, &'static str>,
) -> Result<(response::Response, T), Failure> {
    buf.clear();
    loop {
        if !buf.is_empty() {
            match parse(buf) {
                Ok(Some((Head::Interim { head_len }, _))) => {
                    buf.drain(..head_len);
                    continue;
                }
                Ok(Some((Head::Final(head), sunk))) => {
                    buf.drain(..head.head_len);
                    return Ok((head, sunk));
                }
                Ok(None) => {}
                Err(reason) => return Err(Failure::Unavailable(reason.into())),
            }
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity().max(READ_SIZE));
        }
        let read = tokio::select! {
            biased;
            read = up.read_buf(buf) => read,
            () = deadline.as_mut() => return Err(Failure::TimedOut),
        };
        match read {
            Ok(0) if buf.is_empty() => {
                return Err(Failure::Closed(io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(0) => {
                return Err(Failure::Unavailable(
                    "the response head was cut short".into(),
                ));
            }
            Ok(_) => {}
            Err(error) if buf.is_empty() => return Err(Failure::Closed(error)),
            Err(error) => return Err(Failure::Unavailable(error.into())),
        }
    }
}

/// Reads the response head (before `deadline`), sends the client its rewritten head with the
/// first body bytes in one write, then streams the rest of the body.
#[allow(clippy::too_many_arguments)]
async fn relay_response<U, C>(
    up: &mut U,
    client: &mut C,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    asked: Asked<'_>,
    mut deadline: Pin<&mut Sleep>,
    upstream_idle: Duration,
    started: &AtomicBool,
) -> Result<Done, Failure>
where
    U: AsyncRead + Unpin,
    C: AsyncWrite + Unpin,
{
    let (head, ()) = read_head(up, buf, deadline.as_mut(), |buf| {
        out.clear();
        Ok(response::parse(buf, asked, out)?.map(|head| (head, ())))
    })
    .await?;
    if asked.retry_on.contains(&head.status) {
        return Err(Failure::Status(head.status));
    }
    let mut body = Body::new(head.framing, head.decode);
    body.take_into(buf, out)
        .map_err(|error| Failure::Unavailable(error.into()))?;
    started.store(true, Ordering::Relaxed);
    body::write_all(client, out, CLIENT_IDLE_TIMEOUT)
        .await
        .map_err(Failure::Cut)?;
    if !body.is_done() {
        body.relay(up, client, buf, scratch, upstream_idle)
            .await
            .map_err(Failure::Cut)?;
    }
    Ok(Done {
        status: head.status,
        keep_alive: head.keep_alive,
        // Bytes after the body mean the upstream is confused: never reuse it.
        reusable: head.reusable && buf.is_empty(),
        upgraded: head.upgraded,
    })
}

/// Joins a client and an upstream after a 101, both ways, until both sides have closed or
/// neither has sent anything for `idle`. What either sent after its head (`from_client`, and
/// what is left in the upstream's buffer) goes first.
pub(crate) async fn tunnel<C: ClientIo>(
    client: &mut C,
    up: &mut pool::Upstream,
    from_client: &mut Vec<u8>,
    idle: Duration,
) {
    use tokio::io::AsyncWriteExt as _;

    let pool::Upstream {
        stream: up,
        buf: from_up,
        ..
    } = up;
    if up.write_all(from_client).await.is_err() || client.write_all(from_up).await.is_err() {
        return;
    }
    from_client.clear();
    from_up.clear();
    let (mut client_read, mut client_write) = ClientIo::split(client);
    let (mut up_read, mut up_write) = up.split();
    let (mut to_up, mut to_client) = (vec![0u8; READ_SIZE], vec![0u8; READ_SIZE]);
    let (mut client_open, mut up_open) = (true, true);
    while client_open || up_open {
        tokio::select! {
            read = client_read.read(&mut to_up), if client_open => match read {
                Ok(0) | Err(_) => {
                    client_open = false;
                    let _ = up_write.shutdown().await;
                }
                Ok(n) => {
                    if up_write.write_all(&to_up[..n]).await.is_err() {
                        return;
                    }
                }
            },
            read = up_read.read(&mut to_client), if up_open => match read {
                Ok(0) | Err(_) => {
                    up_open = false;
                    let _ = client_write.shutdown().await;
                }
                Ok(n) => {
                    if client_write.write_all(&to_client[..n]).await.is_err() {
                        return;
                    }
                }
            },
            () = tokio::time::sleep(idle) => return,
        }
    }
}

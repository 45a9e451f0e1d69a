//! One HTTP/2 stream's request over a pooled HTTP/1.1 upstream connection, the same pool and
//! codec as the HTTP/1 front end: the head the codec wrote, the body from hyper's frames
//! (chunk-encoded when it has no length), the response head parsed by the codec into a header
//! map, and the body streamed back as an [`UpstreamResponse`] that hands the connection back
//! to its pool when it ends.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::{
    io::AsyncWrite,
    time::{Instant, Sleep},
};

use super::{HpackFields, limited::Limited};
use crate::{
    h1::{
        Asked, Body, BodyError, Failure, Framing, ParsedResponse, Sink, may_retry, parse_response,
        read_head, write_all,
    },
    limits::{self, CLIENT_IDLE_TIMEOUT},
    pipeline::{BoxError, Outcome},
    pool::{self, EndpointPool},
    table::{Endpoint, Upstream},
};

/// How much an upstream read takes at most while streaming a response body.
const READ_SIZE: usize = 16 * 1024;

/// Sends the request and waits for the response head: on a pooled connection (once more on a
/// fresh one if a reused connection turns out closed and the request can be replayed), within
/// the upstream's timeout.
/// `response_deadline` (the rule's timeouts) bounds the wait for the head and the whole body.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn exchange(
    endpoint: &Endpoint,
    upstream: &Upstream,
    head: &[u8],
    (mut body, framing): (Option<Limited>, Framing),
    replayable: bool,
    asked: Asked<'_>,
    response_deadline: Option<Instant>,
    outcome: &mut Outcome,
) -> Result<(Vec<u8>, ParsedResponse, UpstreamResponse), Failure> {
    let now = Instant::now();
    let upstream_deadline = limits::deadline(now, upstream.timeout());
    let deadline = response_deadline.map_or(upstream_deadline, |d| d.min(upstream_deadline));
    loop {
        let mut up = match endpoint.pool().checkout(upstream.idle_timeout()) {
            Some(up) => up,
            None => {
                let _pending = upstream.pending().ok_or(Failure::Overloaded)?;
                endpoint
                    .pool()
                    .connect(upstream.connect_timeout())
                    .await
                    .map_err(Failure::Connect)?
            }
        };
        match try_once(&mut up, head, &mut body, framing, deadline, asked).await {
            Ok((block, parsed, sent)) => {
                let response = UpstreamResponse::new(
                    up,
                    endpoint.shared_pool(),
                    &parsed,
                    sent,
                    upstream.timeout(),
                    response_deadline,
                );
                return Ok((block, parsed, response));
            }
            // Logged with the limit that ran out.
            Err(Failure::TimedOut) if deadline < upstream_deadline => {
                return Err(Failure::Deadline(deadline.saturating_duration_since(now)));
            }
            Err(failure) if may_retry(&failure, &up, replayable, outcome) => {}
            Err(failure) => return Err(failure),
        }
    }
}

/// One try: the head, then the body while the response head is awaited (an upstream may
/// answer before it has read the body). Returns the head and whether the whole body went.
async fn try_once(
    up: &mut pool::Upstream,
    head: &[u8],
    body: &mut Option<Limited>,
    framing: Framing,
    deadline: Instant,
    asked: Asked<'_>,
) -> Result<(Vec<u8>, ParsedResponse, bool), Failure> {
    let pool::Upstream { stream, buf, .. } = up;
    match tokio::time::timeout_at(deadline, tokio::io::AsyncWriteExt::write_all(stream, head)).await
    {
        Ok(written) => written.map_err(Failure::Closed)?,
        Err(_) => return Err(Failure::TimedOut),
    }
    let (mut read, mut write) = stream.split();
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);
    let receive = read_head(&mut read, buf, timer, |buf| {
        let mut block = Vec::with_capacity(256);
        let head = parse_response(buf, asked, Sink::Fields(&mut HpackFields(&mut block)))?;
        Ok(head.map(|head| (head, block)))
    });
    let pending = if framing == Framing::Empty {
        None
    } else {
        body.take()
    };
    let mut sent = pending.is_none();
    let send = async {
        match pending {
            Some(body) => send_body(&mut write, body, framing == Framing::Chunked).await,
            None => Ok(()),
        }
    };
    tokio::pin!(receive, send);
    loop {
        tokio::select! {
            biased;
            received = &mut receive => {
                let (parsed, block) = received?;
                if asked.retry_on.contains(&parsed.status) {
                    return Err(Failure::Status(parsed.status));
                }
                return Ok((block, parsed, sent));
            }
            result = &mut send, if !sent => match result {
                Ok(()) => sent = true,
                // The upstream stopped reading (it may be answering early): wait for it.
                Err(BodyError::Write(_)) => sent = true,
                Err(BodyError::TooLarge) => return Err(Failure::TooLarge),
                Err(BodyError::Chunked(reason)) => return Err(Failure::BadBody(reason)),
                Err(error) => return Err(Failure::Cut(error)),
            },
        }
    }
}

/// Writes the client's body frames upstream, as chunks when it has no declared length.
async fn send_body<W: AsyncWrite + Unpin>(
    up: &mut W,
    mut body: Limited,
    chunked: bool,
) -> Result<(), BodyError> {
    let mut size_line = Vec::with_capacity(20);
    loop {
        let frame = tokio::time::timeout(CLIENT_IDLE_TIMEOUT, body.frame())
            .await
            .map_err(|_| BodyError::ReadTimeout(CLIENT_IDLE_TIMEOUT))?;
        let Some(frame) = frame else {
            break;
        };
        let frame = frame.map_err(|error| {
            if Limited::caused(&*error) {
                BodyError::TooLarge
            } else {
                BodyError::Read(io::Error::other(error))
            }
        })?;
        let Ok(data) = frame.into_data() else {
            // Trailers are not passed on.
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            size_line.clear();
            size_line.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            write_all(up, &size_line, CLIENT_IDLE_TIMEOUT).await?;
        }
        write_all(up, &data, CLIENT_IDLE_TIMEOUT).await?;
        if chunked {
            write_all(up, b"\r\n", CLIENT_IDLE_TIMEOUT).await?;
        }
    }
    if chunked {
        write_all(up, b"0\r\n\r\n", CLIENT_IDLE_TIMEOUT).await?;
    }
    Ok(())
}

/// A response body read from a pooled upstream connection as the client takes it, with the
/// upstream's framing removed; the connection goes back to its pool at the end of a body
/// that left it reusable, and is closed otherwise (or if the client stops reading).
#[derive(Debug)]
pub(crate) struct UpstreamResponse {
    up: Option<pool::Upstream>,
    pool: Arc<EndpointPool>,
    body: Body,
    framing: Framing,
    reusable: bool,
    /// No progress for this long fails the body (a stalled upstream does not hang the stream).
    idle: Duration,
    /// Armed the first time the body has to wait for the upstream (a small body that came with
    /// its head never needs one).
    timer: Option<Pin<Box<Sleep>>>,
    /// The rule's timeouts: the body must have ended by then.
    deadline: limits::Deadline,
    decoded: Vec<u8>,
}

impl UpstreamResponse {
    fn new(
        up: pool::Upstream,
        pool: Arc<EndpointPool>,
        parsed: &ParsedResponse,
        sent: bool,
        idle: Duration,
        deadline: Option<Instant>,
    ) -> Self {
        let mut response = Self {
            up: Some(up),
            pool,
            // Only chunks need decoding; other bodies are passed on as they are read.
            body: Body::new(parsed.framing, parsed.framing == Framing::Chunked),
            framing: parsed.framing,
            // The rest of an unsent request body would be read as the next request.
            reusable: parsed.reusable && sent,
            idle,
            timer: None,
            deadline: limits::Deadline::new(deadline),
            decoded: Vec::new(),
        };
        // A body with nothing to read (a 204, a HEAD) is done before it is polled.
        if response.body.is_done() {
            response.finish();
        }
        response
    }

    /// The body is complete: the connection goes back to the pool if it can carry another
    /// request (nothing after the body, and the response allowed it).
    fn finish(&mut self) {
        if let Some(up) = self.up.take()
            && self.reusable
            && up.buf.is_empty()
        {
            self.pool.checkin(up);
        }
    }
}

impl http_body::Body for UpstreamResponse {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.body.is_done() {
                this.finish();
                return Poll::Ready(None);
            }
            let Some(up) = this.up.as_mut() else {
                return Poll::Ready(None);
            };
            if !up.buf.is_empty() {
                this.decoded.clear();
                let used = match this.body.take(&up.buf, &mut this.decoded) {
                    Ok(used) => used,
                    Err(error) => {
                        this.up = None;
                        return Poll::Ready(Some(Err(error.into())));
                    }
                };
                let data = if this.framing == Framing::Chunked {
                    Bytes::copy_from_slice(&this.decoded)
                } else {
                    Bytes::copy_from_slice(&up.buf[..used])
                };
                up.buf.drain(..used);
                // Returned now: a client that saw the end may not poll again.
                if this.body.is_done() {
                    this.finish();
                }
                if !data.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                continue;
            }
            up.buf.reserve(READ_SIZE);
            match up.stream.poll_read_buf(cx, &mut up.buf) {
                Poll::Ready(Ok(0)) => {
                    this.up = None;
                    return Poll::Ready(match this.framing {
                        Framing::UntilClose => None,
                        _ => Some(Err(BodyError::Truncated.into())),
                    });
                }
                Poll::Ready(Ok(_)) => {
                    if let Some(timer) = this.timer.as_mut() {
                        timer
                            .as_mut()
                            .reset(limits::deadline(Instant::now(), this.idle));
                    }
                }
                Poll::Ready(Err(error)) => {
                    this.up = None;
                    return Poll::Ready(Some(Err(BodyError::Read(error).into())));
                }
                Poll::Pending => {
                    if this.deadline.passed(cx) {
                        this.up = None;
                        let error = "the response did not end before the rule's timeout";
                        return Poll::Ready(Some(Err(error.into())));
                    }
                    let idle = this.idle;
                    let timer = this.timer.get_or_insert_with(|| {
                        Box::pin(tokio::time::sleep_until(limits::deadline(
                            Instant::now(),
                            idle,
                        )))
                    });
                    ready!(timer.as_mut().poll(cx));
                    this.up = None;
                    let error = BodyError::ReadTimeout(this.idle);
                    return Poll::Ready(Some(Err(error.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.up.is_none() || self.body.is_done()
    }
}

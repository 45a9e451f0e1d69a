//! Exchanges with HTTP/2 upstreams (`protocol: H2C | H2`), shared by both front ends: the
//! request built from the HTTP/1.1 head the pipeline wrote (so every rewrite is written once),
//! a stream opened on the endpoint's multiplexed connections, the body sent as the peer's
//! flow control allows (never buffered beyond it), and the response body with its trailers
//! (gRPC's status) read as the client takes it, giving window back as it goes.

use std::{
    future::poll_fn,
    mem::MaybeUninit,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use h2::{RecvStream, SendStream, client::ResponseFuture};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, uri};
use http_body::Frame;
use tokio::time::{Instant, Sleep};

pub(crate) mod transcoded;

pub(crate) use self::transcoded::{JsonStream, Refused, Requests, StreamError, Transcoded};

use crate::{
    limits::{self, MAX_HEADERS},
    pipeline::BoxError,
    pool::multiplexed::{StreamSlot, Unready},
    table::{Endpoint, Upstream},
};

/// The request for an HTTP/2 upstream from the HTTP/1.1 head at the front of `head`, with the
/// length of that head (what follows is body). Hop-by-hop and framing headers go; the `Host`
/// becomes the authority (`fallback` when there is none).
pub(crate) fn request(
    head: &[u8],
    https: bool,
    fallback: &str,
) -> Result<(Request<()>, usize), &'static str> {
    request_keeping(head, https, fallback, |_, _| true)
}

/// [`request`], with only the end-to-end headers `keep` takes (it sees each first).
///
/// The head is copied once into one shared buffer and the request's values, path and
/// authority are slices of it: no allocation per header, however many there are.
pub(crate) fn request_keeping(
    head: &[u8],
    https: bool,
    fallback: &str,
    mut keep: impl FnMut(&HeaderName, &[u8]) -> bool,
) -> Result<(Request<()>, usize), &'static str> {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        head,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return Err("the upstream request head does not parse"),
    };
    let shared = Bytes::copy_from_slice(&head[..len]);
    // The parsed parts lie in `head`; the same bytes of `shared`.
    let slice = |part: &[u8]| {
        let start = part.as_ptr().addr() - head.as_ptr().addr();
        shared.slice(start..start + part.len())
    };
    let (Some(method), Some(path)) = (parsed.method, parsed.path) else {
        return Err("the upstream request head is incomplete");
    };
    let mut authority = None;
    let mut map = HeaderMap::with_capacity(parsed.headers.len());
    let mut grpc = false;
    for h in parsed.headers.iter() {
        let name = header_name(h.name.as_bytes()).map_err(|_| "bad header name")?;
        if name == http::header::HOST {
            authority = Some(h.value);
            continue;
        }
        let hop = matches!(
            name.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "transfer-encoding"
                | "upgrade"
                | "te"
        );
        if hop || !keep(&name, h.value) {
            continue;
        }
        if name == http::header::CONTENT_TYPE {
            grpc = h.value.starts_with(b"application/grpc");
        }
        let mut value =
            HeaderValue::from_maybe_shared(slice(h.value)).map_err(|_| "bad header value")?;
        if name == REQUEST_ID {
            // A new value every request: kept out of the HPACK table, where it would only
            // push out the values that repeat.
            value.set_sensitive(true);
        }
        map.append(name, value);
    }
    if grpc {
        // gRPC servers may insist on it; it is hop-by-hop, so the client's was dropped.
        map.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    let authority = match authority {
        Some(host) => uri::Authority::from_maybe_shared(slice(host)),
        None => uri::Authority::try_from(fallback),
    }
    .map_err(|_| "the host is no authority")?;
    let path = uri::PathAndQuery::from_maybe_shared(slice(path.as_bytes()))
        .map_err(|_| "the target is no URI")?;
    let mut uri = uri::Parts::default();
    uri.scheme = Some(if https {
        uri::Scheme::HTTPS
    } else {
        uri::Scheme::HTTP
    });
    uri.authority = Some(authority);
    uri.path_and_query = Some(path);
    let mut request = Request::new(());
    *request.method_mut() = Method::from_bytes(method.as_bytes()).map_err(|_| "bad method")?;
    *request.uri_mut() = Uri::from_parts(uri).map_err(|_| "the target is no URI")?;
    *request.version_mut() = http::Version::HTTP_2;
    *request.headers_mut() = map;
    Ok((request, len))
}

/// The length of the HTTP/1.1 head the pipeline wrote at the front of `head`, blank line
/// included (the first blank line is its end).
pub(crate) fn head_len(head: &[u8]) -> Option<usize> {
    static END: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    END.find(head).map(|at| at + 4)
}

const REQUEST_ID: &str = "x-request-id";

/// The header's name; the ones the gateway itself writes on every request from constants
/// (a name outside the standard ones is otherwise an allocation).
fn header_name(name: &[u8]) -> Result<HeaderName, http::header::InvalidHeaderName> {
    const WRITTEN: [&str; 4] = [
        REQUEST_ID,
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    ];
    match WRITTEN
        .iter()
        .find(|known| known.as_bytes().eq_ignore_ascii_case(name))
    {
        Some(&known) => Ok(HeaderName::from_static(known)),
        None => HeaderName::from_bytes(name),
    }
}

/// Why an exchange with an HTTP/2 upstream failed before its response head (the front ends
/// turn it into their own failure, and so into the one error type).
#[derive(Debug)]
pub(crate) enum Error {
    /// No connection to the endpoint (TCP, TLS, or the HTTP/2 handshake).
    Connect(std::io::Error),
    /// The connection or the stream broke before the response head.
    Unavailable(BoxError),
    /// No response head before the deadline.
    TimedOut,
    /// Too many requests already wait for a connection (`maxPendingRequests`).
    Overloaded,
}

/// A stream opened upstream: the response to come, the request body's sender, and the
/// stream's place in its connection's count (held by the response body until it ends).
pub(crate) struct Opened {
    pub(crate) response: ResponseFuture,
    pub(crate) send: SendStream<Bytes>,
    pub(crate) slot: StreamSlot,
}

/// Opens the request's stream on a connection to `endpoint` (a new one if none has room);
/// `end` when the request has no body.
pub(crate) async fn open(
    endpoint: &Endpoint,
    upstream: &Upstream,
    request: Request<()>,
    end: bool,
) -> Result<Opened, Error> {
    let pool = endpoint.pool();
    let pending = upstream.pending().ok_or(Error::Overloaded)?;
    let (mut ready, slot) = pool
        .multiplexed()
        .ready(
            pool.connector(),
            pool.address(),
            (upstream.connect_timeout(), upstream.idle_timeout()),
            upstream.connection_cap(),
        )
        .await
        .map_err(|unready| match unready {
            Unready::Io(error) => Error::Connect(error),
            Unready::Full => Error::Overloaded,
        })?;
    drop(pending);
    let (response, send) = ready
        .send_request(request, end)
        .map_err(|error| Error::Unavailable(error.into()))?;
    Ok(Opened {
        response,
        send,
        slot,
    })
}

/// The response head, before `deadline`.
pub(crate) async fn response(
    future: ResponseFuture,
    deadline: Instant,
) -> Result<Response<RecvStream>, Error> {
    match tokio::time::timeout_at(deadline, future).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error)) => Err(Error::Unavailable(error.into())),
        Err(_) => Err(Error::TimedOut),
    }
}

/// Sends `data` as the stream's window allows: the rest waits for window, it is never queued
/// inside the connection.
pub(crate) async fn send_data(
    stream: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    if data.is_empty() {
        // Nothing to wait for window for; END_STREAM alone if asked.
        if end {
            stream.send_data(data, true)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let granted = poll_fn(|cx| stream.poll_capacity(cx))
            .await
            .ok_or_else(|| h2::Error::from(h2::Reason::CANCEL))??;
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        // The last piece carries END_STREAM.
        stream.send_data(chunk, end && data.is_empty())?;
    }
    Ok(())
}

/// A response body from an HTTP/2 upstream, data then trailers, as the client takes it; the
/// window it took is given back to the upstream at once, so the upstream is never more than
/// one window ahead of the client. With a deadline (the rule's timeouts, a gRPC call's
/// `grpc-timeout`), a body that has not ended by then fails (a gRPC call's ends with
/// `grpc-status: 4`) and the upstream stream is reset.
/// With an idle limit (every body but a gRPC call's, whose streams may rightly be quiet), no
/// data for that long fails the body, as a stalled HTTP/1.1 upstream does.
#[derive(Debug)]
pub(crate) struct ResponseBody {
    recv: Option<RecvStream>,
    data_done: bool,
    deadline: limits::Deadline,
    /// At the deadline, end with gRPC's DEADLINE_EXCEEDED rather than fail.
    grpc: bool,
    idle: Option<Duration>,
    /// Armed the first time the body waits (a body that came whole never needs one).
    idle_timer: Option<Pin<Box<Sleep>>>,
    _slot: StreamSlot,
}

impl ResponseBody {
    pub(crate) fn new(
        recv: RecvStream,
        slot: StreamSlot,
        deadline: Option<Instant>,
        grpc: bool,
        idle: Option<Duration>,
    ) -> Self {
        Self {
            recv: Some(recv),
            data_done: false,
            deadline: limits::Deadline::new(deadline),
            grpc,
            idle,
            idle_timer: None,
            _slot: slot,
        }
    }

    /// Whether the body has waited for the upstream past its idle limit.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(idle) = self.idle else { return false };
        let timer = self.idle_timer.get_or_insert_with(|| {
            Box::pin(tokio::time::sleep_until(limits::deadline(
                Instant::now(),
                idle,
            )))
        });
        timer.as_mut().poll(cx).is_ready()
    }

    fn progressed(&mut self) {
        if let (Some(idle), Some(timer)) = (self.idle, self.idle_timer.as_mut()) {
            timer.as_mut().reset(limits::deadline(Instant::now(), idle));
        }
    }

    fn deadline_passed(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.passed(cx)
    }

    /// The body's end at its deadline: gRPC's status, or a failure.
    fn at_deadline(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.recv = None;
        Poll::Ready(Some(if self.grpc {
            Ok(Frame::trailers(deadline_exceeded()))
        } else {
            Err("the response did not end before the rule's timeout".into())
        }))
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(recv) = this.recv.as_mut() else {
            return Poll::Ready(None);
        };
        if !this.data_done {
            match recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    let _ = recv.flow_control().release_capacity(data.len());
                    this.progressed();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(error))) => {
                    this.recv = None;
                    return Poll::Ready(Some(Err(error.into())));
                }
                Poll::Ready(None) => this.data_done = true,
                Poll::Pending => {
                    return if this.deadline_passed(cx) {
                        this.at_deadline()
                    } else if this.stalled(cx) {
                        this.recv = None;
                        let idle = this.idle.unwrap_or_default();
                        Poll::Ready(Some(Err(format!("no response data for {idle:?}").into())))
                    } else {
                        Poll::Pending
                    };
                }
            }
        }
        let Some(recv) = this.recv.as_mut() else {
            return Poll::Ready(None);
        };
        match recv.poll_trailers(cx) {
            Poll::Ready(Ok(trailers)) => {
                this.recv = None;
                Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))))
            }
            Poll::Ready(Err(error)) => {
                this.recv = None;
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Pending if this.deadline_passed(cx) => this.at_deadline(),
            Poll::Pending => Poll::Pending,
        }
    }

    // Only once taken whole: h2 may call a stream ended while its trailers are still unread,
    // and ending the client's stream on the last data would lose them (gRPC's status).
    fn is_end_stream(&self) -> bool {
        self.recv.is_none()
    }
}

/// The trailers of a gRPC call the gateway ended at its deadline.
fn deadline_exceeded() -> HeaderMap {
    let mut trailers = HeaderMap::with_capacity(2);
    trailers.insert("grpc-status", HeaderValue::from_static("4"));
    trailers.insert(
        "grpc-message",
        HeaderValue::from_static("deadline%20exceeded%20at%20the%20gateway"),
    );
    trailers
}

/// A gRPC `grpc-timeout` value (`1..=8` digits and a unit, H M S m u n), as a duration.
pub(crate) fn grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n.saturating_mul(3600)),
        b'M' => Duration::from_secs(n.saturating_mul(60)),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_http2_request_from_our_head() {
        let head = b"POST /pkg.Svc/Call?x=1 HTTP/1.1\r\nhost: api.example\r\ncontent-type: application/grpc\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\nx-request-id: abc\r\n\r\nBODY";
        let (request, len) = request(head, false, "10.0.0.1:80").unwrap();
        assert_eq!(&head[len..], b"BODY");
        assert_eq!(request.uri(), "http://api.example/pkg.Svc/Call?x=1");
        assert_eq!(request.method(), Method::POST);
        let names: Vec<_> = request.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "x-request-id", "te"]);
        assert_eq!(request.headers()["te"], "trailers");

        let (request, _) = request_without_host();
        assert_eq!(request.uri(), "https://10.0.0.1:443/");
    }

    fn request_without_host() -> (Request<()>, usize) {
        request(b"GET / HTTP/1.1\r\n\r\n", true, "10.0.0.1:443").unwrap()
    }

    #[test]
    fn reads_grpc_timeouts() {
        assert_eq!(grpc_timeout(b"100m"), Some(Duration::from_millis(100)));
        assert_eq!(grpc_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(grpc_timeout(b"123456789S"), None);
        assert_eq!(grpc_timeout(b"S"), None);
        assert_eq!(grpc_timeout(b"10x"), None);
        assert_eq!(grpc_timeout(b"-1S"), None);
    }
}

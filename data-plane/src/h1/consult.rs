//! Asking an auth service ([`Consult`]): one `GET` over a pooled HTTP/1.1 connection to its
//! Upstream, the answer read whole (it is small, and it decides) within the policy's timeout.

use std::{io, time::Duration};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    body::{Body, BodyError, Framing},
    request::{Request, Resumed, Route},
};
use crate::{
    pipeline::{Consult, Heard, Local, ProxyError},
    pool::{EndpointPool, Upstream},
};

/// The largest answer head and body read from an auth service.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
const MAX_ANSWER_HEADERS: usize = 64;

/// Asks `consult`'s question (with the request's id), and says what was heard.
pub(crate) async fn ask(consult: &Consult, request_id: &[u8]) -> Heard {
    let request = consult.request(request_id);
    let endpoint = &consult.upstream.endpoints()[consult.endpoint];
    let timeouts = (
        consult.upstream.connect_timeout(),
        consult.upstream.idle_timeout(),
    );
    let asked = tokio::time::timeout(
        consult.timeout,
        exchange(endpoint.pool(), &request, timeouts),
    );
    match asked.await {
        Ok(Ok(heard)) => heard,
        Ok(Err(error)) => Heard::Failed(format!(
            "the auth service at {}: {error}",
            endpoint.address()
        )),
        Err(_) => Heard::Failed(format!(
            "the auth service at {} did not answer within {:?}",
            endpoint.address(),
            consult.timeout
        )),
    }
}

async fn exchange(
    pool: &EndpointPool,
    request: &[u8],
    (connect_timeout, idle_timeout): (Duration, Duration),
) -> io::Result<Heard> {
    if let Some(mut upstream) = pool.checkout(idle_timeout) {
        match once(&mut upstream, request).await {
            Ok((heard, reusable)) => {
                if reusable {
                    pool.checkin(upstream);
                }
                return Ok(heard);
            }
            // The service closed the idle connection as we used it: the question has no body
            // and changes nothing, so it is asked again on a new one.
            Err(Failed {
                answered: false, ..
            }) => {}
            Err(Failed { error, .. }) => return Err(error),
        }
    }
    let mut upstream = pool.connect(connect_timeout).await?;
    let (heard, reusable) = once(&mut upstream, request).await.map_err(|f| f.error)?;
    if reusable {
        pool.checkin(upstream);
    }
    Ok(heard)
}

struct Failed {
    error: io::Error,
    /// Some of an answer had arrived.
    answered: bool,
}

impl From<io::Error> for Failed {
    fn from(error: io::Error) -> Self {
        Self {
            error,
            answered: true,
        }
    }
}

fn invalid(reason: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason)
}

/// One request and its answer; whether the connection can carry another.
async fn once(upstream: &mut Upstream, request: &[u8]) -> Result<(Heard, bool), Failed> {
    let unanswered = |error: io::Error| Failed {
        error,
        answered: false,
    };
    upstream
        .stream
        .write_all(request)
        .await
        .map_err(unanswered)?;
    let buf = &mut upstream.buf;
    buf.clear();
    loop {
        buf.reserve(4096);
        let n = upstream.stream.read_buf(buf).await.map_err(unanswered)?;
        if n == 0 {
            return Err(unanswered(io::ErrorKind::UnexpectedEof.into()));
        }
        if let Some((head_len, head)) = parse_head(buf)? {
            let rest = buf.split_off(head_len);
            buf.clear();
            let (body, reusable) = read_body(&mut upstream.stream, rest, &head).await?;
            let heard = Heard::Answer {
                status: head.status,
                headers: head.headers,
                body,
            };
            return Ok((heard, reusable && head.keep_alive));
        }
        if buf.len() > MAX_ANSWER_BYTES {
            return Err(invalid("answer head over 64 KiB").into());
        }
    }
}

/// An answer's head, as far as reading its body needs.
struct AnswerHead {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    length: Option<usize>,
    chunked: bool,
    keep_alive: bool,
}

/// The answer's head, once it is whole (interim 1xx answers skipped).
fn parse_head(buf: &mut Vec<u8>) -> io::Result<Option<(usize, AnswerHead)>> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_ANSWER_HEADERS];
        let mut response = httparse::Response::new(&mut slots);
        let head_len = match response.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(invalid("not an HTTP/1.1 answer")),
        };
        let code = response.code.unwrap_or_default();
        let status = StatusCode::from_u16(code).map_err(|_| invalid("invalid status"))?;
        if status.is_informational() {
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(invalid("the auth service switched protocols"));
            }
            buf.drain(..head_len);
            continue;
        }
        let mut head = AnswerHead {
            status,
            headers: Vec::with_capacity(response.headers.len()),
            length: None,
            chunked: false,
            keep_alive: response.version == Some(1),
        };
        for h in response.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| invalid("invalid header name"))?;
            let value =
                HeaderValue::from_bytes(h.value).map_err(|_| invalid("invalid header value"))?;
            if name == http::header::CONTENT_LENGTH {
                let length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| invalid("invalid content-length"))?;
                if head.length.is_some_and(|l| l != length) {
                    return Err(invalid("conflicting content-length"));
                }
                head.length = Some(length);
            } else if name == http::header::TRANSFER_ENCODING {
                if !h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    return Err(invalid("unsupported transfer-encoding"));
                }
                head.chunked = true;
            } else if name == http::header::CONNECTION
                && h.value
                    .split(|&b| b == b',')
                    .any(|o| o.trim_ascii().eq_ignore_ascii_case(b"close"))
            {
                head.keep_alive = false;
            }
            head.headers.push((name, value));
        }
        if head.chunked && head.length.is_some() {
            return Err(invalid("both content-length and transfer-encoding"));
        }
        return Ok(Some((head_len, head)));
    }
}

/// The answer's body (`rest`: what came with the head), read through the same framing as
/// every upstream body; whether the connection can carry on.
async fn read_body(
    stream: &mut crate::connect::UpstreamStream,
    mut rest: Vec<u8>,
    head: &AnswerHead,
) -> io::Result<(Bytes, bool)> {
    let no_body = head.status == StatusCode::NO_CONTENT || head.status == StatusCode::NOT_MODIFIED;
    let framing = match (no_body, head.length, head.chunked) {
        (true, _, _) | (false, Some(0), _) => Framing::Empty,
        (false, Some(n), _) => Framing::Length(n as u64),
        (false, None, true) => Framing::Chunked,
        (false, None, false) => Framing::UntilClose,
    };
    if head.length.is_some_and(|n| n > MAX_ANSWER_BYTES) {
        return Err(invalid("answer body over 64 KiB"));
    }
    let mut body = Body::limited(framing, true, MAX_ANSWER_BYTES as u64);
    let mut whole = Vec::new();
    loop {
        let used = body.take(&rest, &mut whole).map_err(|e| match e {
            BodyError::TooLarge => invalid("answer body over 64 KiB"),
            _ => invalid("invalid answer body"),
        })?;
        rest.drain(..used);
        if whole.len() > MAX_ANSWER_BYTES {
            return Err(invalid("answer body over 64 KiB"));
        }
        if body.is_done() {
            // Bytes after the body: the service is confused, never reuse the connection.
            return Ok((Bytes::from(whole), rest.is_empty()));
        }
        rest.reserve(4096);
        if stream.read_buf(&mut rest).await? == 0 {
            return match framing {
                Framing::UntilClose => Ok((Bytes::from(whole), false)),
                _ => Err(io::ErrorKind::UnexpectedEof.into()),
            };
        }
    }
}

/// A request whose auth service must be asked: asks it, and prepares the request again with
/// the answer (`prepare_again`) until its route no longer waits. A rule asks one auth service,
/// so this is once, unless a new table came in meanwhile; past a few rounds it gives up.
pub(crate) async fn resume(
    mut request: Request,
    mut prepare_again: impl FnMut(Resumed) -> Result<Request, ProxyError>,
) -> Result<Request, ProxyError> {
    for _ in 0..3 {
        let Route::Consult(consult) = request.route else {
            return Ok(request);
        };
        let heard = ask(&consult, request.request_id.as_bytes()).await;
        request = prepare_again(Resumed {
            consulted: consult.conclude(heard),
            request_id: request.request_id,
        })?;
    }
    if let Route::Consult(_) = request.route {
        let error = ProxyError::AuthUnavailable {
            reason: "the configuration kept changing while the auth service was asked".into(),
        };
        request.route = Route::Respond(Local::Error(error), None);
    }
    Ok(request)
}

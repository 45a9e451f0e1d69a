//! A transcoded call, for both front ends: the client's REST request (its upstream head as the
//! pipeline wrote it, and its whole JSON body) matched to a gRPC method, turned into one gRPC
//! message, sent on an HTTP/2 stream to the upstream, and the answer turned back into JSON:
//! the reply for status 0, the `google.rpc.Status` JSON with the HTTP status of the gRPC code
//! otherwise. A server-streaming method's replies are streamed ([`stream`]); a client stream is
//! the body's JSON array or NDJSON lines, sent at once, or, when the client says its body is
//! NDJSON, a message a line as the lines come ([`requests`]), so that a bidirectional call's
//! replies flow while its requests still do.

mod requests;
mod stream;

pub(crate) use self::{
    requests::{Requests, StreamError},
    stream::JsonStream,
};

use std::future::poll_fn;

use bytes::Bytes;
use h2::{SendStream, client::ResponseFuture};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header, uri::PathAndQuery};
use prost_reflect::MethodDescriptor;
use tokio::time::Instant;

use super::{Error, Opened};
use crate::{
    limits,
    pipeline::{Local, LocalResponse, ProxyError, outcome::GrpcCall},
    pool::multiplexed::StreamSlot,
    table::{Endpoint, Upstream},
    transcode::{
        Matched, Transcoder,
        grpc::{self, Frames},
        json,
    },
};

/// A transcoded call's answer: whole, or a stream of replies.
#[derive(Debug)]
pub(crate) enum Transcoded {
    Whole(Local),
    Stream(JsonStream),
}

/// How a transcoded call ended before an answer could be made: the client's fault (400, 404),
/// or the exchange's.
#[derive(Debug)]
pub(crate) enum Refused {
    Client(Local),
    Exchange(Error),
}

impl From<Error> for Refused {
    fn from(error: Error) -> Self {
        Refused::Exchange(error)
    }
}

fn broken(reason: impl Into<crate::pipeline::BoxError>) -> Refused {
    Refused::Exchange(Error::Unavailable(reason.into()))
}

/// A REST request matched to its gRPC method, with the gRPC request head made: what is left to
/// add is the message, from the body.
pub(crate) struct Prepared<'t> {
    transcoder: &'t Transcoder,
    matched: Matched<'t>,
    /// The gRPC request head (`POST /pkg.Service/Method`, the kept headers).
    request: http::Request<()>,
    /// The client's path and query, for the query parameters.
    rest_target: Option<PathAndQuery>,
    /// The client accepts Server-Sent Events.
    sse: bool,
    /// The client sent its body as NDJSON (`application/x-ndjson`).
    ndjson: bool,
}

/// Matches the REST request whose upstream head (as the pipeline wrote it) is `head` to a
/// method of `transcoder`, and makes the gRPC request head.
pub(crate) fn prepare<'t>(
    transcoder: &'t Transcoder,
    endpoint: &Endpoint,
    head: &[u8],
) -> Result<Prepared<'t>, Refused> {
    // Of the client's headers only the request id, the forwarded ones and the allowed metadata
    // go to the gRPC backend; `Accept` chooses how a stream of replies is written, and
    // `Content-Type` whether a stream of requests is sent as it comes.
    let mut sse = false;
    let mut ndjson = false;
    let allowed = transcoder.request_headers();
    let https = endpoint.pool().connector().is_tls();
    let (mut request, _) =
        super::request_keeping(head, https, endpoint.address(), |name, value| {
            if name == header::ACCEPT {
                sse |= value
                    .windows(17)
                    .any(|w| w.eq_ignore_ascii_case(b"text/event-stream"));
                return false;
            }
            if name == header::CONTENT_TYPE {
                ndjson = value
                    .get(..20)
                    .is_some_and(|v| v.eq_ignore_ascii_case(b"application/x-ndjson"));
                return false;
            }
            let name_str = name.as_str();
            name_str == "x-request-id"
                || name_str.starts_with("x-forwarded-")
                || allowed.contains(name)
        })
        .map_err(|reason| {
            Refused::Client(Local::TranscodedError(ProxyError::Malformed { reason }))
        })?;
    let Some(matched) = transcoder
        .methods()
        .find(request.method().as_str(), request.uri().path())
    else {
        return Err(Refused::Client(Local::TranscodedError(
            ProxyError::RouteNotFound,
        )));
    };
    // The gRPC request: POST /pkg.Service/Method with the gRPC headers.
    let mut uri = std::mem::take(request.uri_mut()).into_parts();
    let rest_target = uri.path_and_query.replace(matched.grpc_path.clone());
    *request.uri_mut() =
        http::Uri::from_parts(uri).map_err(|_| broken("the gRPC path is no URI"))?;
    *request.method_mut() = Method::POST;
    let headers = request.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    Ok(Prepared {
        transcoder,
        matched,
        request,
        rest_target,
        sse,
        ndjson,
    })
}

impl Prepared<'_> {
    /// Whether the body is sent a message at a time as it arrives ([`call_streaming`]) rather
    /// than read whole first: a client stream sent as NDJSON, so that a bidirectional call
    /// is a conversation.
    pub(crate) fn streams_request(&self) -> bool {
        self.ndjson && self.matched.method.is_client_streaming()
    }
}

/// The answer to the prepared request whose whole body is `body`, before `deadline` if the
/// rule sets one.
pub(crate) async fn call(
    prepared: Prepared<'_>,
    (endpoint, upstream): (&Endpoint, &Upstream),
    body: &[u8],
    deadline: Option<Instant>,
    call: &mut Option<GrpcCall>,
) -> Result<Transcoded, Refused> {
    // The messages to send, framed: one, or a client stream's from a JSON array or NDJSON body.
    let transcoder = prepared.transcoder;
    let bad = |bad: json::BadRequest| Refused::Client(Local::Transcoded(bad_request(&bad)));
    let mut framed = Vec::new();
    let matched = &prepared.matched;
    if matched.method.is_client_streaming() {
        for message in json::stream_of_requests(&matched.method.input(), body, transcoder.options())
            .map_err(bad)?
        {
            grpc::put_message(&message, &mut framed);
        }
    } else {
        let query = prepared.rest_target.as_ref().and_then(PathAndQuery::query);
        let message = json::request(matched, query, body, transcoder.options()).map_err(bad)?;
        grpc::put_message(&message, &mut framed);
    }
    let (mut send, pending) = open(prepared, endpoint, upstream, deadline, false).await?;
    // Whole already and bounded by the largest message: h2 sends it as the window allows.
    send.send_data(Bytes::from(framed), true).map_err(broken)?;
    let (grpc, answer) = pending.answer().await;
    *call = Some(grpc);
    answer
}

/// The call for a prepared request whose body is a stream of messages (see
/// [`Prepared::streams_request`]): the stream to send them on as they come, and the answer,
/// which may begin (a stream of replies) before the last of them is sent.
pub(crate) async fn call_streaming<'t>(
    prepared: Prepared<'t>,
    (endpoint, upstream): (&Endpoint, &Upstream),
    deadline: Option<Instant>,
) -> Result<(Requests, Pending<'t>), Refused> {
    let input = prepared.matched.method.input();
    let options = prepared.transcoder.options();
    let (send, pending) = open(prepared, endpoint, upstream, deadline, true).await?;
    Ok((Requests::new(send, input, options), pending))
}

/// Opens the call's HTTP/2 stream; what is left is to send its messages and await
/// [`Pending::answer`]. A streamed request's call runs to the rule's deadline only: its
/// requests may come for longer than the upstream's time to answer.
async fn open<'t>(
    prepared: Prepared<'t>,
    endpoint: &Endpoint,
    upstream: &Upstream,
    rule_deadline: Option<Instant>,
    streamed: bool,
) -> Result<(SendStream<Bytes>, Pending<'t>), Refused> {
    let Prepared {
        transcoder,
        matched,
        mut request,
        sse,
        ..
    } = prepared;
    let now = Instant::now();
    let head_deadline = limits::deadline(now, upstream.timeout());
    let deadline = match rule_deadline {
        Some(rule) if streamed => rule,
        Some(rule) => rule.min(head_deadline),
        None if streamed => limits::deadline(now, std::time::Duration::MAX),
        None => head_deadline,
    };
    let millis = deadline.saturating_duration_since(now).as_millis().max(1);
    if (!streamed || rule_deadline.is_some())
        && let Ok(mut value) = HeaderValue::try_from(format!("{}m", millis.min(99_999_999)))
    {
        // A new value nearly every call: not for the HPACK table.
        value.set_sensitive(true);
        request.headers_mut().insert("grpc-timeout", value);
    }
    let Opened {
        response,
        send,
        slot,
    } = super::open(endpoint, upstream, request, false).await?;
    let pending = Pending {
        transcoder,
        response,
        slot,
        method: matched.method.clone(),
        response_body: matched.binding.response_body.as_deref(),
        sse,
        deadline,
        rule_deadline,
    };
    Ok((send, pending))
}

/// A call whose request is on its way: what is left is its answer.
pub(crate) struct Pending<'t> {
    transcoder: &'t Transcoder,
    response: ResponseFuture,
    slot: StreamSlot,
    method: MethodDescriptor,
    response_body: Option<&'t str>,
    sse: bool,
    /// When the answer's head (a unary reply: all of it) must have come.
    deadline: Instant,
    rule_deadline: Option<Instant>,
}

impl Pending<'_> {
    /// The call's answer: a stream of replies as soon as the first is on its way, or the whole
    /// answer; with the call, for the outcome record (its status once it is known).
    pub(crate) async fn answer(self) -> (GrpcCall, Result<Transcoded, Refused>) {
        let mut call = GrpcCall {
            method: self.method.clone(),
            status: None,
        };
        let answer = self.answer_into(&mut call).await;
        (call, answer)
    }

    async fn answer_into(self, call: &mut GrpcCall) -> Result<Transcoded, Refused> {
        let Self {
            transcoder,
            response,
            slot,
            method,
            response_body,
            sse,
            deadline,
            rule_deadline,
        } = self;
        if method.is_server_streaming() {
            let response = super::response(response, deadline).await?;
            let (parts, recv) = response.into_parts();
            // An error before any reply (trailers-only) is answered whole, with its status.
            if parts.status == StatusCode::OK && !parts.headers.contains_key("grpc-status") {
                return Ok(Transcoded::Stream(
                    JsonStream::new(
                        recv,
                        slot,
                        method.output(),
                        transcoder.pool().clone(),
                        transcoder.options(),
                        sse,
                        rule_deadline,
                    )
                    .with_headers(pick(transcoder, &parts.headers)),
                ));
            }
            let answer = if parts.status == StatusCode::OK {
                Answer::from_trailers(&parts.headers, None)
            } else {
                Answer::status(
                    2,
                    format!("the upstream answered HTTP {}", parts.status.as_u16()),
                )
            };
            return Ok(Transcoded::Whole(Local::Transcoded(
                answer.into_response(transcoder, &method, None),
            )));
        }
        let _slot = slot;
        let (answer, returned) =
            match tokio::time::timeout_at(deadline, unary(transcoder, response)).await {
                Ok(answer) => answer?,
                Err(_) => return Err(Refused::Exchange(Error::TimedOut)),
            };
        call.status = Some(answer.code);
        let mut response = answer.into_response(transcoder, &method, response_body);
        response.headers.extend(returned);
        Ok(Transcoded::Whole(Local::Transcoded(response)))
    }
}

/// A unary reply, whole: the call's status and its message, with the metadata to return.
async fn unary(
    transcoder: &Transcoder,
    response: ResponseFuture,
) -> Result<(Answer, Vec<(http::HeaderName, HeaderValue)>), Refused> {
    let response = response.await.map_err(broken)?;
    let (parts, mut recv) = response.into_parts();
    let mut returned = pick(transcoder, &parts.headers);
    if parts.status != StatusCode::OK {
        return Ok((
            Answer::status(
                2,
                format!("the upstream answered HTTP {}", parts.status.as_u16()),
            ),
            returned,
        ));
    }
    // A trailers-only response: the status is in the head.
    if parts.headers.contains_key("grpc-status") {
        return Ok((Answer::from_trailers(&parts.headers, None), returned));
    }
    let mut frames = Frames::default();
    let mut reply = None;
    while let Some(data) = poll_fn(|cx| recv.poll_data(cx)).await {
        let data = data.map_err(broken)?;
        let _ = recv.flow_control().release_capacity(data.len());
        frames.push(&data);
        while let Some(message) = frames.next_message().map_err(broken)? {
            if reply.replace(message).is_some() {
                return Err(broken("a unary method answered more than one message"));
            }
        }
    }
    let trailers = poll_fn(|cx| recv.poll_trailers(cx))
        .await
        .map_err(broken)?
        .unwrap_or_default();
    returned.extend(pick(transcoder, &trailers));
    Ok((
        Answer::from_trailers(&trailers, reply.map(|m| m.freeze())),
        returned,
    ))
}

/// A gRPC call's end: its status, and the reply when there is one.
struct Answer {
    code: u32,
    message: String,
    details: Option<Vec<u8>>,
    reply: Option<Bytes>,
}

impl Answer {
    fn status(code: u32, message: String) -> Self {
        Self {
            code,
            message,
            details: None,
            reply: None,
        }
    }

    fn from_trailers(trailers: &HeaderMap, reply: Option<Bytes>) -> Self {
        let code = trailers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            // No status is a broken call: UNKNOWN.
            .unwrap_or(2);
        Self {
            code,
            message: trailers
                .get("grpc-message")
                .map(|v| grpc::decode_message(v.as_bytes()))
                .unwrap_or_default(),
            details: trailers
                .get("grpc-status-details-bin")
                .and_then(|v| grpc::base64::decode(v.as_bytes())),
            reply,
        }
    }

    fn into_response(
        self,
        transcoder: &Transcoder,
        method: &prost_reflect::MethodDescriptor,
        response_body: Option<&str>,
    ) -> LocalResponse {
        if self.code == 0 {
            match json::response(
                method.output(),
                self.reply.as_deref().unwrap_or_default(),
                response_body,
                transcoder.options(),
            ) {
                Ok(body) => return json_response(StatusCode::OK, body),
                Err(reason) => {
                    let body = grpc::status_json(13, &reason, None, transcoder.pool());
                    return json_response(StatusCode::BAD_GATEWAY, body);
                }
            }
        }
        let status = StatusCode::from_u16(grpc::http_status(self.code))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = grpc::status_json(
            self.code,
            &self.message,
            self.details.as_deref(),
            transcoder.pool(),
        );
        json_response(status, body)
    }
}

/// The allowed metadata of `headers`, to return as response headers.
fn pick(transcoder: &Transcoder, headers: &HeaderMap) -> Vec<(http::HeaderName, HeaderValue)> {
    transcoder
        .response_headers()
        .iter()
        .flat_map(|name| {
            headers
                .get_all(name)
                .iter()
                .map(move |value| (name.clone(), value.clone()))
        })
        .collect()
}

/// The answer to a streamed request whose body stopped before the call could answer: the
/// client's fault, unless the upstream's stream is what broke (then the call's own error says
/// more).
pub(crate) fn stream_refused(error: &StreamError) -> Option<Local> {
    Some(match error {
        StreamError::Bad(bad) => Local::Transcoded(bad_request(bad)),
        StreamError::TooLarge | StreamError::BodyTooLarge => {
            Local::TranscodedError(ProxyError::BodyTooLarge)
        }
        StreamError::Body(reason) => Local::TranscodedError(ProxyError::Malformed { reason }),
        StreamError::Upstream(_) => return None,
    })
}

fn bad_request(bad: &json::BadRequest) -> LocalResponse {
    // INVALID_ARGUMENT, in the same shape as an upstream's error.
    let body =
        serde_json::to_vec(&serde_json::json!({ "code": 3, "message": bad.0, "details": [] }))
            .unwrap_or_default();
    json_response(StatusCode::BAD_REQUEST, body)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> LocalResponse {
    LocalResponse {
        status,
        headers: vec![(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body: Bytes::from(body),
    }
}

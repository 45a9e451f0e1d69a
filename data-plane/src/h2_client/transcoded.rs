//! A transcoded call, for both front ends: the client's REST request (its upstream head as the
//! pipeline wrote it, and its whole JSON body) matched to a gRPC method, turned into one gRPC
//! message, sent on an HTTP/2 stream to the upstream, and the answer turned back into JSON:
//! the reply for status 0, the `google.rpc.Status` JSON with the HTTP status of the gRPC code
//! otherwise. A server-streaming method's replies are streamed ([`stream`]); a client stream is
//! the body's JSON array or NDJSON lines, sent at once (bidirectional calls are both: the whole
//! request stream, then the replies as they come).

mod stream;

pub(crate) use self::stream::JsonStream;

use std::future::poll_fn;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::time::Instant;

use super::{Error, Opened};
use crate::{
    limits,
    pipeline::{Local, LocalResponse, ProxyError, outcome::GrpcCall},
    table::{Endpoint, Upstream},
    transcode::{
        Transcoder,
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

/// The answer to the REST request whose upstream head (as the pipeline wrote it) is `head`
/// and whose whole body is `body`, before `deadline` if the rule sets one.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn call(
    transcoder: &Transcoder,
    endpoint: &Endpoint,
    upstream: &Upstream,
    head: &[u8],
    body: &[u8],
    deadline: Option<Instant>,
    call: &mut Option<GrpcCall>,
) -> Result<Transcoded, Refused> {
    // Of the client's headers only the request id, the forwarded ones and the allowed metadata
    // go to the gRPC backend; `Accept` chooses how a stream of replies is written.
    let mut sse = false;
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
    // The messages to send, framed: one, or a client stream's from a JSON array or NDJSON body.
    let bad = |bad: json::BadRequest| Refused::Client(Local::Transcoded(bad_request(&bad)));
    let mut framed = Vec::new();
    if matched.method.is_client_streaming() {
        for message in json::stream_of_requests(&matched.method.input(), body, transcoder.options())
            .map_err(bad)?
        {
            grpc::put_message(&message, &mut framed);
        }
    } else {
        let message = json::request(&matched, request.uri().query(), body, transcoder.options())
            .map_err(bad)?;
        grpc::put_message(&message, &mut framed);
    }
    let method = matched.method.clone();
    *call = Some(GrpcCall {
        method: method.clone(),
        status: None,
    });
    let response_body = matched.binding.response_body.clone();

    // The gRPC request: POST /pkg.Service/Method with the gRPC headers.
    let mut uri = std::mem::take(request.uri_mut()).into_parts();
    uri.path_and_query = Some(matched.grpc_path.clone());
    *request.uri_mut() =
        http::Uri::from_parts(uri).map_err(|_| broken("the gRPC path is no URI"))?;
    *request.method_mut() = Method::POST;
    let headers = request.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    let now = Instant::now();
    let rule_deadline = deadline;
    let head_deadline = limits::deadline(now, upstream.timeout());
    let deadline = deadline.map_or(head_deadline, |d| d.min(head_deadline));
    let millis = deadline.saturating_duration_since(now).as_millis().max(1);
    if let Ok(mut value) = HeaderValue::try_from(format!("{}m", millis.min(99_999_999))) {
        // A new value nearly every call: not for the HPACK table.
        value.set_sensitive(true);
        headers.insert("grpc-timeout", value);
    }

    let Opened {
        response,
        mut send,
        slot,
    } = super::open(endpoint, upstream, request, false).await?;
    // Whole already and bounded by the largest message: h2 sends it as the window allows.
    send.send_data(Bytes::from(framed), true).map_err(broken)?;
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
    let exchange = async {
        let response = response.await.map_err(broken)?;
        let (parts, mut recv) = response.into_parts();
        let mut returned = pick(transcoder, &parts.headers);
        if parts.status != StatusCode::OK {
            return Ok::<_, Refused>((
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
    };
    let (answer, returned) = match tokio::time::timeout_at(deadline, exchange).await {
        Ok(answer) => answer?,
        Err(_) => return Err(Refused::Exchange(Error::TimedOut)),
    };
    if let Some(call) = call.as_mut() {
        call.status = Some(answer.code);
    }
    let mut response = answer.into_response(transcoder, &method, response_body.as_deref());
    response.headers.extend(returned);
    Ok(Transcoded::Whole(Local::Transcoded(response)))
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

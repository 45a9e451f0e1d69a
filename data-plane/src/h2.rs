//! The HTTP/2 front end: our own server connection ([`connection`]: frames, HPACK, streams and
//! flow control), with each stream's request going through the one pipeline exactly as an
//! HTTP/1 request does ([`h1::prepare`]) and on to the pooled HTTP/1.1 upstream client. This
//! module is the seam between the two: a decoded header block in, a [`Reply`] out.

use std::{future::Future, pin::Pin, sync::Arc};

use bytes::Bytes;
use http_body::Body as _;
use tokio::time::Instant;

use self::{
    hpack::encode_field, limited::Limited, recv::RecvBody, request::Fields,
    upstream::UpstreamResponse,
};
use crate::{
    h1::{self, Asked, BodyFrom, Line, Request, Route, Target},
    h2_client,
    pipeline::{Connection, Local, Outcome, ProxyError, record, request_id::RequestId},
};

mod connection;
mod frame;
mod hpack;
mod limited;
mod multiplexed;
mod recv;
mod request;
mod upstream;

pub(crate) use self::connection::serve;

/// The fuzz target's check of header blocks (`fuzz/fuzz_targets/h2_headers.rs`): `blocks`
/// decoded in turn by one HPACK decoder, as one connection's requests, each checked and, if it
/// passes, run through the pipeline as a new stream's request. Nothing panics, the dynamic
/// table stays within its size, and a block taken as a request yields its pseudo-headers.
pub(crate) fn check_header_blocks(conn: &Arc<Connection>, blocks: &[&[u8]]) -> Result<(), String> {
    let mut decoder = hpack::Decoder::default();
    let mut fields = Fields::default();
    for block in blocks {
        fields.clear();
        let decoded = decoder.decode(block, |name, value| fields.add(name, value));
        if decoder.table_size() > hpack::TABLE_SIZE {
            return Err(format!("dynamic table at {} bytes", decoder.table_size()));
        }
        if decoded.is_err() {
            // A connection error: the connection ends here.
            return Ok(());
        }
        match fields.complete() {
            Some(_) => continue,
            None => {
                if let Started::Reply(reply) = start(conn, &mut fields, None, false)
                    && reply.block.is_empty()
                {
                    return Err("a reply without a header block".into());
                }
            }
        }
    }
    Ok(())
}

/// A stream's response as the connection sends it.
pub(crate) struct Reply {
    /// The HPACK header block, `:status` first.
    block: Vec<u8>,
    body: ReplyBody,
}

enum ReplyBody {
    Empty,
    Local(Bytes),
    Upstream(UpstreamBody),
}

/// A response body from an upstream, over either protocol.
#[derive(Debug)]
enum UpstreamBody {
    Http1(UpstreamResponse),
    Http2(h2_client::ResponseBody),
    /// A transcoded server stream's JSON lines.
    Transcoded(h2_client::JsonStream),
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = crate::pipeline::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Http1(body) => Pin::new(body).poll_frame(cx),
            Self::Http2(body) => Pin::new(body).poll_frame(cx),
            Self::Transcoded(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Http1(body) => body.is_end_stream(),
            Self::Http2(body) => body.is_end_stream(),
            Self::Transcoded(body) => body.is_end_stream(),
        }
    }
}

/// A forwarded request's exchange with its upstream, run by the connection.
type Exchange = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// What the pipeline made of a new stream's request. Returned once and matched at once, so
/// its size costs a move, not memory.
#[allow(clippy::large_enum_variant)]
enum Started {
    Reply(Reply),
    Exchange(Exchange),
}

/// Runs the pipeline on a complete request header block (`fields`), before any of the body.
fn start(
    conn: &Arc<Connection>,
    fields: &mut Fields,
    body: Option<RecvBody>,
    too_large: bool,
) -> Started {
    let arrived = Instant::now();
    let outcome = Outcome::start(arrived);
    let (grpc, grpc_timeout) = (fields.grpc, fields.grpc_timeout);
    let Some(admitted) = conn.state.admit_owned() else {
        return Started::Reply(local(
            conn,
            Local::Error(ProxyError::Overloaded),
            None,
            outcome,
            false,
            grpc,
        ));
    };
    if too_large {
        let error = ProxyError::HeadTooLarge {
            limit: "the gateway's",
        };
        return Started::Reply(local(conn, Local::Error(error), None, outcome, false, grpc));
    }
    let ended = body.is_none();
    let mut on_heap = Vec::new();
    let parts = match fields.finish(&mut on_heap) {
        Ok(parts) => parts,
        Err(_) => {
            // The connection resets malformed streams before they get here.
            let error = ProxyError::Malformed {
                reason: "malformed header block",
            };
            return Started::Reply(local(conn, Local::Error(error), None, outcome, false, grpc));
        }
    };
    if parts.method == "CONNECT" {
        let error = ProxyError::Malformed {
            reason: "CONNECT is not supported",
        };
        return Started::Reply(local(conn, Local::Error(error), None, outcome, false, grpc));
    }
    let line = Line {
        method: parts.method,
        target: Target {
            path_and_query: parts.path,
            authority: parts.authority,
        },
        http10: false,
        body: BodyFrom::Stream { ended },
    };
    let is_head = parts.method == "HEAD";
    let mut head = Vec::with_capacity(512);
    let request = match h1::prepare(conn, line, &mut on_heap, &mut head, None) {
        Ok(request) => request,
        Err(error) => {
            return Started::Reply(local(
                conn,
                Local::Error(error),
                None,
                outcome,
                is_head,
                grpc,
            ));
        }
    };
    let stream = Stream {
        arrived,
        outcome,
        admitted,
        body,
        is_head,
        grpc,
        grpc_timeout,
    };
    if !matches!(request.route, Route::Consult(_)) {
        return proceed(conn, request, head, stream);
    }
    // The auth service is asked first; the request is prepared again from a copy of its
    // fields, which the connection reuses for the next stream meanwhile.
    let owned = OwnedHead::of(&parts, &on_heap);
    let conn = conn.clone();
    Started::Exchange(Box::pin(async move {
        let again = |resumed| {
            let mut lines = owned.lines();
            h1::prepare(
                &conn,
                owned.line(ended),
                &mut lines,
                &mut head,
                Some(resumed),
            )
        };
        let request = match h1::resume(request, again).await {
            Ok(request) => request,
            Err(error) => {
                let Stream { outcome, .. } = stream;
                return local(&conn, Local::Error(error), None, outcome, is_head, grpc);
            }
        };
        match proceed(&conn, request, head, stream) {
            Started::Reply(reply) => reply,
            Started::Exchange(exchange) => exchange.await,
        }
    }))
}

/// What a stream brings to its exchange besides the request.
struct Stream {
    arrived: Instant,
    outcome: Outcome,
    admitted: crate::state::OwnedInFlight,
    body: Option<RecvBody>,
    is_head: bool,
    grpc: bool,
    grpc_timeout: Option<std::time::Duration>,
}

/// A request's fields, owned: what preparing it again needs once the stream's own are gone.
struct OwnedHead {
    method: Box<str>,
    path: Box<str>,
    authority: Option<Box<[u8]>>,
    lines: Vec<(Box<str>, Box<[u8]>)>,
}

impl OwnedHead {
    fn of(parts: &request::Parts<'_>, lines: &[httparse::Header<'_>]) -> Self {
        Self {
            method: parts.method.into(),
            path: parts.path.into(),
            authority: parts.authority.map(Into::into),
            lines: lines
                .iter()
                .map(|h| (h.name.into(), h.value.into()))
                .collect(),
        }
    }

    fn line(&self, ended: bool) -> Line<'_> {
        Line {
            method: &self.method,
            target: Target {
                path_and_query: &self.path,
                authority: self.authority.as_deref(),
            },
            http10: false,
            body: BodyFrom::Stream { ended },
        }
    }

    fn lines(&self) -> Vec<httparse::Header<'_>> {
        self.lines
            .iter()
            .map(|(name, value)| httparse::Header { name, value })
            .collect()
    }
}

/// Runs a prepared request: the gateway's answer, or the exchange with its upstream.
fn proceed(conn: &Arc<Connection>, request: Request, head: Vec<u8>, stream: Stream) -> Started {
    let Stream {
        arrived,
        mut outcome,
        admitted,
        body,
        is_head,
        grpc,
        grpc_timeout,
    } = stream;
    let request_id = request.request_id;
    let routed = match request.route {
        Route::Forward(routed) => routed,
        other => {
            let (answer, rule) = match other {
                Route::Respond(answer, rule) => (answer.for_rule(rule.as_deref()), rule),
                // `resume` asked the auth service before the request came here.
                _ => {
                    let reason = "the auth service was not asked".into();
                    (Local::Error(ProxyError::AuthUnavailable { reason }), None)
                }
            };
            outcome.rule = rule;
            return Started::Reply(local(
                conn,
                answer,
                Some(request_id),
                outcome,
                is_head,
                grpc,
            ));
        }
    };
    outcome.rule = Some(routed.rule.clone());
    outcome.upstream = Some((routed.upstream.clone(), routed.endpoint));
    // A transcoded body is read whole, so it is held to the largest gRPC message too.
    let limit = match routed.rule.transcoder() {
        Some(_) => routed
            .body_limit
            .min(crate::transcode::grpc::MAX_MESSAGE as u64),
        None => routed.body_limit,
    };
    let (framing, idempotent) = (request.framing, request.idempotent);
    let body = body.map(|body| Limited::new(body, limit));
    let conn = conn.clone();
    let mut routed = routed;
    Started::Exchange(Box::pin(async move {
        let _admitted = admitted;
        let upstream = &routed.upstream;
        let endpoint = &upstream.endpoints()[routed.endpoint];
        // The rule's timeouts and a gRPC call's own, whichever ends first.
        let now = Instant::now();
        let deadline = routed.rule.timeouts().deadline(arrived, now);
        let grpc_deadline = grpc_timeout.map(|t| crate::limits::deadline(now, t));
        let deadline = match (deadline, grpc_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let asked = Asked {
            is_head,
            http10: false,
            keep_alive: true,
            upgrade: false,
            request_id: &request_id,
            edits: &routed.rule.filters().response,
            extra: &routed.response_extra,
            retry_on: &[],
        };
        let mut body = body;
        let mut head = head;
        // On a rule that retries or mirrors, a body small enough to keep is read whole first:
        // each try sends it again, and the shadow gets it too.
        // A body of unknown length is read until it ends or passes the limit; not a gRPC
        // call's, which is a stream.
        let mut kept = None;
        let max = crate::limits::KEPT_BODY_BYTES as u64;
        if (routed.rule.retry().is_some() || routed.rule.mirror().is_some())
            && routed.rule.transcoder().is_none()
            && !grpc
            && !matches!(framing, h1::Framing::Length(n) if n > max)
            && let Some(whole) = body.as_mut()
        {
            match whole.read_up_to(max).await {
                Ok(read) => kept = read,
                Err(too_large) => {
                    let error = if too_large {
                        ProxyError::BodyTooLarge
                    } else {
                        ProxyError::Malformed {
                            reason: "the request body was cut short",
                        }
                    };
                    let answer = Local::Error(error).for_rule(Some(&routed.rule));
                    return local(&conn, answer, Some(request_id), outcome, is_head, grpc);
                }
            }
        }
        // The whole request for HTTP/1.1, with a kept body: for the shadow, and for tries over
        // HTTP/1.1 (an HTTP/2 upstream is sent the kept bytes as they are).
        let whole_request = kept
            .as_ref()
            .filter(|_| routed.rule.mirror().is_some() || !upstream.is_multiplexed())
            .map(|kept| with_body(&head, kept, framing));
        if let Some(shadow) = routed.rule.mirror() {
            match (&body, &whole_request) {
                (None, _) => h1::mirror(shadow, &head),
                (Some(_), Some(whole)) => h1::mirror(shadow, whole),
                (Some(_), None) => {}
            }
        }
        if routed.rule.policies().checks_body
            && let Some(whole) = body.as_mut()
        {
            let max = routed.rule.policies().checked_body_limit();
            let checked = match whole.read_whole(max).await {
                Ok(read) => crate::pipeline::check_body(&routed.rule, &read),
                Err(true) => Err(Local::Error(ProxyError::BodyTooLarge)),
                Err(false) => Err(Local::Error(ProxyError::Malformed {
                    reason: "the request body was cut short",
                })),
            };
            if let Err(answer) = checked {
                let answer = answer.for_rule(Some(&routed.rule));
                return local(&conn, answer, Some(request_id), outcome, is_head, grpc);
            }
        }
        if let Some(transcoder) = routed.rule.transcoder() {
            let answer = match transcode(
                transcoder,
                endpoint,
                upstream,
                (&head, body),
                deadline,
                &mut outcome.grpc,
            )
            .await
            {
                h2_client::Transcoded::Whole(answer) => answer,
                h2_client::Transcoded::Stream(stream) => {
                    outcome.status = 200;
                    outcome.finish(&conn.state);
                    let mut block = Vec::with_capacity(96);
                    hpack::encode_status(&mut block, 200);
                    encode_field(
                        &mut block,
                        b"content-type",
                        stream.content_type().as_bytes(),
                        false,
                    );
                    encode_field(&mut block, b"cache-control", b"no-cache", false);
                    for (name, value) in stream.headers().iter().chain(&routed.response_extra) {
                        encode_field(
                            &mut block,
                            name.as_str().as_bytes(),
                            value.as_bytes(),
                            false,
                        );
                    }
                    add_request_id(&mut block, &request_id);
                    let body = ReplyBody::Upstream(UpstreamBody::Transcoded(stream));
                    return Reply { block, body };
                }
            };
            // The policies' response headers (CORS, RateLimit) go on its answers too.
            return local_with(
                &conn,
                answer,
                Some(request_id),
                outcome,
                (is_head, false),
                &routed.response_extra,
            );
        }
        // Tries, as on the HTTP/1 front end: a request whose body is kept (or that has none),
        // on another endpoint each.
        let retry = routed.rule.retry();
        let whole = body.is_none() || kept.is_some();
        let resendable = h1::Tries::resendable(retry, whole, idempotent);
        let start = (routed.endpoint, routed.dispatch.take());
        let mut tries = h1::Tries::new(retry, upstream, resendable, start);
        if upstream.is_multiplexed() {
            let sent = loop {
                let permit = tries.permit(upstream);
                let asked = Asked {
                    retry_on: h1::Tries::retry_on(retry, &permit),
                    ..asked
                };
                // A kept body is sent again on each try.
                let body = match &kept {
                    Some(kept) => Some(Limited::kept(kept.clone())),
                    None => body.take(),
                };
                let sent = multiplexed::exchange(
                    &upstream.endpoints()[tries.at],
                    upstream,
                    &head,
                    body,
                    framing,
                    asked,
                    multiplexed::Call { grpc, deadline },
                )
                .await;
                let after = (upstream, &mut outcome);
                if let Some(sent) = tries.after(retry, sent, permit, after).await {
                    break sent;
                }
            };
            let at = tries.at;
            drop(tries);

            let endpoint = &upstream.endpoints()[at];
            outcome.upstream = Some((upstream.clone(), at));
            let error = match sent {
                Ok(answered) => {
                    outcome.status = answered.status;
                    outcome.finish(&conn.state);
                    let mut block = answered.block;
                    add_request_id(&mut block, &request_id);
                    let body = match answered.body {
                        Some(body) => ReplyBody::Upstream(UpstreamBody::Http2(body)),
                        None => ReplyBody::Empty,
                    };
                    return Reply { block, body };
                }
                Err(failure) => failure_error(failure, upstream, endpoint),
            };
            return local(
                &conn,
                Local::Error(error),
                Some(request_id),
                outcome,
                is_head,
                grpc,
            );
        }
        // A kept body goes with the head, on every try.
        let framing = match whole_request {
            Some(whole) => {
                head = whole;
                body = None;
                h1::Framing::Empty
            }
            None => framing,
        };
        let replayable = body.is_none() && idempotent;
        let sent = loop {
            let permit = tries.permit(upstream);
            let asked = Asked {
                retry_on: h1::Tries::retry_on(retry, &permit),
                ..asked
            };
            let sent = upstream::exchange(
                &upstream.endpoints()[tries.at],
                upstream,
                &head,
                (body.take(), framing),
                replayable,
                asked,
                deadline,
                &mut outcome,
            )
            .await;
            if let Some(sent) = tries
                .after(retry, sent, permit, (upstream, &mut outcome))
                .await
            {
                break sent;
            }
        };
        let at = tries.at;
        drop(tries);
        let endpoint = &upstream.endpoints()[at];
        outcome.upstream = Some((upstream.clone(), at));
        let error = match sent {
            Ok((mut block, parsed, body)) => {
                outcome.status = parsed.status;
                outcome.finish(&conn.state);
                add_request_id(&mut block, &request_id);
                let body = if body.is_end_stream() {
                    ReplyBody::Empty
                } else {
                    ReplyBody::Upstream(UpstreamBody::Http1(body))
                };
                return Reply { block, body };
            }
            Err(failure) => failure_error(failure, upstream, endpoint),
        };
        let answer = Local::Error(error);
        local(&conn, answer, Some(request_id), outcome, is_head, grpc)
    }))
}

/// A transcoded request: its whole body (up to the largest gRPC message), then the call; or,
/// for a client stream sent as NDJSON, the call at once, its lines sent as they come.
async fn transcode(
    transcoder: &crate::transcode::Transcoder,
    endpoint: &crate::table::Endpoint,
    upstream: &crate::table::Upstream,
    (head, body): (&[u8], Option<Limited>),
    deadline: Option<Instant>,
    call: &mut Option<crate::pipeline::outcome::GrpcCall>,
) -> h2_client::Transcoded {
    use h2_client::{Refused, Transcoded::Whole, transcoded};
    use http_body_util::BodyExt as _;

    let refused = |refused: Refused| match refused {
        Refused::Client(answer) => Whole(answer),
        Refused::Exchange(error) => Whole(Local::TranscodedError(failure_error(
            error.into(),
            upstream,
            endpoint,
        ))),
    };
    let prepared = transcoded::prepare(transcoder, endpoint, head);
    let prepared = match prepared {
        Ok(prepared)
            if prepared.streams_request() && body.as_ref().is_some_and(|b| !b.is_end_stream()) =>
        {
            let Some(body) = body else {
                return Whole(Local::TranscodedError(ProxyError::Malformed {
                    reason: "the request body was cut short",
                }));
            };
            return streamed(prepared, (endpoint, upstream), body, deadline, call)
                .await
                .unwrap_or_else(refused);
        }
        prepared => prepared,
    };
    let body = match body {
        None => Bytes::new(),
        Some(body) => match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if Limited::caused(&*error) => {
                return Whole(Local::TranscodedError(ProxyError::BodyTooLarge));
            }
            Err(_) => {
                return Whole(Local::TranscodedError(ProxyError::Malformed {
                    reason: "the request body was cut short",
                }));
            }
        },
    };
    if body.len() > crate::transcode::grpc::MAX_MESSAGE {
        return Whole(Local::TranscodedError(ProxyError::BodyTooLarge));
    }
    let called = match prepared {
        Ok(prepared) => {
            transcoded::call(prepared, (endpoint, upstream), &body, deadline, call).await
        }
        Err(refusal) => Err(refusal),
    };
    called.unwrap_or_else(refused)
}

/// A client stream sent as NDJSON: the call opened at once, the body's lines sent on their own
/// task as they come (the replies may flow before the body ends), the answer returned as soon
/// as it begins. A line the method cannot take before any answer is the client's 400.
async fn streamed(
    prepared: h2_client::transcoded::Prepared<'_>,
    to: (&crate::table::Endpoint, &crate::table::Upstream),
    body: Limited,
    deadline: Option<Instant>,
    call: &mut Option<crate::pipeline::outcome::GrpcCall>,
) -> Result<h2_client::Transcoded, h2_client::Refused> {
    let (requests, pending) = h2_client::transcoded::call_streaming(prepared, to, deadline).await?;
    let (stopped, mut why) = tokio::sync::oneshot::channel();
    tokio::spawn(pump(body, requests, stopped));
    let (grpc, answer) = pending.answer().await;
    *call = Some(grpc);
    // The pump reports before it resets the call, so a call that failed for a bad line finds
    // the line's error here.
    if let Err(h2_client::Refused::Exchange(_)) = &answer
        && let Some(local) = why
            .try_recv()
            .ok()
            .and_then(|error| h2_client::transcoded::stream_refused(&error))
    {
        return Err(h2_client::Refused::Client(local));
    }
    answer
}

/// Sends a streamed request's body, a message a line; on an error, reports it on `stopped`
/// and then resets the call.
async fn pump(
    mut body: Limited,
    mut requests: h2_client::Requests,
    stopped: tokio::sync::oneshot::Sender<h2_client::StreamError>,
) {
    use h2_client::StreamError;
    use http_body_util::BodyExt as _;

    let sent = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| {
                if Limited::caused(&*error) {
                    StreamError::BodyTooLarge
                } else {
                    StreamError::Body("the request body was cut short")
                }
            })?;
            if let Ok(data) = frame.into_data() {
                requests.push(&data).await?;
            }
        }
        requests.finish().await
    }
    .await;
    if let Err(error) = sent {
        tracing::debug!(error = %crate::pipeline::Chain(&error), "a streamed request stopped");
        let _ = stopped.send(error);
        requests.abandon();
    }
}

/// The HTTP/1.1 request of `head` with its whole `body`: as it is under a Content-Length; in
/// one chunk and the last under the chunked framing the head declares.
fn with_body(head: &[u8], body: &[u8], framing: h1::Framing) -> Vec<u8> {
    let mut whole = Vec::with_capacity(head.len() + body.len() + 16);
    whole.extend_from_slice(head);
    if framing == h1::Framing::Chunked {
        if !body.is_empty() {
            whole.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            whole.extend_from_slice(body);
            whole.extend_from_slice(b"\r\n");
        }
        whole.extend_from_slice(b"0\r\n\r\n");
    } else {
        whole.extend_from_slice(body);
    }
    whole
}

/// The error to answer a failed exchange with.
fn failure_error(
    failure: h1::Failure,
    upstream: &crate::table::Upstream,
    endpoint: &crate::table::Endpoint,
) -> ProxyError {
    match failure.into_error(upstream, endpoint) {
        Ok(error) => error,
        // The client's body broke off: no answer can mean anything to it any more.
        Err(cut) => {
            tracing::debug!(error = %crate::pipeline::Chain(&cut), "request body cut short");
            ProxyError::Malformed {
                reason: "the request body was cut short",
            }
        }
    }
}

/// The gateway's own answer: to a gRPC call (`grpc`), errors are gRPC statuses.
fn local(
    conn: &Connection,
    answer: Local,
    request_id: Option<RequestId>,
    outcome: Outcome,
    is_head: bool,
    grpc: bool,
) -> Reply {
    local_with(conn, answer, request_id, outcome, (is_head, grpc), &[])
}

/// [`local`], with `extra` headers besides the answer's own.
fn local_with(
    conn: &Connection,
    answer: Local,
    request_id: Option<RequestId>,
    mut outcome: Outcome,
    (is_head, grpc): (bool, bool),
    extra: &[(http::HeaderName, http::HeaderValue)],
) -> Reply {
    let request_id = request_id.unwrap_or_else(RequestId::new);
    if let Some(error) = answer.error() {
        record(&conn.state, error, &request_id);
    }
    outcome.error = answer.code();
    let answer = if grpc {
        answer.into_grpc_response(request_id.as_bytes())
    } else {
        answer.into_response(request_id.as_bytes())
    };
    outcome.status = answer.status.as_u16();
    outcome.finish(&conn.state);
    let mut block = Vec::with_capacity(128);
    hpack::encode_status(&mut block, answer.status.as_u16());
    for (name, value) in answer.headers.iter().chain(extra) {
        encode_field(
            &mut block,
            name.as_str().as_bytes(),
            value.as_bytes(),
            false,
        );
    }
    let mut digits = [0u8; 20];
    let length = h1::decimal(answer.body.len() as u64, &mut digits);
    encode_field(&mut block, b"content-length", length, false);
    add_request_id(&mut block, &request_id);
    let body = if answer.body.is_empty() || is_head {
        ReplyBody::Empty
    } else {
        ReplyBody::Local(answer.body)
    };
    Reply { block, body }
}

/// Never indexed: a value unique to each response would only churn the client's table.
fn add_request_id(block: &mut Vec<u8>, request_id: &RequestId) {
    encode_field(block, b"x-request-id", request_id.as_bytes(), true);
}

/// The upstream's response head, encoded field by field as it is rewritten.
struct HpackFields<'b>(&'b mut Vec<u8>);

impl h1::FieldSink for HpackFields<'_> {
    fn status(&mut self, status: u16) {
        hpack::encode_status(self.0, status);
    }

    fn field(&mut self, name: &str, value: &[u8]) {
        let name = name.as_bytes();
        if !name.iter().any(u8::is_ascii_uppercase) {
            return encode_field(self.0, name, value, false);
        }
        // Upstreams often send `Content-Type`: lowered on the stack, not in an allocation.
        let mut lower = [0u8; 64];
        match lower.get_mut(..name.len()) {
            Some(buf) => {
                buf.copy_from_slice(name);
                buf.make_ascii_lowercase();
                encode_field(self.0, buf, value, false);
            }
            None => encode_field(self.0, &name.to_ascii_lowercase(), value, false),
        }
    }
}

#[cfg(test)]
mod tests;

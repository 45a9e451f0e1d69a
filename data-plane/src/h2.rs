//! The HTTP/2 front end (hyper): each stream's request goes through the one pipeline
//! ([`crate::pipeline`]); this module only moves between hyper's types and the pipeline's, and
//! forwards over the pooled HTTP/1.1 client.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::time::Instant;

use self::{limited::Limited, upstream::UpstreamResponse};
use crate::{
    h1::{self, Asked, BodyFrom, Line, Target},
    pipeline::{
        Connection, Local, Outcome, ProxyError, headers::X_REQUEST_ID, record,
        request_id::RequestId,
    },
};

mod limited;
mod upstream;

/// The body of every response: the upstream's, streamed, or a small one of our own.
pub(crate) type ProxyBody = Either<UpstreamResponse, Full<Bytes>>;

/// Handles one request. Never fails: errors become JSON responses.
pub(crate) async fn handle(
    conn: Arc<Connection>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let mut outcome = Outcome::start(Instant::now());
    let (response, request_id) = forward(&conn, req, &mut outcome).await;
    let mut response = match response {
        Ok(response) => response,
        Err(local) => {
            if let Local::Error(error) = &local {
                record(&conn.state, error, &request_id);
            }
            outcome.error = local.code();
            local_response(local, request_id.as_bytes())
        }
    };
    outcome.status = response.status().as_u16();
    outcome.finish(&conn.state);
    if let Ok(mut id) = HeaderValue::from_bytes(request_id.as_bytes()) {
        // Never indexed: a value unique to each response would only churn the client's HPACK
        // table (and cost a search of it per response).
        id.set_sensitive(true);
        response.headers_mut().insert(&X_REQUEST_ID, id);
    }
    Ok(response)
}

/// A header of a map as an HTTP/1 header line.
fn as_line<'h>((name, value): (&'h http::HeaderName, &'h HeaderValue)) -> httparse::Header<'h> {
    httparse::Header {
        name: name.as_str(),
        value: value.as_bytes(),
    }
}

/// The gateway's own answer as a hyper response.
fn local_response(local: Local, request_id: &[u8]) -> Response<ProxyBody> {
    let local = local.into_response(request_id);
    let mut response = Response::new(Either::Right(Full::new(local.body)));
    *response.status_mut() = local.status;
    let headers = response.headers_mut();
    for (name, value) in local.headers {
        headers.append(name, value);
    }
    response
}

/// The request through the pipeline and to its upstream; the response, or the gateway's
/// answer, with the request id either way.
async fn forward(
    conn: &Connection,
    req: Request<Incoming>,
    outcome: &mut Outcome,
) -> (Result<Response<ProxyBody>, Local>, RequestId) {
    let new_id = RequestId::new;

    let Some(_admitted) = conn.state.admit() else {
        return (Err(Local::Error(ProxyError::Overloaded)), new_id());
    };
    let (parts, body) = req.into_parts();
    if parts.method == http::Method::CONNECT {
        let error = ProxyError::Malformed {
            reason: "CONNECT is not supported",
        };
        return (Err(Local::Error(error)), new_id());
    }
    // The same checks, pipeline and upstream head as an HTTP/1 request: the header map seen
    // as header lines, `:authority` as an absolute-form target's authority.
    let mut on_stack = [httparse::EMPTY_HEADER; 32];
    let mut on_heap = Vec::new();
    let lines: &mut [httparse::Header<'_>] = if parts.headers.len() <= on_stack.len() {
        for (slot, header) in on_stack.iter_mut().zip(&parts.headers) {
            *slot = as_line(header);
        }
        &mut on_stack[..parts.headers.len()]
    } else {
        on_heap.extend(parts.headers.iter().map(as_line));
        &mut on_heap
    };
    let line = Line {
        method: parts.method.as_str(),
        target: Target {
            path_and_query: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            authority: parts.uri.authority().map(|a| a.as_str().as_bytes()),
        },
        http10: false,
        body: BodyFrom::Stream {
            ended: body.is_end_stream(),
        },
    };
    let mut head = Vec::with_capacity(512);
    let request = match h1::prepare(conn, line, lines, &mut head) {
        Ok(request) => request,
        Err(error) => return (Err(Local::Error(error)), new_id()),
    };
    let request_id = request.request_id;
    let routed = match request.route {
        Ok(routed) => routed,
        Err((local, rule)) => {
            outcome.rule = rule;
            return (Err(local), request_id);
        }
    };
    outcome.rule = Some(routed.rule.clone());
    outcome.upstream = Some((routed.upstream.clone(), routed.endpoint));
    let upstream = &routed.upstream;
    let endpoint = &upstream.endpoints()[routed.endpoint];
    let asked = Asked {
        is_head: request.is_head,
        http10: false,
        keep_alive: true,
        request_id: &request_id,
        edits: &routed.rule.filters().response,
        extra: &routed.response_extra,
    };
    let body = Limited::new(body, routed.body_limit);
    // Boxed: the exchange is most of this future, which hyper moves into a task per stream.
    let sent = Box::pin(upstream::exchange(
        endpoint,
        upstream,
        &head,
        body,
        request.framing,
        request.replayable,
        asked,
        outcome,
    ))
    .await;
    let result = match sent {
        Ok((headers, parsed, body)) => {
            let mut response = Response::new(Either::Left(body));
            *response.status_mut() =
                StatusCode::from_u16(parsed.status).unwrap_or(StatusCode::BAD_GATEWAY);
            *response.headers_mut() = headers;
            Ok(response)
        }
        Err(failure) => match failure.into_error(upstream, endpoint) {
            Ok(error) => Err(Local::Error(error)),
            // The client's body broke off: no answer can mean anything to it any more.
            Err(cut) => {
                tracing::debug!(error = %crate::pipeline::Chain(&cut), "request body cut short");
                Err(Local::Error(ProxyError::Malformed {
                    reason: "the request body was cut short",
                }))
            }
        },
    };
    (result, request_id)
}

#[cfg(test)]
mod tests;

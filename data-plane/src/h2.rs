//! The HTTP/2 front end (hyper): each stream's request goes through the one pipeline
//! ([`crate::pipeline`]); this module only moves between hyper's types and the pipeline's, and
//! forwards over the pooled HTTP/1.1 client.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{
    HeaderValue, Request, Response, Uri, Version,
    header::{CONTENT_LENGTH, HOST},
    uri::{PathAndQuery, Scheme},
};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;

use crate::{
    pipeline::{
        self, Connection, Decision, Head, Local, Outcome, ProxyError, headers, record, request_id,
    },
    side::UpstreamBody,
    state::UnderscoreHeaders,
};

mod limited;

use self::limited::Limited;

/// The body of every response: the upstream's, streamed, or a small one of our own.
pub(crate) type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Handles one request. Never fails: errors become JSON responses.
pub(crate) async fn handle(
    conn: Arc<Connection>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let request_id = match req.headers().get(&headers::X_REQUEST_ID) {
        Some(id) if conn.trusted && !id.is_empty() => id.clone(),
        _ => request_id::generate(),
    };
    let mut outcome = Outcome::start(tokio::time::Instant::now());
    let mut response = match forward(&conn, req, &request_id, &mut outcome).await {
        Ok(response) => response,
        Err(local) => {
            if let Local::Error(error) = &local {
                let id = String::from_utf8_lossy(request_id.as_bytes());
                record(&conn.state, error, &id);
            }
            outcome.error = local.code();
            local_response(local, &request_id)
        }
    };
    outcome.status = response.status().as_u16();
    outcome.finish(&conn.state);
    response
        .headers_mut()
        .insert(&headers::X_REQUEST_ID, request_id);
    Ok(response)
}

/// The gateway's own answer as a hyper response.
fn local_response(local: Local, request_id: &HeaderValue) -> Response<ProxyBody> {
    let local = local.into_response(request_id.as_bytes());
    let mut response = Response::new(Either::Right(Full::new(local.body)));
    *response.status_mut() = local.status;
    let headers = response.headers_mut();
    for (name, value) in local.headers {
        headers.append(name, value);
    }
    response
}

async fn forward(
    conn: &Connection,
    req: Request<Incoming>,
    request_id: &HeaderValue,
    outcome: &mut Outcome,
) -> Result<Response<ProxyBody>, Local> {
    let Some(_admitted) = conn.state.admit() else {
        return Err(Local::Error(ProxyError::Overloaded));
    };
    let (mut parts, body) = req.into_parts();
    strip_underscores(&mut parts.headers, conn.state.settings().underscore_headers)?;
    let content_length = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let decision = pipeline::decide(
        conn,
        &Head {
            method: &parts.method,
            host: raw_host(&parts),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            content_length,
        },
    );
    let forward = match decision {
        Decision::Forward(forward) => forward,
        Decision::Respond(local, rule) => {
            outcome.rule = rule;
            return Err(local);
        }
    };
    let upstream = forward.upstream.clone();
    let authority = upstream.endpoints()[forward.endpoint].authority().clone();
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{}?{query}", forward.path),
        None => forward.path.clone().into_owned(),
    };
    let path_and_query = PathAndQuery::try_from(path_and_query)
        .map_err(|e| Local::Error(ProxyError::BadRequest { source: e.into() }))?;
    let body_limit = forward.body_limit;
    let rewritten_host = forward.host.clone();
    let rule = forward.rule.clone();
    let response_extra = forward.response_extra;
    outcome.rule = Some(rule.clone());
    outcome.upstream = Some((upstream.clone(), forward.endpoint));

    // The upstream URI: http://<endpoint><path?query>.
    let client_authority = parts.uri.authority().cloned();
    parts.uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| Local::Error(ProxyError::BadRequest { source: e }))?;
    parts.version = Version::HTTP_11;

    headers::strip_hop_by_hop(&mut parts.headers);
    // HTTP/2 clients name the host in :authority; HTTP/1.1 upstreams expect it in Host.
    let host = match parts.headers.get(HOST) {
        Some(host) => Some(host.clone()),
        None => {
            let host = client_authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok());
            if let Some(host) = &host {
                parts.headers.insert(HOST, host.clone());
            }
            host
        }
    };
    headers::set_forwarded(
        &mut parts.headers,
        &conn.peer_ip,
        conn.trusted,
        host,
        request_id,
    );
    if let Some(host) = rewritten_host {
        parts.headers.insert(HOST, host);
    }
    rule.filters().request.apply(&mut parts.headers);

    let timeout = upstream.timeout();
    let body: UpstreamBody = Limited::new(body, body_limit).boxed();
    let sent = upstream.client().request(Request::from_parts(parts, body));
    let response = match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) if Limited::caused(&error) => {
            return Err(Local::Error(ProxyError::BodyTooLarge));
        }
        Ok(Err(error)) => {
            return Err(Local::Error(ProxyError::upstream(
                upstream.name().clone(),
                authority.as_str(),
                error,
            )));
        }
        Err(_) => {
            return Err(Local::Error(ProxyError::UpstreamTimeout {
                upstream: upstream.name().clone(),
                endpoint: authority.as_str().into(),
                timeout,
            }));
        }
    };
    let (mut parts, body) = response.into_parts();
    // The client's connection keeps its own version (an HTTP/1.0 upstream must not turn a
    // keep-alive HTTP/1.1 client connection into a one-shot one).
    parts.version = Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(&headers::X_REQUEST_ID);
    // The response phase.
    rule.filters().response.apply(&mut parts.headers);
    for (name, value) in response_extra {
        parts.headers.append(name, value);
    }
    Ok(Response::from_parts(parts, Either::Left(body)))
}

/// Applies the underscore setting to a header map.
fn strip_underscores(
    headers: &mut http::HeaderMap,
    setting: UnderscoreHeaders,
) -> Result<(), Local> {
    if setting == UnderscoreHeaders::Allow || !headers.keys().any(|n| n.as_str().contains('_')) {
        return Ok(());
    }
    if setting == UnderscoreHeaders::Reject {
        return Err(Local::Error(ProxyError::UnderscoreHeader));
    }
    let names: Vec<_> = headers
        .keys()
        .filter(|n| n.as_str().contains('_'))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
    Ok(())
}

/// The host the client named: the Host header, else the URI's authority (HTTP/2, or an
/// absolute-form HTTP/1.1 request).
fn raw_host(parts: &http::request::Parts) -> Option<&str> {
    match parts.uri.authority() {
        Some(authority) if parts.version == Version::HTTP_2 => Some(authority.as_str()),
        _ => parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str())),
    }
}

#[cfg(test)]
mod tests;

//! The request pipeline: load the table once, match, pick an upstream endpoint, rewrite the
//! request for the hop, forward it on the pooled client, and stream the response back. Every
//! failure becomes a [`ProxyError`], turned into a response in one place.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{
    HeaderValue, Request, Response, Uri, Version,
    header::HOST,
    uri::{PathAndQuery, Scheme},
};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::{
    state::State,
    table::{RequestHeaders, RequestView},
};

mod error;
mod headers;
pub(crate) mod request_id;

pub use self::error::{BoxError, ProxyError};
pub(crate) use self::{
    error::{Chain, error_body, record},
    headers::HOP_BY_HOP,
};

/// The body of every response: the upstream's, streamed, or a small one of our own.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// What the pipeline knows about one client connection.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) state: Arc<State>,
    pub(crate) peer_ip: HeaderValue,
    pub(crate) trusted: bool,
}

// === impl Connection ===

impl Connection {
    pub(crate) fn new(state: Arc<State>, peer: SocketAddr) -> Self {
        let ip = match peer.ip() {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        let trusted = state.trusted_peers().contains(ip);
        // An IP address always makes a valid header value.
        let peer_ip = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            state,
            peer_ip,
            trusted,
        }
    }
}

/// Handles one request. Never fails: errors become JSON responses.
pub(crate) async fn handle(
    conn: Arc<Connection>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let request_id = match req.headers().get(&headers::X_REQUEST_ID) {
        Some(id) if conn.trusted && !id.is_empty() => id.clone(),
        _ => request_id::generate(),
    };
    let mut response = match forward(&conn, req, &request_id).await {
        Ok(response) => response,
        Err(error) => {
            let id = String::from_utf8_lossy(request_id.as_bytes());
            error::record(&conn.state, &error, &id);
            error::respond(&error, &request_id)
        }
    };
    conn.state.metrics().response(response.status());
    response
        .headers_mut()
        .insert(&headers::X_REQUEST_ID, request_id);
    Ok(response)
}

/// The upstream and endpoint chosen for a request.
#[derive(Debug)]
pub(crate) struct Choice {
    pub(crate) upstream: Arc<crate::table::Upstream>,
    pub(crate) endpoint: usize,
}

/// Matches a request against the current table and picks an endpoint. Synchronous, so that
/// the table's guard is never held across an `.await`.
pub(crate) fn choose(
    state: &State,
    raw_host: Option<&str>,
    path: &str,
    query: Option<&str>,
    method: &http::Method,
    headers: &dyn RequestHeaders,
) -> Result<Choice, ProxyError> {
    let guard = state.load();
    let table = guard.as_ref().ok_or(ProxyError::NotReady)?;
    let mut buf = [0u8; 256];
    let host = if table.uses_hosts() {
        raw_host.and_then(|h| normalize_host(h, &mut buf))
    } else {
        None
    };
    let view = RequestView {
        host,
        path,
        query,
        method,
        headers,
    };
    let rule = table.route(&view).ok_or(ProxyError::RouteNotFound)?;
    let upstream = rule.upstream();
    let endpoint = upstream
        .pick()
        .ok_or_else(|| ProxyError::NoHealthyUpstream {
            upstream: upstream.name().clone(),
        })?;
    Ok(Choice {
        upstream: upstream.clone(),
        endpoint,
    })
}

async fn forward(
    conn: &Connection,
    req: Request<Incoming>,
    request_id: &HeaderValue,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let Choice { upstream, endpoint } = choose(
        &conn.state,
        raw_host(&parts),
        parts.uri.path(),
        parts.uri.query(),
        &parts.method,
        &parts.headers,
    )?;
    let authority = upstream.endpoints()[endpoint].authority();

    // The upstream URI: http://<endpoint><path?query>.
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    let client_authority = uri.authority.take();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority.clone());
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    parts.uri = Uri::from_parts(uri).map_err(|e| ProxyError::BadRequest { source: e.into() })?;
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

    let timeout = upstream.timeout();
    let sent = upstream.client().request(Request::from_parts(parts, body));
    let response = match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            return Err(ProxyError::upstream(
                upstream.name().clone(),
                authority.as_str(),
                error,
            ));
        }
        Err(_) => {
            return Err(ProxyError::UpstreamTimeout {
                upstream: upstream.name().clone(),
                endpoint: authority.as_str().into(),
                timeout,
            });
        }
    };
    let (mut parts, body) = response.into_parts();
    // The client's connection keeps its own version (an HTTP/1.0 upstream must not turn a
    // keep-alive HTTP/1.1 client connection into a one-shot one).
    parts.version = Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Either::Left(body)))
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

/// The host without port or trailing dot, lower-cased into `buf`; `None` if it does not fit.
pub(crate) fn normalize_host<'b>(raw: &str, buf: &'b mut [u8; 256]) -> Option<&'b str> {
    let host = if raw.starts_with('[') {
        // An IPv6 literal: "[::1]:8080".
        raw.find(']').map_or(raw, |end| &raw[..=end])
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let out = buf.get_mut(..host.len())?;
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;

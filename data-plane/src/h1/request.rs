//! The request head: parsed, checked against HTTP/1.1's framing rules, routed, and rewritten
//! into the head sent upstream, all while it is borrowed from the read buffer (nothing is
//! copied into a header map).

use std::{mem::MaybeUninit, sync::Arc};

use http::{HeaderName, HeaderValue, Method};

use super::{
    body::Framing,
    head::{ConnectionOptions, is, parse_length, write_content_length, write_header},
};
use crate::{
    limits::{MAX_HEADER_BYTES, MAX_HEADERS},
    pipeline::{
        self, Connection, Consult, Consulted, Decision, Forward, Head, Local, ProxyError,
        request_id::RequestId,
    },
    state::UnderscoreHeaders,
    table::{HeaderEdits, Rule, Upstream},
};

/// Where a routed request goes, once its head is written.
#[derive(Debug)]
pub(crate) struct Routed {
    pub(crate) rule: Arc<Rule>,
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) endpoint: usize,
    pub(crate) body_limit: u64,
    pub(crate) response_extra: Vec<(HeaderName, HeaderValue)>,
    /// Counted in flight at the endpoint until dropped, with the exchange.
    pub(crate) dispatch: Option<crate::table::balance::Dispatch>,
}

/// A parsed request, its head already written upstream-ready into the caller's buffer.
#[derive(Debug)]
pub(crate) struct Request {
    /// Bytes of the head in the read buffer.
    pub(crate) head_len: usize,
    pub(crate) framing: Framing,
    /// The client wants the connection kept open after this exchange.
    pub(crate) keep_alive: bool,
    pub http10: bool,
    pub(crate) is_head: bool,
    /// The client waits for `100 Continue` before it sends the body.
    pub(crate) expect_continue: bool,
    /// Safe to send again on a new connection if a reused one fails before answering: an
    /// idempotent method and no body.
    pub(crate) replayable: bool,
    /// The method is idempotent (RFC 9110 §9.2.2): with its body kept, the request may be
    /// sent again.
    pub(crate) idempotent: bool,
    /// The client asks to switch protocols (WebSocket and the like): the upstream gets the
    /// `Upgrade`, and a 101 joins the two connections.
    pub(crate) upgrade: bool,
    pub(crate) request_id: RequestId,
    pub(crate) route: Route,
}

/// Where a request goes, or the answer the gateway gives instead.
#[derive(Debug)]
pub(crate) enum Route {
    Forward(Routed),
    /// With the rule, if one matched.
    Respond(Local, Option<Arc<Rule>>),
    /// An auth service must be asked first; then the head is prepared again, [`Resumed`].
    Consult(Box<Consult>),
}

/// A request head prepared again once its auth service answered.
#[derive(Debug)]
pub(crate) struct Resumed {
    pub(crate) consulted: Consulted,
    /// The first preparation's id, which the auth service saw.
    pub(crate) request_id: RequestId,
}

/// What the header lines say, gathered in one pass.
#[derive(Default)]
struct Facts<'b> {
    length: Option<u64>,
    chunked: bool,
    transfer_encodings: usize,
    connection: ConnectionOptions<'b>,
    host: Option<&'b [u8]>,
    hosts: usize,
    expect: Option<&'b [u8]>,
    request_id: Option<&'b [u8]>,
    forwarded_for: usize,
    forwarded_proto: bool,
    forwarded_host: bool,
    upgrade: Option<&'b [u8]>,
}

/// Parses the head at the front of `buf`. `Ok(None)`: incomplete, read more. `Err`: the
/// request is unusable and the connection must close after the error response. On success
/// with a route, `out` holds the head to send upstream.
pub(crate) fn parse(
    buf: &[u8],
    conn: &Connection,
    out: &mut Vec<u8>,
    resumed: Option<Resumed>,
) -> Result<Option<Request>, ProxyError> {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEADER_BYTES => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEADER_BYTES => return Ok(None),
        Ok(_) => return Err(ProxyError::HeadTooLarge { limit: "64 KiB" }),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ProxyError::HeadTooLarge {
                limit: "128 header lines",
            });
        }
        Err(_) => {
            return Err(ProxyError::Malformed {
                reason: "invalid request head",
            });
        }
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(ProxyError::Malformed {
            reason: "incomplete request line",
        });
    };
    let line = Line {
        method,
        target: Target::parse(method, target)?,
        http10: version == 0,
        body: BodyFrom::Headers,
    };
    prepare(conn, line, req.headers, out, resumed).map(|prepared| {
        Some(Request {
            head_len,
            ..prepared
        })
    })
}

/// The request line, as a front end parsed it.
pub(crate) struct Line<'b> {
    pub(crate) method: &'b str,
    pub(crate) target: Target<'b>,
    pub(crate) http10: bool,
    pub(crate) body: BodyFrom,
}

/// Where a request's body framing comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyFrom {
    /// HTTP/1: Content-Length or Transfer-Encoding.
    Headers,
    /// HTTP/2: a Content-Length, else a stream that has ended (no body) or not (chunked
    /// upstream).
    Stream { ended: bool },
}

/// Checks a request head, runs the pipeline on it, and writes the head for the upstream into
/// `out` when it is forwarded. Shared by the HTTP/1 front end and the HTTP/2 one, whose
/// requests go to HTTP/1.1 upstreams the same way (`head_len` is left 0).
pub(crate) fn prepare<'b>(
    conn: &Connection,
    line: Line<'b>,
    headers: &mut [httparse::Header<'b>],
    out: &mut Vec<u8>,
    resumed: Option<Resumed>,
) -> Result<Request, ProxyError> {
    let Line {
        method,
        target,
        http10,
        body,
    } = line;
    let headers = strip_underscores(headers, conn.state.settings().underscore_headers)?;
    let facts = Facts::gather(headers)?;

    if !http10 && target.authority.is_none() {
        match facts.hosts {
            0 => {
                return Err(ProxyError::Malformed {
                    reason: "no host header",
                });
            }
            1 => {}
            _ => {
                return Err(ProxyError::Malformed {
                    reason: "several host headers",
                });
            }
        }
    }
    let framing = match (facts.chunked, facts.length) {
        (true, Some(_)) => {
            return Err(ProxyError::Malformed {
                reason: "both content-length and transfer-encoding",
            });
        }
        (true, None) if http10 => {
            return Err(ProxyError::Malformed {
                reason: "transfer-encoding in an HTTP/1.0 request",
            });
        }
        (true, None) => Framing::Chunked,
        (false, Some(0)) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => match body {
            BodyFrom::Stream { ended: false } => Framing::Chunked,
            BodyFrom::Headers | BodyFrom::Stream { ended: true } => Framing::Empty,
        },
    };
    let expect_continue = match facts.expect {
        None => false,
        Some(v) if v.eq_ignore_ascii_case(b"100-continue") => !http10 && framing != Framing::Empty,
        Some(_) => return Err(ProxyError::ExpectationFailed),
    };
    let keep_alive = !facts.connection.close && (!http10 || facts.connection.keep_alive);
    // An HTTP/1.1 request with no body that lists `upgrade` and names a protocol (not h2c,
    // which is this hop's own business) may switch protocols end to end.
    let upgrade = !http10
        && framing == Framing::Empty
        && facts.connection.upgrade
        && facts
            .upgrade
            .is_some_and(|p| !p.is_empty() && !p.trim_ascii().eq_ignore_ascii_case(b"h2c"));
    let (request_id, consulted) = match resumed {
        Some(resumed) => (resumed.request_id, Some(resumed.consulted)),
        None => match facts.request_id {
            Some(id) if conn.trusted && !id.is_empty() => (RequestId::Kept(id.into()), None),
            _ => (RequestId::new(), None),
        },
    };
    // The Host header, or the authority of an absolute-form target (which overrides it).
    let host = target.authority.or(facts.host);
    if host.is_some_and(|h| !valid_host(h)) {
        return Err(ProxyError::Malformed {
            reason: "invalid host",
        });
    }
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| ProxyError::Malformed {
        reason: "invalid method",
    })?;
    let head = Head {
        method: &method,
        host: host.and_then(|h| std::str::from_utf8(h).ok()),
        path: target.path(),
        query: target.query(),
        headers: &headers,
        content_length: facts.length,
    };
    let route = match pipeline::decide(conn, &head, consulted.as_ref()) {
        Decision::Forward(forward) => {
            // An HTTP/1.1 upstream needs one Host: the absolute-form target's authority, else
            // the client's Host, else (an HTTP/1.0 client sent none) the endpoint's address.
            let endpoint = &forward.upstream.endpoints()[forward.endpoint];
            let added_host = target
                .authority
                .or_else(|| (facts.hosts == 0).then(|| endpoint.address().as_bytes()));
            write_upstream_head(
                out,
                conn,
                &method,
                &target,
                headers,
                &facts,
                (host, added_host),
                (framing, upgrade),
                &request_id,
                &forward,
            );
            Route::Forward(Routed {
                rule: forward.rule,
                upstream: forward.upstream,
                endpoint: forward.endpoint,
                body_limit: forward.body_limit,
                response_extra: forward.response_extra,
                dispatch: forward.dispatch,
            })
        }
        Decision::Respond(local, rule) => Route::Respond(local, rule),
        Decision::Consult(consult) => Route::Consult(consult),
    };
    let idempotent = matches!(
        method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    Ok(Request {
        head_len: 0,
        framing,
        keep_alive,
        http10,
        is_head: method == Method::HEAD,
        expect_continue,
        upgrade,
        replayable: framing == Framing::Empty && idempotent,
        idempotent,
        request_id,
        route,
    })
}

// === impl Facts ===

impl<'b> Facts<'b> {
    fn gather(headers: &[httparse::Header<'b>]) -> Result<Self, ProxyError> {
        let mut facts = Self::default();
        for h in headers {
            let name = h.name;
            let value = h.value;
            if is(name, "content-length") {
                let n = parse_length(value).ok_or(ProxyError::Malformed {
                    reason: "invalid content-length",
                })?;
                if facts.length.is_some_and(|m| m != n) {
                    return Err(ProxyError::Malformed {
                        reason: "conflicting content-length headers",
                    });
                }
                facts.length = Some(n);
            } else if is(name, "transfer-encoding") {
                facts.transfer_encodings += 1;
                if facts.transfer_encodings > 1 {
                    return Err(ProxyError::Malformed {
                        reason: "several transfer-encoding headers",
                    });
                }
                if !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    return Err(ProxyError::UnsupportedTransferEncoding);
                }
                facts.chunked = true;
            } else if is(name, "connection") {
                facts.connection.add(value);
            } else if is(name, "host") {
                facts.hosts += 1;
                facts.host = Some(value);
            } else if is(name, "expect") {
                facts.expect = Some(value.trim_ascii());
            } else if is(name, "x-request-id") {
                facts.request_id = Some(value);
            } else if is(name, "x-forwarded-for") {
                facts.forwarded_for += 1;
            } else if is(name, "x-forwarded-proto") {
                facts.forwarded_proto = true;
            } else if is(name, "x-forwarded-host") {
                facts.forwarded_host = true;
            } else if is(name, "upgrade") {
                facts.upgrade = Some(value);
            }
        }
        Ok(facts)
    }
}

/// Applies the underscore setting: header lines whose names have an underscore are moved out
/// of the slice (keeping the others' order), or refuse the request.
fn strip_underscores<'h, 'b>(
    headers: &'h mut [httparse::Header<'b>],
    setting: UnderscoreHeaders,
) -> Result<&'h [httparse::Header<'b>], ProxyError> {
    if setting == UnderscoreHeaders::Allow || !headers.iter().any(|h| h.name.contains('_')) {
        return Ok(headers);
    }
    if setting == UnderscoreHeaders::Reject {
        return Err(ProxyError::UnderscoreHeader);
    }
    let mut kept = 0;
    for i in 0..headers.len() {
        if !headers[i].name.contains('_') {
            headers.swap(kept, i);
            kept += 1;
        }
    }
    Ok(&headers[..kept])
}

/// `uri-host [":" port]` (RFC 9112 section 3.2), loosely: the characters of a registered
/// name, an IP literal and a port, so no whitespace, slash, userinfo or other delimiter.
fn valid_host(host: &[u8]) -> bool {
    host.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(&b))
}

/// The request target, as the upstream will see it.
pub(crate) struct Target<'b> {
    /// Path and query in origin form.
    pub(crate) path_and_query: &'b str,
    /// The authority of an absolute-form target (HTTP/2: `:authority`), which wins over Host.
    pub(crate) authority: Option<&'b [u8]>,
}

// === impl Target ===

impl<'b> Target<'b> {
    fn parse(method: &str, target: &'b str) -> Result<Self, ProxyError> {
        if method == "CONNECT" {
            return Err(ProxyError::Malformed {
                reason: "CONNECT is not supported",
            });
        }
        if target.starts_with('/') || (target == "*" && method == "OPTIONS") {
            return Ok(Self {
                path_and_query: target,
                authority: None,
            });
        }
        let rest = strip_prefix_ignore_case(target, "http://")
            .or_else(|| strip_prefix_ignore_case(target, "https://"))
            .ok_or(ProxyError::Malformed {
                reason: "invalid request target",
            })?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(end);
        if authority.is_empty() || authority.contains('@') {
            return Err(ProxyError::Malformed {
                reason: "invalid request target authority",
            });
        }
        Ok(Self {
            path_and_query,
            authority: Some(authority.as_bytes()),
        })
    }

    fn path(&self) -> &'b str {
        let pq = self.path_and_query;
        let path = pq.split_once('?').map_or(pq, |(path, _)| path);
        if path.is_empty() { "/" } else { path }
    }

    fn query(&self) -> Option<&'b str> {
        self.path_and_query.split_once('?').map(|(_, query)| query)
    }
}

fn strip_prefix_ignore_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Request headers that never cross the hop (RFC 9110 7.6.1), or that we write ourselves.
fn dropped(name: &str, trusted: bool, replaced_host: bool, facts: &Facts<'_>) -> bool {
    facts.connection.drops(name)
        || is(name, "content-length")
        || is(name, "expect")
        || is(name, "x-request-id")
        || is(name, "x-forwarded-for")
        || (!trusted && (is(name, "x-forwarded-proto") || is(name, "x-forwarded-host")))
        || (replaced_host && is(name, "host"))
}

/// `?query`, without the parameters named in `drop` (credentials a policy consumed); nothing
/// when none is left.
fn write_query(out: &mut Vec<u8>, query: &str, drop: &[Box<str>]) {
    if drop.is_empty() {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
        return;
    }
    let mut first = true;
    for pair in query.split('&') {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        if drop.iter().any(|d| **d == *name) {
            continue;
        }
        out.push(if first { b'?' } else { b'&' });
        first = false;
        out.extend_from_slice(pair.as_bytes());
    }
}

#[allow(clippy::too_many_arguments)]
fn write_upstream_head(
    out: &mut Vec<u8>,
    conn: &Connection,
    method: &Method,
    target: &Target<'_>,
    headers: &[httparse::Header<'_>],
    facts: &Facts<'_>,
    (host, added_host): (Option<&[u8]>, Option<&[u8]>),
    (framing, upgrade): (Framing, bool),
    request_id: &RequestId,
    forward: &Forward<'_>,
) {
    let edits: &HeaderEdits = forward.request_edits();
    let policies = forward.rule.policies();
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(forward.path.as_bytes());
    if let Some(query) = target.query() {
        write_query(out, query, &policies.drop_query);
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let rewritten_host = forward.host.as_ref();
    if let Some(host) = rewritten_host {
        write_header(out, "host", host.as_bytes());
    } else if let Some(host) = added_host {
        write_header(out, "host", host);
    }
    // The client's Host goes when it is replaced: by the target's authority, or a rewrite.
    let replaced_host = target.authority.is_some() || rewritten_host.is_some();
    for h in headers {
        if !dropped(h.name, conn.trusted, replaced_host, facts)
            && !edits.drops(h.name)
            && !policies.drops(h.name)
        {
            write_header(out, h.name, h.value);
        }
    }
    // Our forwarding headers, unless a header modifier of the route replaces them.
    // X-Forwarded-For: a trusted peer's chain with the peer appended, else the peer alone.
    if !edits.drops("x-forwarded-for") {
        out.extend_from_slice(b"x-forwarded-for: ");
        if conn.trusted && facts.forwarded_for > 0 {
            for h in headers.iter().filter(|h| is(h.name, "x-forwarded-for")) {
                out.extend_from_slice(h.value);
                out.extend_from_slice(b", ");
            }
        }
        out.extend_from_slice(conn.peer_ip.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let keep_theirs = |sent: bool| conn.trusted && sent;
    if !(keep_theirs(facts.forwarded_proto) || edits.drops("x-forwarded-proto")) {
        out.extend_from_slice(if conn.tls {
            b"x-forwarded-proto: https\r\n"
        } else {
            b"x-forwarded-proto: http\r\n"
        });
    }
    if !(keep_theirs(facts.forwarded_host) || edits.drops("x-forwarded-host"))
        && let Some(host) = host
    {
        write_header(out, "x-forwarded-host", host);
    }
    write_header(out, "x-request-id", request_id.as_bytes());
    for (name, value) in &forward.request_extra {
        write_header(out, name.as_str(), value.as_bytes());
    }
    for (name, value) in edits.appended() {
        write_header(out, name.as_str(), value.as_bytes());
    }
    match framing {
        Framing::Length(n) => write_content_length(out, n),
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty if facts.length == Some(0) => {
            out.extend_from_slice(b"content-length: 0\r\n")
        }
        Framing::Empty | Framing::UntilClose => {}
    }
    if upgrade && let Some(protocol) = facts.upgrade {
        // Hop-by-hop, so dropped above: asked for again on this hop.
        out.extend_from_slice(b"connection: upgrade\r\n");
        write_header(out, "upgrade", protocol);
    }
    out.extend_from_slice(b"\r\n");
}

//! The request pipeline, written once for every protocol front end (HTTP/1.1 on our own loop,
//! HTTP/2 on hyper; TLS and gRPC next). A front end turns bytes into a [`Head`], asks
//! [`decide`] what to do with it, and carries out the answer with its own framing:
//!
//! ```text
//! normalise path → match (route + rule kept) → policies (in `Phase` order)
//!   → filters (redirect, rewrite, header edits) → pick endpoint → [front end forwards]
//!   → response edits (the rule's, and CORS headers) → one [`Outcome`] per request
//! ```
//!
//! The pipeline never waits: a policy that needs another service's answer (`externalAuth`)
//! stops it with a question the front end asks ([`consult`]), and the front end runs it
//! again with the answer.
//!
//! A rule without filters or policies skips the middle entirely: the HTTP/1 fast path costs a
//! normalisation scan, a route lookup and an endpoint pick.
//!
//! - [`error`]: the one error type and the one place errors become responses ([`Local`]).
//! - [`headers`]: hop-by-hop and `X-Forwarded-*`, for the front ends that keep a header map.
//! - [`request_id`]: ids kept from trusted peers or generated.
//! - [`outcome`]: the per-request record that metrics (and later logs and traces) read.

use std::{
    borrow::Cow,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use http::{HeaderName, HeaderValue, Method, header};

use crate::{
    normalize::{self, PathError},
    state::State,
    table::{
        Cors, Phase, Policy, Redirect, Rule, Upstream,
        balance::{Dispatch, HashOn, Refused, stable_hash},
    },
};

pub(crate) mod consult;
mod error;
pub(crate) mod headers;
mod identity;
mod local;
pub(crate) mod outcome;
pub(crate) mod request_id;

pub use self::error::{BoxError, ProxyError};
pub(crate) use self::{
    consult::{Consult, Consulted, Heard},
    error::{Chain, record},
    local::{Local, LocalResponse},
    outcome::Outcome,
};
pub use crate::table::{RequestHeaders, RequestView};

/// What the pipeline knows about one client connection.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) state: Arc<State>,
    pub(crate) peer: IpAddr,
    pub(crate) peer_ip: HeaderValue,
    pub(crate) trusted: bool,
    /// The client came over TLS (`X-Forwarded-Proto: https`).
    pub(crate) tls: bool,
}

/// A request head as a front end parsed it.
pub(crate) struct Head<'a> {
    pub(crate) method: &'a Method,
    /// The Host header or the target's authority, as sent.
    pub(crate) host: Option<&'a str>,
    /// The path as sent, without the query.
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    /// Header names with underscores are already gone.
    pub(crate) headers: &'a dyn RequestHeaders,
    /// The declared body length, if any.
    pub(crate) content_length: Option<u64>,
}

/// A request to forward: where, and how it changes on the way.
#[derive(Debug)]
pub(crate) struct Forward<'a> {
    pub(crate) rule: Arc<Rule>,
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) endpoint: usize,
    /// The path to send upstream (normalised, rewritten, or as sent when the route opted out).
    pub(crate) path: Cow<'a, str>,
    /// The Host to send instead of the client's (URLRewrite).
    pub(crate) host: Option<HeaderValue>,
    /// The largest request body the rule's policies allow.
    pub(crate) body_limit: u64,
    /// Headers the response phase adds (CORS), besides the rule's response edits.
    pub(crate) response_extra: Vec<(HeaderName, HeaderValue)>,
    /// Headers the policies add to the upstream request (the consumer, forwarded claims).
    pub(crate) request_extra: Vec<(HeaderName, HeaderValue)>,
    /// The request counted in flight at its endpoint, while it lasts (none for plain upstreams).
    pub(crate) dispatch: Option<Dispatch>,
}

/// What to do with a request.
#[derive(Debug)]
pub(crate) enum Decision<'a> {
    Forward(Forward<'a>),
    /// Answer at the gateway; the rule matched, if any, for the outcome record.
    Respond(Local, Option<Arc<Rule>>),
    /// Ask an auth service, then decide again with its answer.
    Consult(Box<Consult>),
}

/// Why the request phase ended before the filters.
enum Stop {
    Answer(Local),
    Consult(Box<Consult>),
}

impl From<Local> for Stop {
    fn from(local: Local) -> Self {
        Self::Answer(local)
    }
}

static ACAO: HeaderName = HeaderName::from_static("access-control-allow-origin");
static ACAC: HeaderName = HeaderName::from_static("access-control-allow-credentials");
static ACEH: HeaderName = HeaderName::from_static("access-control-expose-headers");
static ACAM: HeaderName = HeaderName::from_static("access-control-allow-methods");
static ACAH: HeaderName = HeaderName::from_static("access-control-allow-headers");
static ACMA: HeaderName = HeaderName::from_static("access-control-max-age");
static ACRM: HeaderName = HeaderName::from_static("access-control-request-method");
static ACRH: HeaderName = HeaderName::from_static("access-control-request-headers");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

// === impl Connection ===

impl Connection {
    pub(crate) fn new(state: Arc<State>, peer: SocketAddr) -> Self {
        let ip = gateway_proto::net::canonical(peer.ip());
        let trusted = state.settings().trusted_peers.contains(ip);
        // An IP address always makes a valid header value.
        let peer_ip = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            state,
            peer: ip,
            peer_ip,
            trusted,
            tls: false,
        }
    }

    /// The same, for a client that came over TLS.
    pub(crate) fn over_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// The client's address: the peer, or from a trusted peer the last address of
    /// X-Forwarded-For that is not itself trusted. `None` when the chain does not parse.
    fn client_ip(&self, headers: &dyn RequestHeaders) -> Option<IpAddr> {
        if !self.trusted {
            return Some(self.peer);
        }
        let mut chain = Vec::new();
        headers.any_value(&X_FORWARDED_FOR, &mut |value| {
            chain.extend(
                value
                    .split(|&b| b == b',')
                    .map(<[u8]>::trim_ascii)
                    .map(|item| {
                        std::str::from_utf8(item)
                            .ok()
                            .and_then(|s| s.parse::<IpAddr>().ok())
                            .map(gateway_proto::net::canonical)
                    }),
            );
            false
        });
        let trusted = &self.state.settings().trusted_peers;
        let mut client = self.peer;
        for hop in chain.into_iter().rev() {
            let ip = hop?;
            client = ip;
            if !trusted.contains(ip) {
                break;
            }
        }
        Some(client)
    }
}

/// Runs the request phases: the request is forwarded, answered here, or waits for an auth
/// service (`consulted`: its answer, on the second run).
pub(crate) fn decide<'a>(
    conn: &Connection,
    head: &Head<'a>,
    consulted: Option<&Consulted>,
) -> Decision<'a> {
    let guard = conn.state.load();
    let Some(table) = guard.as_ref() else {
        return Decision::Respond(Local::Error(ProxyError::NotReady), None);
    };
    // `OPTIONS *` names the server, not a path.
    let normalized = if head.path == "*" {
        Ok(Cow::Borrowed(head.path))
    } else {
        normalize::normalize_path(head.path)
    };
    let (matched_path, refused): (&str, Option<PathError>) = match &normalized {
        Ok(path) => (path, None),
        Err(error) => (head.path, Some(*error)),
    };
    let mut buf = [0u8; 256];
    let host = if table.uses_hosts() {
        head.host.and_then(|h| normalize_host(h, &mut buf))
    } else {
        None
    };
    let view = RequestView {
        host,
        path: matched_path,
        query: head.query,
        method: head.method,
        headers: head.headers,
    };
    let Some(rule) = table.route(&view).cloned() else {
        let error = match refused {
            Some(error) => ProxyError::BadPath(error),
            None => ProxyError::RouteNotFound,
        };
        return Decision::Respond(Local::Error(error), None);
    };
    let consumers = rule.policies().identity.then(|| table.consumers().clone());
    drop(guard);

    let path = match (rule.normalizes(), normalized) {
        (true, Ok(path)) => path,
        (true, Err(error)) => {
            return Decision::Respond(Local::Error(ProxyError::BadPath(error)), Some(rule));
        }
        (false, _) => Cow::Borrowed(head.path),
    };
    let mut plan = Plan {
        path,
        host: None,
        body_limit: u64::MAX,
        response_extra: Vec::new(),
        request_extra: Vec::new(),
    };
    if !rule.is_plain() {
        match request_phase(conn, head, &rule, (consumers, consulted), &mut plan) {
            Ok(()) => {}
            Err(Stop::Answer(local)) => return Decision::Respond(local, Some(rule)),
            Err(Stop::Consult(consult)) => return Decision::Consult(consult),
        }
    }
    // The endpoint is picked after the filters, so that what they decide (and, later, a
    // retry) can change where the request goes.
    let Some(upstream) = rule.upstream().cloned() else {
        // Validation gives every rule a backend unless it redirects, and a redirect answered.
        let error = ProxyError::NoBackend {
            route: rule.route().clone(),
        };
        return Decision::Respond(Local::Error(error), Some(rule));
    };
    let key = upstream
        .hash_on()
        .and_then(|on| balance_key(on, conn, head));
    let (endpoint, dispatch) = match upstream.choose(key) {
        Ok(picked) => picked,
        Err(refused) => {
            let upstream = upstream.name().clone();
            let error = match refused {
                Refused::NoHealthy => ProxyError::NoHealthyUpstream { upstream },
                Refused::Overloaded => ProxyError::UpstreamOverloaded { upstream },
            };
            return Decision::Respond(Local::Error(error), Some(rule));
        }
    };
    Decision::Forward(Forward {
        rule,
        upstream,
        endpoint,
        path: plan.path,
        host: plan.host,
        body_limit: plan.body_limit,
        response_extra: plan.response_extra,
        request_extra: plan.request_extra,
        dispatch,
    })
}

/// The consistent hash of this request: of a header's value, a cookie's, or the client's
/// address; `None` when it has none.
fn balance_key(on: &HashOn, conn: &Connection, head: &Head<'_>) -> Option<u64> {
    match on {
        HashOn::Header(name) => head.headers.first(name).map(stable_hash),
        HashOn::Cookie(name) => {
            crate::table::identity::cookie(head.headers, name).map(|v| stable_hash(&v))
        }
        HashOn::SourceIp => Some(match conn.client_ip(head.headers)? {
            IpAddr::V4(v4) => stable_hash(&v4.octets()),
            IpAddr::V6(v6) => stable_hash(&v6.octets()),
        }),
    }
}

/// What the request phase decides about a request it lets through.
struct Plan<'a> {
    path: Cow<'a, str>,
    host: Option<HeaderValue>,
    body_limit: u64,
    response_extra: Vec<(HeaderName, HeaderValue)>,
    request_extra: Vec<(HeaderName, HeaderValue)>,
}

/// Policies in order, then filters. `Err`: answer with this instead of forwarding.
fn request_phase<'a>(
    conn: &Connection,
    head: &Head<'a>,
    rule: &Rule,
    (consumers, consulted): (Option<Arc<crate::table::Consumers>>, Option<&Consulted>),
    plan: &mut Plan<'a>,
) -> Result<(), Stop> {
    let policies = rule.policies();
    let client = policies
        .needs_client_ip
        .then(|| conn.client_ip(head.headers));
    let consumers = consumers.as_deref().unwrap_or(identity::no_consumers());
    let mut found = crate::table::Identity::default();
    let mut announced = false;
    for policy in policies.list.iter() {
        if !announced && policy.phase() > Phase::Identity {
            identity::announce(&found, plan);
            announced = true;
        }
        match &**policy {
            Policy::Jwt(jwt) => identity::jwt(jwt, head, consumers, &mut found, plan)?,
            Policy::ApiKey(key) => identity::api_key(key, head, consumers, &mut found)?,
            Policy::Authorization(rules) => {
                if !rules.allows(&found) {
                    return Err(Local::Error(ProxyError::Denied).into());
                }
            }
            Policy::RateLimit(limit) => {
                identity::rate_limit(limit, (head, rule.route()), client.flatten(), &found, plan)?;
            }
            Policy::Validation(rules) => rules
                .check((head.path, &plan.path), head.query, head.headers)
                .map_err(|refused| Local::Error(ProxyError::InvalidRequest { field: refused.0 }))?,
            Policy::ExternalAuth(auth) => {
                consult::external_auth(conn, head, auth, client.flatten(), consulted, plan)?;
            }
            Policy::IpAccess(access) => {
                if !access.allows(client.flatten()) {
                    return Err(Local::Error(ProxyError::Forbidden).into());
                }
            }
            Policy::Limits(limits) => {
                let target = head.path.len() + head.query.map_or(0, |q| q.len() + 1);
                if target as u64 > limits.uri {
                    return Err(Local::Error(ProxyError::UriTooLong).into());
                }
                if limits.header != u64::MAX && head.headers.total_bytes() as u64 > limits.header {
                    return Err(Local::Error(ProxyError::HeadTooLarge {
                        limit: "the route's maxHeaderBytes",
                    })
                    .into());
                }
                if head.content_length.is_some_and(|n| n > limits.body) {
                    return Err(Local::Error(ProxyError::BodyTooLarge).into());
                }
            }
            Policy::Cors(cors) => cors_phase(cors, head, plan)?,
        }
    }
    if !announced {
        identity::announce(&found, plan);
    }
    plan.body_limit = policies.limits.body;

    let filters = rule.filters();
    if let Some(redirect) = &filters.redirect {
        let scheme = if conn.tls { "https" } else { "http" };
        let location = redirect_location(redirect, head, scheme, &plan.path, rule)?;
        return Err(Local::Redirect {
            status: redirect.status,
            location,
        }
        .into());
    }
    if let Some(rewrite) = &filters.rewrite {
        if let Some(path) = &rewrite.path {
            let new = path.apply(&plan.path, rule.matched_prefix(&plan.path));
            plan.path = Cow::Owned(new.into_owned());
        }
        plan.host.clone_from(&rewrite.host);
    }
    Ok(())
}

/// The `Location` of a redirect, as the Gateway API defines it: the redirect's scheme, host
/// and port where it gives them, else the request's (`scheme`: how the client came); a new
/// scheme without a port goes to the
/// scheme's well-known port; the path rewritten or kept; the query kept.
fn redirect_location(
    redirect: &Redirect,
    head: &Head<'_>,
    scheme: &'static str,
    path: &str,
    rule: &Rule,
) -> Result<HeaderValue, Local> {
    let host = redirect
        .host
        .as_deref()
        .or_else(|| head.host.map(strip_port))
        .unwrap_or("");
    let scheme = redirect.scheme.unwrap_or(scheme);
    let port = match (redirect.port, redirect.scheme) {
        (Some(port), _) => Some(port),
        (None, Some(_)) => None,
        (None, None) => head.host.and_then(port_of),
    };
    let path = match &redirect.path {
        Some(rewrite) => rewrite.apply(path, rule.matched_prefix(path)),
        None => Cow::Borrowed(path),
    };
    let mut location = format!("{scheme}://{host}");
    let default_port = if scheme == "https" { 443 } else { 80 };
    if let Some(port) = port.filter(|&p| p != default_port) {
        location.push_str(&format!(":{port}"));
    }
    location.push_str(&path);
    if let Some(query) = head.query {
        location.push('?');
        location.push_str(query);
    }
    HeaderValue::from_str(&location)
        .map_err(|_| Local::Error(ProxyError::BadPath(PathError::ControlCharacter)))
}

/// The port of a `host[:port]`, if it names one.
fn port_of(host: &str) -> Option<u16> {
    let (name, port) = host.rsplit_once(':')?;
    if name.starts_with('[') && !name.ends_with(']') {
        return None;
    }
    port.parse().ok()
}

/// A CORS preflight is answered here; an actual request from an allowed origin gets the
/// response headers; a disallowed origin gets no CORS headers at all.
fn cors_phase(cors: &Cors, head: &Head<'_>, plan: &mut Plan<'_>) -> Result<(), Local> {
    let Some(origin) = head.headers.first(&header::ORIGIN) else {
        return Ok(());
    };
    let allowed = cors.allows(origin);
    let Ok(origin) = HeaderValue::from_bytes(origin) else {
        return Ok(());
    };
    let requested = head.headers.first(&ACRM);
    if *head.method == Method::OPTIONS
        && let Some(method) = requested
    {
        let mut headers = vec![(header::VARY, HeaderValue::from_static("origin"))];
        if allowed && cors.allows_method(method) {
            headers.push((ACAO.clone(), cors.allow_origin(&origin)));
            if cors.credentials {
                headers.push((ACAC.clone(), HeaderValue::from_static("true")));
            }
            let methods = match &cors.methods {
                Some(methods) => Some(methods.clone()),
                None => HeaderValue::from_bytes(method).ok(),
            };
            headers.extend(methods.map(|m| (ACAM.clone(), m)));
            let allow_headers = match &cors.headers {
                Some(names) => Some(names.clone()),
                None if cors.echo_headers => head
                    .headers
                    .first(&ACRH)
                    .and_then(|h| HeaderValue::from_bytes(h).ok()),
                None => None,
            };
            headers.extend(allow_headers.map(|h| (ACAH.clone(), h)));
            headers.extend(cors.max_age.clone().map(|age| (ACMA.clone(), age)));
        }
        return Err(Local::Preflight { headers });
    }
    if allowed {
        plan.response_extra
            .push((ACAO.clone(), cors.allow_origin(&origin)));
        if cors.credentials {
            plan.response_extra
                .push((ACAC.clone(), HeaderValue::from_static("true")));
        }
        if let Some(expose) = &cors.expose {
            plan.response_extra.push((ACEH.clone(), expose.clone()));
        }
        plan.response_extra
            .push((header::VARY, HeaderValue::from_static("origin")));
    }
    Ok(())
}

/// Checks a request body read whole, on a rule whose policies check bodies.
pub(crate) fn check_body(rule: &Rule, body: &[u8]) -> Result<(), Local> {
    rule.policies()
        .check_body(body)
        .map_err(|refused| Local::Error(ProxyError::InvalidRequest { field: refused.0 }))
}

// === impl Forward ===

impl Forward<'_> {
    /// The rule's request header edits.
    #[inline]
    pub(crate) fn request_edits(&self) -> &crate::table::HeaderEdits {
        &self.rule.filters().request
    }
}

/// The host without its port.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The host without port or trailing dot, lower-cased into `buf`; `None` if it does not fit.
pub(crate) fn normalize_host<'b>(raw: &str, buf: &'b mut [u8; 256]) -> Option<&'b str> {
    let host = strip_port(raw);
    let host = host.strip_suffix('.').unwrap_or(host);
    let out = buf.get_mut(..host.len())?;
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;

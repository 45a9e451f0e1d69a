//! Policies, compiled once per table: networks parsed, CORS header values built, limits
//! resolved, token keys parsed ([`jwt`]), consumers indexed ([`identity`]), buckets found
//! ([`rate_limit`]). A rule holds its policies in the order they run (see [`Phase`]); the
//! pipeline runs them.

pub mod external_auth;
pub mod identity;
pub mod jwt;
pub mod rate_limit;
pub mod validation;

use std::{net::IpAddr, sync::Arc};

use gateway_proto::{
    net::Cidr,
    v1::{self, policy_spec::Body},
};
use http::{HeaderName, HeaderValue, Method};

pub use self::identity::{Consumer, Consumers, Identity};
use self::{
    external_auth::ExternalAuth,
    identity::{ApiKey, Authorization},
    jwt::Jwt,
    rate_limit::RateLimit,
    validation::RequestValidation,
};
use crate::side::SideTables;

/// One compiled policy.
#[derive(Debug)]
pub enum Policy {
    IpAccess(IpAccess),
    Cors(Cors),
    Limits(Limits),
    Jwt(Jwt),
    ApiKey(ApiKey),
    Authorization(Authorization),
    RateLimit(RateLimit),
    Validation(RequestValidation),
    ExternalAuth(Arc<ExternalAuth>),
}

/// When a policy runs: a rule's policies are sorted by phase, and keep their listed order
/// within one. CORS comes before identity because browsers send preflights without
/// credentials; size limits come last, with the rest of the request's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Network,
    Cors,
    Identity,
    Authorization,
    RateLimit,
    Validation,
    Limits,
}

/// The headers an identity policy writes upstream: a client's own are always dropped.
pub static X_CONSUMER: HeaderName = HeaderName::from_static("x-consumer");
pub static X_CONSUMER_GROUPS: HeaderName = HeaderName::from_static("x-consumer-groups");

/// Client networks allowed and denied.
#[derive(Debug)]
pub struct IpAccess {
    allow: Box<[Cidr]>,
    deny: Box<[Cidr]>,
}

/// Request size limits; `u64::MAX` where none is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub body: u64,
    pub header: u64,
    pub uri: u64,
}

/// A CORS policy with its response header values built.
#[derive(Debug)]
pub struct Cors {
    origins: Box<[Origin]>,
    any_origin: bool,
    pub credentials: bool,
    /// `access-control-allow-methods`; `None`: echo the requested method ("*" configured).
    pub methods: Option<HeaderValue>,
    /// `access-control-allow-headers`; `None` with `echo_headers`: echo the requested ones.
    pub headers: Option<HeaderValue>,
    pub echo_headers: bool,
    pub expose: Option<HeaderValue>,
    pub max_age: Option<HeaderValue>,
}

#[derive(Debug)]
enum Origin {
    Exact(Box<str>),
    /// `https://*.example.com`: the scheme with "://", the suffix with its dot, the port part.
    Wildcard {
        scheme: Box<str>,
        suffix: Box<str>,
        port: Box<str>,
    },
}

// === impl Policy ===

impl Policy {
    /// Compiles a validated policy; `None` for a spec without a body (refused by validation).
    pub(crate) fn compile(name: &str, spec: &v1::PolicySpec, side: &SideTables) -> Option<Self> {
        Some(match spec.body.as_ref()? {
            Body::Jwt(jwt) => Self::Jwt(Jwt::compile(jwt, side)),
            Body::RequestValidation(rules) => Self::Validation(RequestValidation::compile(rules)),
            Body::ApiKey(key) => Self::ApiKey(ApiKey::compile(key)),
            Body::Authorization(rules) => Self::Authorization(Authorization::compile(rules)),
            Body::RateLimit(limit) => {
                let side_key = RateLimit::side_key(name, limit);
                let mut compiled =
                    RateLimit::compile(name, limit, |max| side.buckets(side_key.clone(), max));
                if limit.scope() == v1::rate_limit_policy::Scope::Cluster {
                    let max_keys = RateLimit::max_keys(limit);
                    compiled.share(side.shared_limits(), side_key, max_keys);
                }
                Self::RateLimit(compiled)
            }
            Body::IpAccess(ip) => Self::IpAccess(IpAccess {
                allow: ip.allow.iter().filter_map(|c| c.parse().ok()).collect(),
                deny: ip.deny.iter().filter_map(|c| c.parse().ok()).collect(),
            }),
            Body::Cors(cors) => Self::Cors(Cors::compile(cors)),
            Body::ExternalAuth(auth) => {
                Self::ExternalAuth(Arc::new(ExternalAuth::compile(name, auth, side)))
            }
            Body::RequestLimits(l) => Self::Limits(Limits {
                body: l.max_body_bytes.unwrap_or(u64::MAX),
                header: l.max_header_bytes.unwrap_or(u64::MAX),
                uri: l.max_uri_bytes.unwrap_or(u64::MAX),
            }),
        })
    }
}

impl Policy {
    pub fn phase(&self) -> Phase {
        match self {
            Self::IpAccess(_) => Phase::Network,
            Self::Cors(_) => Phase::Cors,
            Self::Jwt(_) | Self::ApiKey(_) | Self::ExternalAuth(_) => Phase::Identity,
            Self::Authorization(_) => Phase::Authorization,
            Self::RateLimit(_) => Phase::RateLimit,
            Self::Validation(_) => Phase::Validation,
            Self::Limits(_) => Phase::Limits,
        }
    }
}

/// The policies of one rule, in the order they run, with the limits of all of them folded
/// into one and what the upstream request loses to them.
#[derive(Debug, Default)]
pub struct RulePolicies {
    pub list: Box<[Arc<Policy>]>,
    /// The tightest of the rule's request limits.
    pub limits: Limits,
    /// Whether a policy needs the client's address.
    pub needs_client_ip: bool,
    /// Whether a policy finds or needs the request's identity (and so the consumers).
    pub identity: bool,
    /// Request headers never forwarded: credentials the policies consume, and the headers
    /// they write themselves (a client's own `x-consumer` would be a forgery).
    pub drop_headers: Box<[HeaderName]>,
    /// Query parameters never forwarded: credentials.
    pub drop_query: Box<[Box<str>]>,
    /// Whether a `requestValidation` policy checks bodies: a front end reads them whole first.
    pub checks_body: bool,
}

impl RulePolicies {
    pub(crate) fn new(mut list: Vec<Arc<Policy>>) -> Self {
        list.sort_by_key(|policy| policy.phase());
        let mut limits = Limits::default();
        let mut needs_client_ip = false;
        let mut identity = false;
        let mut drop_headers = Vec::new();
        let mut drop_query = Vec::new();
        let mut checks_body = false;
        for policy in &list {
            match &**policy {
                Policy::Limits(l) => limits = limits.min(l),
                Policy::IpAccess(_) => needs_client_ip = true,
                Policy::Cors(_) => {}
                Policy::Validation(rules) => checks_body |= rules.checks_body(),
                Policy::Jwt(jwt) => {
                    identity = true;
                    for provider in jwt.providers() {
                        drop_headers.extend(provider.forward.iter().map(|(_, h)| h.clone()));
                        if jwt.strip_token {
                            drop_headers.extend(
                                provider.sources.iter().filter_map(|s| s.header().cloned()),
                            );
                            drop_query.extend(
                                provider
                                    .sources
                                    .iter()
                                    .filter_map(|s| s.query().map(Into::into)),
                            );
                        }
                    }
                }
                Policy::ApiKey(key) => {
                    identity = true;
                    drop_headers.extend(key.sources.iter().filter_map(|s| s.header().cloned()));
                    drop_query.extend(key.sources.iter().filter_map(|s| s.query().map(Into::into)));
                }
                Policy::Authorization(_) => identity = true,
                Policy::ExternalAuth(auth) => {
                    needs_client_ip = true;
                    drop_headers.extend(auth.from_auth.iter().cloned());
                }
                Policy::RateLimit(limit) => match limit.key {
                    rate_limit::Key::ClientIp => needs_client_ip = true,
                    rate_limit::Key::Consumer => identity = true,
                    _ => {}
                },
            }
        }
        if identity {
            drop_headers.push(X_CONSUMER.clone());
            drop_headers.push(X_CONSUMER_GROUPS.clone());
        }
        drop_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        drop_headers.dedup();
        drop_query.sort();
        drop_query.dedup();
        Self {
            list: list.into(),
            limits,
            needs_client_ip,
            identity,
            drop_headers: drop_headers.into(),
            drop_query: drop_query.into(),
            checks_body,
        }
    }

    /// The largest body read whole to be checked: the rule's limit, or 1 MiB without one.
    pub fn checked_body_limit(&self) -> u64 {
        if self.limits.body == u64::MAX {
            validation::MAX_CHECKED_BODY
        } else {
            self.limits.body
        }
    }

    /// Checks a whole request body against every schema of the rule.
    pub fn check_body(&self, body: &[u8]) -> Result<(), validation::Refused> {
        for policy in self.list.iter() {
            if let Policy::Validation(rules) = &**policy {
                rules.check_body(body)?;
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether a client header of this name is left out of the upstream request.
    #[inline]
    pub fn drops(&self, name: &str) -> bool {
        self.drop_headers
            .iter()
            .any(|d| d.as_str().eq_ignore_ascii_case(name))
    }
}

// === impl IpAccess ===

impl IpAccess {
    /// Whether the client may pass; an unknown client address never does.
    pub fn allows(&self, client: Option<IpAddr>) -> bool {
        let Some(ip) = client else {
            return false;
        };
        !self.deny.iter().any(|net| net.contains(ip))
            && (self.allow.is_empty() || self.allow.iter().any(|net| net.contains(ip)))
    }
}

// === impl Limits ===

impl Default for Limits {
    fn default() -> Self {
        Self {
            body: u64::MAX,
            header: u64::MAX,
            uri: u64::MAX,
        }
    }
}

impl Limits {
    fn min(self, other: &Limits) -> Self {
        Self {
            body: self.body.min(other.body),
            header: self.header.min(other.header),
            uri: self.uri.min(other.uri),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        *self == Self::default()
    }
}

// === impl Cors ===

impl Cors {
    fn compile(cors: &v1::CorsPolicy) -> Self {
        let join = |items: &[String]| {
            (!items.is_empty())
                .then(|| HeaderValue::from_str(&items.join(", ")).ok())
                .flatten()
        };
        let star = |items: &[String]| items.iter().any(|i| i == "*");
        let origins = cors
            .allow_origins
            .iter()
            .filter(|o| *o != "*")
            .map(|o| Origin::compile(o))
            .collect();
        let echo_headers = star(&cors.allow_headers);
        Self {
            origins,
            any_origin: star(&cors.allow_origins),
            credentials: cors.allow_credentials,
            methods: if star(&cors.allow_methods) {
                None
            } else if cors.allow_methods.is_empty() {
                // The CORS-safelisted methods, when none is configured.
                Some(HeaderValue::from_static("GET, HEAD, POST"))
            } else {
                join(&cors.allow_methods)
            },
            headers: if echo_headers {
                None
            } else {
                join(&cors.allow_headers)
            },
            echo_headers,
            expose: join(&cors.expose_headers),
            max_age: cors
                .max_age
                .as_ref()
                .and_then(gateway_proto::duration::from_proto)
                .map(|d| HeaderValue::from(d.as_secs())),
        }
    }

    /// Whether a request from `origin` may read the response.
    pub fn allows(&self, origin: &[u8]) -> bool {
        let Ok(origin) = std::str::from_utf8(origin) else {
            return false;
        };
        self.any_origin || self.origins.iter().any(|o| o.matches(origin))
    }

    /// The `access-control-allow-origin` value for an allowed `origin`: `*` when any origin
    /// may read and no credentials are involved, else the origin itself.
    pub fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    /// Whether the preflight's requested method may be used.
    pub fn allows_method(&self, method: &[u8]) -> bool {
        let Some(methods) = &self.methods else {
            return true;
        };
        Method::from_bytes(method).is_ok_and(|m| {
            methods
                .as_bytes()
                .split(|&b| b == b',')
                .any(|item| item.trim_ascii() == m.as_str().as_bytes())
        })
    }
}

impl Origin {
    fn compile(origin: &str) -> Self {
        if let Some((scheme, rest)) = origin.split_once("://*.") {
            let (host, port) = match rest.rsplit_once(':') {
                Some((host, port)) => (host, format!(":{port}")),
                None => (rest, String::new()),
            };
            return Self::Wildcard {
                scheme: format!("{scheme}://").into(),
                suffix: format!(".{host}").to_ascii_lowercase().into(),
                port: port.into(),
            };
        }
        Self::Exact(origin.to_ascii_lowercase().into())
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            Self::Exact(exact) => origin.eq_ignore_ascii_case(exact),
            Self::Wildcard {
                scheme,
                suffix,
                port,
            } => {
                let Some(rest) = strip_prefix_ignore_case(origin, scheme) else {
                    return false;
                };
                let Some(host) = strip_suffix_ignore_case(rest, port) else {
                    return false;
                };
                // At least one label before the suffix, and no port left over.
                host.len() > suffix.len()
                    && !host.contains(':')
                    && strip_suffix_ignore_case(host, suffix).is_some()
            }
        }
    }
}

fn strip_prefix_ignore_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn strip_suffix_ignore_case<'s>(s: &'s str, suffix: &str) -> Option<&'s str> {
    let cut = s.len().checked_sub(suffix.len())?;
    let tail = s.get(cut..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &s[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> Cors {
        Cors::compile(&v1::CorsPolicy {
            allow_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            allow_methods: vec!["GET".into(), "PUT".into()],
            ..Default::default()
        })
    }

    #[test]
    fn origins() {
        let c = cors(&["https://app.example.com", "https://*.corp.example:8443"]);
        assert!(c.allows(b"https://app.example.com"));
        assert!(c.allows(b"HTTPS://APP.example.com"));
        assert!(!c.allows(b"http://app.example.com"));
        assert!(!c.allows(b"https://app.example.com.evil.com"));
        assert!(c.allows(b"https://a.corp.example:8443"));
        assert!(c.allows(b"https://a.b.corp.example:8443"));
        assert!(!c.allows(b"https://corp.example:8443"));
        assert!(!c.allows(b"https://a.corp.example"));
        assert!(!c.allows(b"https://evilcorp.example:8443"));
        assert!(c.allows_method(b"PUT"));
        assert!(!c.allows_method(b"DELETE"));
        assert!(cors(&["*"]).allows(b"https://anything.test"));
    }

    #[test]
    fn ip_access() {
        let ip = IpAccess {
            allow: ["10.0.0.0/8".parse().unwrap()].into(),
            deny: ["10.9.0.0/16".parse().unwrap()].into(),
        };
        assert!(ip.allows(Some("10.1.1.1".parse().unwrap())));
        assert!(!ip.allows(Some("10.9.1.1".parse().unwrap())));
        assert!(!ip.allows(Some("11.1.1.1".parse().unwrap())));
        assert!(!ip.allows(None));
    }
}

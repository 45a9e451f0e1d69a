//! Compiled upstreams: endpoints (listed, or the registry's instances of a service, from the
//! side tables; DNS names expanded into their addresses, [`endpoints`]) parsed once, a precomputed smooth weighted round-robin sequence (and the other
//! balancers' tables, [`balance`]), health settings, timeouts, and the pooled client to reach
//! them. Live state (positions, requests in flight, health) is in the side tables.

pub mod balance;
mod endpoints;

use std::{
    hash::{Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use gateway_proto::v1::{self, upstream_spec::Protocol};
use http::HeaderName;

use self::balance::{Balancer, HashOn, Maglev};
use crate::{
    connect::{Connector, TlsClient},
    health::{EndpointState, Passive},
    pool::EndpointPool,
    side::{
        SideTables, UpstreamSide,
        dns::{Answer, Name},
    },
};

/// Time allowed for an upstream to answer with response headers, unless the upstream says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed to open a connection to an endpoint, unless the upstream says.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest precomputed round-robin sequence. Larger weight sums are scaled down to it
/// (keeping every non-zero weight at least 1), so compile time and memory stay bounded.
const MAX_SEQUENCE: u64 = 4096;

/// One upstream, compiled.
#[derive(Debug)]
pub struct Upstream {
    name: Arc<str>,
    endpoints: Box<[Endpoint]>,
    /// Endpoint indices in smooth weighted round-robin order; empty when every weight is 0.
    sequence: Box<[u32]>,
    side: Arc<UpstreamSide>,
    timeout: Duration,
    connect_timeout: Duration,
    /// How long an idle connection may still be reused.
    idle_timeout: Duration,
    /// Spoken to over HTTP/2 (H2C or H2).
    multiplexed: bool,
    weights: Box<[u32]>,
    /// Running sums of the weights, for picks at random by weight.
    cumulative: Box<[u64]>,
    balancer: Balancer,
    passive: Option<Passive>,
    /// The circuit breaker's requests in flight (`u32::MAX`: none).
    max_in_flight: u32,
    /// The circuit breaker's requests waiting for a connection (`u32::MAX`: none).
    max_pending: u32,
    /// The breaker's HTTP/2 connections (H2C, H2), over all endpoints.
    connection_cap: Option<crate::pool::multiplexed::ConnectionCap>,
    /// Round robin, no health settings, no breaker: the pick is one position and nothing is
    /// counted.
    plain: bool,
    /// The active checks of the endpoints, running while this upstream (or a later table's
    /// same one) holds them.
    _checkers: Box<[Arc<crate::health::Checker>]>,
    /// The DNS names its endpoints list, re-resolved while it (or a later table's same one)
    /// holds them, with the answer each was compiled with.
    names: Box<[(Arc<Name>, Option<Answer>)]>,
}

/// One endpoint (`host:port` as the validator checked it, or an address a DNS name of one
/// resolved to) with its pool of idle connections
/// and its live state.
#[derive(Debug)]
pub struct Endpoint {
    pool: Arc<EndpointPool>,
    state: Arc<EndpointState>,
}

// === impl Upstream ===

impl Upstream {
    /// `client_certificate` is the Certificate the upstream's TLS names, if it names one.
    pub(crate) fn compile(
        name: &str,
        spec: &v1::UpstreamSpec,
        client_certificate: Option<&v1::CertificateSpec>,
        side: &SideTables,
    ) -> Self {
        let protocol = Protocol::try_from(spec.protocol).unwrap_or_default();
        let connector = match TlsClient::compile(protocol, spec.tls.as_ref(), client_certificate) {
            Ok(tls) => Connector::new(tls),
            Err(reason) => {
                tracing::error!(upstream = name, %reason, "upstream TLS settings do not compile");
                Connector::broken(&reason)
            }
        };
        if spec
            .tls
            .as_ref()
            .is_some_and(|tls| tls.insecure_skip_verify)
        {
            tracing::warn!(
                upstream = name,
                "insecureSkipVerify: endpoint certificates are not verified"
            );
        }
        // Listed, or the registry's instances as they are now (none is fine: every pick is
        // then refused with 503 no_healthy_upstream). Either way the endpoints that stay keep
        // their live state and pools, which the side tables hold by address.
        let discovered = spec
            .discovery
            .as_ref()
            .map(|d| side.services().endpoints(&d.service));
        let listed: &[v1::Endpoint] = discovered.as_deref().unwrap_or(&spec.endpoints);
        let expanded = endpoints::expand(listed, side.dns());
        let planned = &expanded.endpoints;
        let key = pool_key(protocol, spec.tls.as_ref(), client_certificate);
        let upstream_side = side.upstream(name);
        upstream_side.retain_endpoints(|address| planned.iter().any(|e| e.address == address));
        let endpoints: Vec<Endpoint> = planned
            .iter()
            .map(|endpoint| {
                let pool = match (&endpoint.host, &key) {
                    // Resolved from a name, over TLS: the connections name the host, and are
                    // not those of the same address under another name.
                    (Some(host), Some(kind)) if connector.is_tls() => side.pool(
                        &endpoint.address,
                        Some(&format!("{kind} {host}")),
                        &connector.for_host(host),
                    ),
                    _ => side.pool(&endpoint.address, key.as_deref(), &connector),
                };
                Endpoint {
                    pool,
                    state: upstream_side.endpoint(&endpoint.address),
                }
            })
            .collect();
        let weights: Vec<u32> = planned.iter().map(|e| e.weight).collect();
        let addresses: Vec<&str> = planned.iter().map(|e| e.address.as_str()).collect();
        let balancer = compile_balancer(spec, &addresses, &weights);
        let passive = spec
            .health_check
            .as_ref()
            .and_then(|h| h.passive.as_ref())
            .map(|p| Passive {
                consecutive_errors: p.consecutive_errors.unwrap_or(5),
                base_ejection: p
                    .base_ejection_time
                    .as_ref()
                    .and_then(to_duration)
                    .unwrap_or(Duration::from_secs(30)),
                max_ejection_percent: p.max_ejection_percent.unwrap_or(50),
            });
        let checkers: Box<[_]> = match spec.health_check.as_ref().and_then(|h| h.active.as_ref()) {
            Some(active) => {
                let h2 = matches!(protocol, Protocol::H2c | Protocol::H2);
                let settings = crate::health::Settings::of(active, h2);
                endpoints
                    .iter()
                    .zip(planned)
                    .map(|(endpoint, plan)| {
                        side.checker(name, endpoint.address(), &settings, || {
                            crate::health::Checker::start(
                                endpoint.address(),
                                &plan.authority,
                                endpoint.pool.connector().clone(),
                                endpoint.state.clone(),
                                settings.clone(),
                            )
                        })
                    })
                    .collect()
            }
            None => Box::new([]),
        };
        let max_in_flight = spec.circuit_breaker.as_ref().map_or(u32::MAX, |b| {
            // One HTTP/1.1 connection per request in flight: for them `maxConnections` bounds
            // the same count.
            let connections = b
                .max_connections
                .filter(|_| !matches!(protocol, Protocol::H2c | Protocol::H2));
            b.max_requests
                .into_iter()
                .chain(connections)
                .min()
                .unwrap_or(u32::MAX)
        });
        let mut total = 0u64;
        let cumulative: Box<[u64]> = weights
            .iter()
            .map(|&w| {
                total += u64::from(w);
                total
            })
            .collect();
        let plain = matches!(balancer, Balancer::RoundRobin)
            && passive.is_none()
            && checkers.is_empty()
            && max_in_flight == u32::MAX;
        let connect_timeout = spec
            .connect_timeout
            .as_deref()
            .and_then(to_duration)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let idle_timeout = spec
            .idle_timeout
            .as_deref()
            .and_then(to_duration)
            .unwrap_or(crate::pool::IDLE_TIMEOUT);
        // HTTP/2 connections are shared by requests, so they are counted apart.
        let connection_cap = spec
            .circuit_breaker
            .as_ref()
            .and_then(|b| b.max_connections)
            .filter(|_| matches!(protocol, Protocol::H2c | Protocol::H2))
            .map(|max| crate::pool::multiplexed::ConnectionCap {
                count: upstream_side.h2_connections.clone(),
                max,
            });
        Self {
            side: upstream_side,
            name: name.into(),
            endpoints: endpoints.into(),
            sequence: smooth_wrr(&weights).into(),
            weights: weights.into(),
            cumulative,
            balancer,
            passive,
            max_in_flight,
            max_pending: spec
                .circuit_breaker
                .as_ref()
                .and_then(|b| b.max_pending_requests)
                .unwrap_or(u32::MAX),
            connection_cap,
            plain,
            _checkers: checkers,
            names: expanded.names.into(),
            timeout: spec
                .timeout
                .as_ref()
                .and_then(to_duration)
                .unwrap_or(DEFAULT_TIMEOUT),
            connect_timeout,
            idle_timeout,
            multiplexed: matches!(protocol, Protocol::H2c | Protocol::H2),
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The index of the next endpoint in weighted round-robin order; `None` when every
    /// endpoint is drained.
    #[inline]
    pub fn pick(&self) -> Option<usize> {
        let len = self.sequence.len();
        let index = match len {
            0 => return None,
            1 => self.sequence[0],
            _ => self.sequence[self.side.next() % len],
        };
        Some(index as usize)
    }

    /// Time allowed for response headers.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Time allowed to open a connection.
    /// The cap on the HTTP/2 connections it opens, if its breaker sets one.
    pub(crate) fn connection_cap(&self) -> Option<&crate::pool::multiplexed::ConnectionCap> {
        self.connection_cap.as_ref()
    }

    /// How long an idle connection to an endpoint may still be reused.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Spoken to over HTTP/2.
    pub fn is_multiplexed(&self) -> bool {
        self.multiplexed
    }

    /// What its consistent hash is taken of, if it has one.
    pub fn hash_on(&self) -> Option<&HashOn> {
        match &self.balancer {
            Balancer::ConsistentHash { on, .. } => Some(on),
            _ => None,
        }
    }

    /// Its live state (the retry budget).
    pub fn side(&self) -> &Arc<UpstreamSide> {
        &self.side
    }

    /// Whether its endpoints' health or load is tracked (any setting beyond round robin).
    pub fn tracks_health(&self) -> bool {
        !self.plain
    }

    /// Whether every DNS name among its endpoints was compiled with the name's current answer.
    pub fn dns_is_current(&self) -> bool {
        self.names
            .iter()
            .all(|(name, compiled)| name.is_current(compiled.as_ref()))
    }

    /// The DNS names its endpoints list, each with whether it was compiled with the name's
    /// current answer.
    pub fn names(&self) -> impl Iterator<Item = (&Arc<Name>, bool)> {
        self.names
            .iter()
            .map(|(name, compiled)| (name, name.is_current(compiled.as_ref())))
    }

    /// Whether requests' ends are recorded for outlier detection.
    #[inline]
    pub fn detects_outliers(&self) -> bool {
        self.passive.is_some()
    }
}

fn compile_balancer(spec: &v1::UpstreamSpec, addresses: &[&str], weights: &[u32]) -> Balancer {
    use v1::load_balancer::Type;
    let Some(balancer) = &spec.load_balancer else {
        return Balancer::RoundRobin;
    };
    match balancer.r#type() {
        Type::RoundRobin => Balancer::RoundRobin,
        Type::LeastRequest => Balancer::LeastRequest,
        Type::Random => Balancer::Random,
        Type::ConsistentHash => {
            let on = balancer.hash_on.as_ref();
            let on = match on {
                Some(on) if !on.header.is_empty() => HeaderName::from_bytes(on.header.as_bytes())
                    .map_or(HashOn::SourceIp, HashOn::Header),
                Some(on) if !on.cookie.is_empty() => HashOn::Cookie(on.cookie.as_str().into()),
                _ => HashOn::SourceIp,
            };
            Balancer::ConsistentHash {
                table: Maglev::build(addresses, weights),
                on,
            }
        }
    }
}

/// What sets an endpoint's connections apart besides its address: none for plain HTTP/1.1;
/// otherwise the protocol and a digest of the TLS settings (and the client certificate), so
/// that connections made one way are never handed to an upstream that wants them another, and
/// a changed setting starts new ones.
fn pool_key(
    protocol: Protocol,
    tls: Option<&v1::UpstreamTls>,
    client_certificate: Option<&v1::CertificateSpec>,
) -> Option<String> {
    if tls.is_none() && matches!(protocol, Protocol::Http1 | Protocol::Unspecified) {
        return None;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    if let Some(tls) = tls {
        (&tls.sni, &tls.ca_certificate_pem, tls.insecure_skip_verify).hash(&mut hasher);
    }
    if let Some(certificate) = client_certificate {
        (&certificate.certificate_pem, &certificate.private_key_pem).hash(&mut hasher);
    }
    Some(format!(
        "{} {:016x}",
        protocol.as_str_name(),
        hasher.finish()
    ))
}

// === impl Endpoint ===

impl Endpoint {
    /// `host:port`.
    pub fn address(&self) -> &str {
        self.pool.address()
    }

    /// The side tables' key of its pool.
    pub fn pool_key(&self) -> &str {
        self.pool.key()
    }

    /// Its live state: requests in flight, health.
    pub fn state(&self) -> &EndpointState {
        &self.state
    }

    /// Idle connections to this endpoint, for both front ends.
    pub fn pool(&self) -> &EndpointPool {
        &self.pool
    }

    /// The pool, for a response body that returns its connection when it ends.
    pub fn shared_pool(&self) -> Arc<EndpointPool> {
        self.pool.clone()
    }
}

fn to_duration(d: &prost_types::Duration) -> Option<Duration> {
    gateway_proto::duration::from_proto(d)
}

/// The smooth weighted round-robin order (nginx's algorithm) of items with these weights, one
/// full cycle: each index appears `weight` times (after dividing by the common divisor), spread
/// out evenly. Zero weights never appear; all zero gives an empty sequence.
pub(crate) fn smooth_wrr(weights: &[u32]) -> Vec<u32> {
    let divisor = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
    if divisor == 0 {
        return Vec::new();
    }
    let mut scaled: Vec<u64> = weights.iter().map(|&w| u64::from(w / divisor)).collect();
    let mut total: u64 = scaled.iter().sum();
    let limit = MAX_SEQUENCE.max(scaled.iter().filter(|&&w| w > 0).count() as u64);
    if total > limit {
        for w in scaled.iter_mut().filter(|w| **w > 0) {
            *w = (*w * limit / total).max(1);
        }
        total = scaled.iter().sum();
    }
    let mut current = vec![0i64; scaled.len()];
    let mut sequence = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, &w) in scaled.iter().enumerate() {
            current[i] += w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total as i64;
        sequence.push(best as u32);
    }
    sequence
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

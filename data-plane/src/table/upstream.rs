//! Compiled upstreams: endpoints parsed once, a precomputed smooth weighted round-robin
//! sequence, timeouts, and the pooled client to reach them.

use std::{sync::Arc, time::Duration};

use gateway_proto::v1;

use crate::{
    pool::EndpointPool,
    side::{SideTables, UpstreamSide},
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
}

/// One endpoint (`host:port`, as the validator checked it) with its pool of idle connections.
#[derive(Debug)]
pub struct Endpoint {
    pool: Arc<EndpointPool>,
}

// === impl Upstream ===

impl Upstream {
    pub(crate) fn compile(name: &str, spec: &v1::UpstreamSpec, side: &SideTables) -> Self {
        let endpoints: Vec<Endpoint> = spec
            .endpoints
            .iter()
            .map(|endpoint| Endpoint {
                pool: side.pool(&endpoint.address),
            })
            .collect();
        let weights: Vec<u32> = spec
            .endpoints
            .iter()
            .map(|e| e.weight.unwrap_or(1))
            .collect();
        let connect_timeout = spec
            .connect_timeout
            .as_ref()
            .and_then(to_duration)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        Self {
            side: side.upstream(name),
            name: name.into(),
            endpoints: endpoints.into(),
            sequence: smooth_wrr(&weights).into(),
            timeout: spec
                .timeout
                .as_ref()
                .and_then(to_duration)
                .unwrap_or(DEFAULT_TIMEOUT),
            connect_timeout,
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
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
}

// === impl Endpoint ===

impl Endpoint {
    /// `host:port`.
    pub fn address(&self) -> &str {
        self.pool.address()
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

//! The `rateLimit` policy, compiled. Each limit is a GCRA token bucket of capacity
//! `requests + burst`, refilled at `requests` per `per`; the buckets themselves are live state
//! in the side tables ([`crate::side::buckets`]), kept across swaps and bounded by `maxKeys`.
//! An evicted key that comes back starts with full buckets, so under a flood of more distinct
//! keys than `maxKeys` an active key can get up to one more capacity.

use std::sync::Arc;

use gateway_proto::{v1, validate::MAX_LIMITS};
use http::{HeaderName, HeaderValue};

use crate::side::{
    buckets::{Buckets, Counted, Limit},
    shared_limits::{ClusterLimit, SharedLimits},
};

/// Keys tracked where the policy sets no `maxKeys`.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// What a rate limit counts by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    ClientIp,
    Consumer,
    Header(HeaderName),
    Route,
}

#[derive(Debug)]
pub struct RateLimit {
    limits: Box<[Limit]>,
    pub key: Key,
    buckets: Arc<Buckets>,
    /// `scope: Cluster`: the buckets are estimates of the shared ones.
    cluster: Option<Arc<ClusterLimit>>,
    /// `RateLimit-Policy`, the same on every response.
    pub policy_header: HeaderValue,
    /// The policy's name in the `RateLimit` header.
    name: Box<str>,
}

/// A request counted against a policy.
#[derive(Debug)]
pub struct Verdict {
    pub allowed: bool,
    /// `RateLimit`: the tightest limit's remaining requests and seconds until it is full.
    pub header: HeaderValue,
    /// Whole seconds until a refused request could pass.
    pub retry_after: u64,
}

impl RateLimit {
    /// The policy `name`, with its buckets from `buckets` (the side table's, so that counts
    /// survive swaps).
    pub(crate) fn compile(
        name: &str,
        policy: &v1::RateLimitPolicy,
        buckets: impl FnOnce(usize) -> Arc<Buckets>,
    ) -> Self {
        use v1::rate_limit_policy::Key as Spec;
        let limits: Box<[Limit]> = policy
            .limits
            .iter()
            .take(MAX_LIMITS)
            .filter_map(|limit| {
                let per = limit
                    .per
                    .as_ref()
                    .and_then(gateway_proto::duration::from_proto)?;
                let per = u64::try_from(per.as_nanos()).unwrap_or(u64::MAX);
                let interval = (per / limit.requests.max(1)).max(1);
                let capacity = limit.requests.saturating_add(limit.burst).max(1);
                Some(Limit {
                    interval,
                    tolerance: interval.saturating_mul(capacity - 1),
                })
            })
            .collect();
        let key = match policy.key() {
            Spec::ClientIp => Key::ClientIp,
            Spec::Consumer => Key::Consumer,
            Spec::Route => Key::Route,
            Spec::Header => {
                HeaderName::from_bytes(policy.header.as_bytes()).map_or(Key::Route, Key::Header)
            }
        };
        // draft-ietf-httpapi-ratelimit-headers: one item per limit, quota and window.
        let policy_header = policy
            .limits
            .iter()
            .map(|limit| {
                let window = limit
                    .per
                    .as_ref()
                    .and_then(gateway_proto::duration::from_proto)
                    .map_or(0, |d| d.as_secs().max(1));
                format!(
                    "\"{name}\";q={};w={window}",
                    limit.requests.saturating_add(limit.burst)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let max_keys = Self::max_keys(policy);
        Self {
            limits,
            key,
            buckets: buckets(max_keys),
            cluster: None,
            policy_header: HeaderValue::from_str(&policy_header)
                .unwrap_or_else(|_| HeaderValue::from_static("")),
            name: name.into(),
        }
    }

    /// The buckets, shared with the side tables.
    pub fn buckets(&self) -> &Arc<Buckets> {
        &self.buckets
    }

    /// Makes the limit one shared by every data plane (`scope: Cluster`), its live state
    /// found in `shared` by `side_key`.
    pub(crate) fn share(&mut self, shared: &SharedLimits, side_key: String, max_keys: usize) {
        // A change of limits starts new shared buckets, as it starts new local ones.
        let prefix = format!(
            "gateway:rl:{}:{:08x}:",
            self.name,
            crc32fast::hash(side_key.as_bytes())
        );
        let limits = self.limits.clone();
        self.cluster = Some(shared.limit(side_key, |link| {
            ClusterLimit::new(prefix, limits, max_keys, link)
        }));
    }

    /// The shared state of a Cluster limit.
    pub fn cluster(&self) -> Option<&Arc<ClusterLimit>> {
        self.cluster.as_ref()
    }

    /// Counts a request of `key` (admitted only if every limit has room).
    pub fn check(&self, key: &[u8]) -> Verdict {
        let counted: Counted = match &self.cluster {
            None => self.buckets.count(key, &self.limits),
            Some(cluster) => cluster.count(key),
        };
        let header = format!(
            "\"{}\";r={};t={}",
            self.name,
            counted.remaining,
            ceil_secs(counted.reset)
        );
        Verdict {
            allowed: counted.allowed,
            header: HeaderValue::from_str(&header).unwrap_or_else(|_| HeaderValue::from_static("")),
            retry_after: ceil_secs(counted.retry).max(1),
        }
    }

    pub(crate) fn max_keys(policy: &v1::RateLimitPolicy) -> usize {
        policy.max_keys.map_or(DEFAULT_MAX_KEYS, |n| n as usize)
    }

    /// The buckets' identity in the side table: a change of limits starts new ones.
    pub(crate) fn side_key(name: &str, policy: &v1::RateLimitPolicy) -> String {
        format!(
            "{name} {:?} {:?} {} {:?} {:?}",
            policy.limits,
            policy.key,
            policy.header,
            policy.max_keys.unwrap_or_default(),
            policy.scope
        )
    }
}

fn ceil_secs(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(requests: u64, per: i64, burst: u64, max_keys: Option<u32>) -> RateLimit {
        let spec = v1::RateLimitPolicy {
            limits: vec![v1::RateLimit {
                requests,
                per: Some(prost_types::Duration {
                    seconds: per,
                    nanos: 0,
                }),
                burst,
            }],
            max_keys,
            ..Default::default()
        };
        RateLimit::compile("p", &spec, |n| Arc::new(Buckets::new(n)))
    }

    #[test]
    fn admits_capacity_then_refuses_with_retry_after() {
        let limit = policy(5, 60, 0, None);
        let verdicts: Vec<_> = (0..8).map(|_| limit.check(b"client")).collect();
        assert_eq!(verdicts.iter().filter(|v| v.allowed).count(), 5);
        assert_eq!(verdicts[0].header, "\"p\";r=4;t=12");
        assert_eq!(verdicts[4].header, "\"p\";r=0;t=60");
        assert!(!verdicts[5].allowed);
        assert_eq!(verdicts[5].retry_after, 12);
        assert_eq!(limit.policy_header, "\"p\";q=5;w=60");
        // Another key has its own bucket.
        assert!(limit.check(b"other").allowed);
        let burst = policy(5, 60, 3, None);
        assert_eq!((0..10).filter(|_| burst.check(b"c").allowed).count(), 8);
    }

    #[test]
    fn distinct_keys_stay_under_the_cap() {
        let limit = policy(1, 3600, 0, Some(1000));
        for i in 0..100_000u32 {
            limit.check(&i.to_be_bytes());
        }
        assert!(limit.buckets.len() <= 1000 + 16, "{}", limit.buckets.len());
    }
}

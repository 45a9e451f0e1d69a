//! State that outlives a table swap: round-robin positions by upstream name (later health and
//! breaker state), rule split positions by route, connection pools by endpoint address, rate
//! limit buckets by policy ([`buckets`]), auth services' answers ([`auth_answers`]), the
//! service registry's instances ([`services`]), endpoints' DNS names and their last good
//! answers ([`dns`]), and compiled regular expressions by pattern,
//! so that a swap recompiles only the expressions that are new. A compile takes the entries
//! it needs; after a swap, the table prunes the entries it no longer names (this module knows
//! nothing of tables).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
};

use gateway_proto::RegexCache;
use regex::Regex;

pub mod auth_answers;
pub mod buckets;
pub mod dns;
pub mod services;
pub mod shared_limits;

use self::{
    auth_answers::AuthAnswers, buckets::Buckets, dns::Dns, services::Services,
    shared_limits::SharedLimits,
};
use crate::{
    connect::Connector,
    jwks::{Origin, RemoteKeys},
    pool::EndpointPool,
};

/// The side tables.
#[derive(Debug, Default)]
pub struct SideTables {
    upstreams: Mutex<HashMap<Arc<str>, Arc<UpstreamSide>>>,
    /// Idle upstream connections by endpoint address.
    pools: Mutex<HashMap<Box<str>, Arc<EndpointPool>>>,
    /// Anchored regular expressions by pattern as written, shared with validation.
    regexes: RegexCache,
    /// The position in each weighted rule's split, by route name and rule index.
    splits: Mutex<HashMap<SplitKey, Arc<AtomicUsize>>>,
    /// Rate limit buckets, by policy name and limits.
    buckets: Mutex<HashMap<String, Arc<Buckets>>>,
    /// Identity providers' key sets, by where they come from.
    key_sets: Mutex<HashMap<Origin, Arc<RemoteKeys>>>,
    /// Auth services' answers, by policy name and settings.
    auth_answers: Mutex<HashMap<String, Arc<AuthAnswers>>>,
    /// Cluster rate limits, and their link to Redis.
    shared_limits: SharedLimits,
    /// Active health checkers, by upstream, address and settings, while an upstream holds them.
    checkers: Mutex<HashMap<String, std::sync::Weak<crate::health::Checker>>>,
    /// The service registry's instances, for Upstreams with `discovery`.
    services: Services,
    /// Endpoints' DNS names, re-resolved while a table uses them.
    dns: Dns,
}

/// A weighted rule: its route's name and its index in the route.
type SplitKey = (Arc<str>, usize);

/// What an upstream keeps across swaps.
#[derive(Debug, Default)]
pub struct UpstreamSide {
    next: AtomicUsize,
    /// Requests in flight to the upstream (the circuit breaker's count).
    pub in_flight: std::sync::atomic::AtomicU32,
    /// Requests waiting for a connection: one being opened for them, or (HTTP/2) room on one
    /// (`maxPendingRequests`).
    pub pending: std::sync::atomic::AtomicU32,
    /// The HTTP/2 connections it has open, over all its endpoints (`maxConnections`).
    pub h2_connections: Arc<std::sync::atomic::AtomicU32>,
    /// The retry budget: a token for every request on a retrying rule, five per retry.
    retry_tokens: std::sync::atomic::AtomicU32,
    /// Retries in flight, three of which the budget always allows.
    retries_in_flight: std::sync::atomic::AtomicU32,
    /// Its endpoints' live state, by address.
    endpoints: Mutex<HashMap<Box<str>, Arc<crate::health::EndpointState>>>,
}

/// Tokens a retry costs: retries are at most a fifth of the requests.
const RETRY_COST: u32 = 5;
/// The most tokens kept, so that a quiet period does not bank a storm's worth of retries.
const RETRY_TOKENS_MAX: u32 = 100 * RETRY_COST;
/// Retries allowed at once whatever the budget (Envoy's `min_retry_concurrency`).
const MIN_RETRY_CONCURRENCY: u32 = 3;

/// A retry the budget allows, held for a try that may need one, in flight until dropped.
#[derive(Debug)]
pub struct RetryPermit {
    side: Arc<UpstreamSide>,
    paid: bool,
}

impl RetryPermit {
    /// The try needed no retry: its tokens go back.
    pub fn refund(self) {
        if self.paid {
            let _ =
                self.side
                    .retry_tokens
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                        Some(t.saturating_add(RETRY_COST).min(RETRY_TOKENS_MAX))
                    });
        }
    }
}

impl Drop for RetryPermit {
    fn drop(&mut self) {
        self.side.retries_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl UpstreamSide {
    /// A request on a rule that retries: the budget grows.
    pub fn deposit(&self) {
        let _ = self
            .retry_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t < RETRY_TOKENS_MAX).then_some(t + 1)
            });
    }

    /// A retry, if the budget allows one.
    pub fn retry(self: &Arc<Self>) -> Option<RetryPermit> {
        let paid = self
            .retry_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                t.checked_sub(RETRY_COST)
            })
            .is_ok();
        let running = self.retries_in_flight.fetch_add(1, Ordering::Relaxed);
        if paid || running < MIN_RETRY_CONCURRENCY {
            return Some(RetryPermit {
                side: self.clone(),
                paid,
            });
        }
        self.retries_in_flight.fetch_sub(1, Ordering::Relaxed);
        None
    }

    /// The live state of the endpoint at `address`, created on first use.
    pub fn endpoint(&self, address: &str) -> Arc<crate::health::EndpointState> {
        lock(&self.endpoints)
            .entry(address.into())
            .or_default()
            .clone()
    }

    /// Keeps the endpoints whose address `keep` accepts.
    pub fn retain_endpoints(&self, keep: impl Fn(&str) -> bool) {
        lock(&self.endpoints).retain(|address, _| keep(address));
    }
}

// === impl SideTables ===

impl SideTables {
    /// Side tables that re-resolve endpoints' DNS names with `dns` (the default: they do not).
    pub fn with_dns(dns: Dns) -> Self {
        Self {
            dns,
            ..Self::default()
        }
    }

    /// The entry of an upstream, created on first use.
    pub fn upstream(&self, name: &str) -> Arc<UpstreamSide> {
        let mut upstreams = self
            .upstreams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(side) = upstreams.get(name) {
            return side.clone();
        }
        let side = Arc::new(UpstreamSide::default());
        upstreams.insert(name.into(), side.clone());
        side
    }

    /// The pool of connections to `address` made the way `kind` says (none: plain
    /// HTTP/1.1), created with `connector` on first use.
    pub fn pool(
        &self,
        address: &str,
        kind: Option<&str>,
        connector: &Connector,
    ) -> Arc<EndpointPool> {
        let key = match kind {
            None => address.to_owned(),
            Some(kind) => format!("{address} {kind}"),
        };
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = pools.get(key.as_str()) {
            return pool.clone();
        }
        let pool = Arc::new(EndpointPool::new(address, &key, connector.clone()));
        pools.insert(key.into(), pool.clone());
        pool
    }

    /// The buckets of a rate limit (`key`: its name and limits), created on first use with
    /// room for `max_keys` keys.
    pub fn buckets(&self, key: String, max_keys: usize) -> Arc<Buckets> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        buckets
            .entry(key)
            .or_insert_with(|| Arc::new(Buckets::new(max_keys)))
            .clone()
    }

    /// The active checker of `address` in upstream `upstream` with these settings: the one
    /// running, or a new one from `start`.
    pub fn checker(
        &self,
        upstream: &str,
        address: &str,
        settings: &crate::health::Settings,
        start: impl FnOnce() -> Arc<crate::health::Checker>,
    ) -> Arc<crate::health::Checker> {
        let key = format!("{upstream} {}", settings.key(address));
        let mut checkers = lock(&self.checkers);
        if let Some(running) = checkers.get(&key).and_then(std::sync::Weak::upgrade) {
            return running;
        }
        checkers.retain(|_, checker| checker.strong_count() > 0);
        let checker = start();
        checkers.insert(key, Arc::downgrade(&checker));
        checker
    }

    /// The registry's instances as the control plane last sent them.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Endpoints' DNS names and their answers.
    pub fn dns(&self) -> &Dns {
        &self.dns
    }

    /// The Cluster rate limits.
    pub fn shared_limits(&self) -> &SharedLimits {
        &self.shared_limits
    }

    /// The kept answers of an external auth policy (`key`: its name and settings), created
    /// on first use with room for `max_entries`.
    pub fn auth_answers(&self, key: String, max_entries: usize) -> Arc<AuthAnswers> {
        lock(&self.auth_answers)
            .entry(key)
            .or_insert_with(|| Arc::new(AuthAnswers::new(max_entries)))
            .clone()
    }

    /// Keeps the auth answers `keep` accepts (those a table's policies hold).
    pub fn retain_auth_answers(&self, keep: impl Fn(&Arc<AuthAnswers>) -> bool) {
        lock(&self.auth_answers).retain(|_, answers| keep(answers));
    }

    /// The anchored expression for `pattern`, compiled once while some table uses it.
    pub fn regex(&self, pattern: &str) -> Result<Regex, String> {
        self.regexes.get_or_compile(pattern)
    }

    /// The regular expressions of the current and the next table, for validation.
    pub fn regexes(&self) -> &RegexCache {
        &self.regexes
    }

    /// The split position of rule `rule` of route `route`, created on first use.
    pub fn split(&self, route: &Arc<str>, rule: usize) -> Arc<AtomicUsize> {
        lock(&self.splits)
            .entry((route.clone(), rule))
            .or_default()
            .clone()
    }

    /// Keeps the upstream entries whose name `keep` accepts.
    pub fn retain_upstreams(&self, keep: impl Fn(&str) -> bool) {
        lock(&self.upstreams).retain(|name, _| keep(name));
    }

    /// Keeps the pools whose key ([`EndpointPool::key`]) `keep` accepts.
    pub fn retain_pools(&self, keep: impl Fn(&str) -> bool) {
        lock(&self.pools).retain(|key, _| keep(key));
    }

    /// The key set from `origin`, its background fetching started on first use.
    pub fn key_set(&self, origin: Origin) -> Arc<RemoteKeys> {
        lock(&self.key_sets)
            .entry(origin.clone())
            .or_insert_with(|| RemoteKeys::start(origin))
            .clone()
    }

    /// Keeps the key sets whose origin `keep` accepts (those a table's providers use).
    pub fn retain_key_sets(&self, keep: impl Fn(&Origin) -> bool) {
        lock(&self.key_sets).retain(|origin, _| keep(origin));
    }

    /// Keeps the rate limit buckets `keep` accepts (those a table's policies hold).
    pub fn retain_buckets(&self, keep: impl Fn(&Arc<Buckets>) -> bool) {
        lock(&self.buckets).retain(|_, buckets| keep(buckets));
    }

    /// Keeps the split positions of the routes `keep` accepts.
    pub fn retain_splits(&self, keep: impl Fn(&str) -> bool) {
        lock(&self.splits).retain(|(route, _), _| keep(route));
    }

    /// The number of upstream entries (for tests).
    pub fn len(&self) -> usize {
        self.upstreams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Side tables stay valid after a panic elsewhere: every entry is inserted whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl UpstreamSide ===

impl UpstreamSide {
    /// The next round-robin position.
    #[inline]
    pub fn next(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

//! State that outlives a table swap, keyed by upstream name: round-robin positions (later
//! health and breaker state), and the pooled HTTP clients; also compiled regular expressions,
//! keyed by pattern, so that a swap recompiles only the expressions that are new. A compile takes the entries it
//! needs; after a swap, entries that the new table no longer names are pruned.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use gateway_proto::RegexCache;
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

use regex::Regex;

use crate::{h1::EndpointPool, table::Table};

/// The pooled HTTP/1.1 client that forwards requests upstream.
pub type HttpClient = Client<HttpConnector, Incoming>;

/// How long an idle upstream connection stays in the pool.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The side tables.
#[derive(Debug, Default)]
pub struct SideTables {
    upstreams: Mutex<HashMap<Arc<str>, Arc<UpstreamSide>>>,
    /// One client per connect timeout (the connector holds the timeout); almost always one.
    clients: Mutex<HashMap<Duration, HttpClient>>,
    /// Idle upstream connections by endpoint address.
    pools: Mutex<HashMap<Box<str>, Arc<EndpointPool>>>,
    /// Anchored regular expressions by pattern as written, shared with validation.
    regexes: RegexCache,
}

/// What an upstream keeps across swaps.
#[derive(Debug, Default)]
pub struct UpstreamSide {
    next: AtomicUsize,
}

// === impl SideTables ===

impl SideTables {
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

    /// The shared client with this connect timeout.
    pub fn client(&self, connect_timeout: Duration) -> HttpClient {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .entry(connect_timeout)
            .or_insert_with(|| new_client(connect_timeout))
            .clone()
    }

    /// The pool of idle connections to `address`, created on first use.
    pub fn pool(&self, address: &str) -> Arc<EndpointPool> {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = pools.get(address) {
            return pool.clone();
        }
        let pool = Arc::new(EndpointPool::new(address));
        pools.insert(address.into(), pool.clone());
        pool
    }

    /// The anchored expression for `pattern`, compiled once while some table uses it.
    pub fn regex(&self, pattern: &str) -> Result<Regex, String> {
        self.regexes.get_or_compile(pattern)
    }

    /// The regular expressions of the current and the next table, for validation.
    pub fn regexes(&self) -> &RegexCache {
        &self.regexes
    }

    /// Drops entries that `table` no longer uses.
    pub fn prune(&self, table: &Table) {
        self.regexes.retain(|pattern| table.uses_regex(pattern));
        self.upstreams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| table.upstream(name).is_some());
        let addresses: std::collections::HashSet<&str> = table
            .upstreams()
            .flat_map(|u| u.endpoints())
            .map(|e| e.authority().as_str())
            .collect();
        self.pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|address, _| addresses.contains(&**address));
        // A client stays while an upstream of the table still holds it; the default stays
        // always, so the common pool is never rebuilt.
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|timeout, _| {
                *timeout == crate::table::DEFAULT_CONNECT_TIMEOUT
                    || table.upstreams().any(|u| u.connect_timeout() == *timeout)
            });
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

fn new_client(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(true);
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

// === impl UpstreamSide ===

impl UpstreamSide {
    /// The next round-robin position.
    #[inline]
    pub fn next(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

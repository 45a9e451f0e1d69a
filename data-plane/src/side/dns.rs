//! The DNS names of upstream endpoints, re-resolved in the background. For each `host:port`
//! that a compiled table names (not an IP literal, not `localhost` or a hosts-file name: those
//! stay resolved at connect time, see [`resolve`]), the last good answer (every A and AAAA
//! record, sorted and de-duplicated) and one task that asks again every refresh, or sooner when
//! the records' TTL is shorter. A failure (no answer in time, NXDOMAIN, SERVFAIL, no address)
//! keeps the last good answer: it is logged once per outage, counted, and retried at the next
//! refresh.
//!
//! A name is watched while a compiled table holds its [`Name`]; this table keeps it weakly, as
//! it does the active health checkers, and the last holder dropping it stops the task. A
//! changed answer bumps a [`watch`] channel ([`Dns::changes`]) that the configuration sources
//! wait on to recompile the upstreams that use the name. Nothing here ever blocks a compile:
//! a name with no answer yet is left to the caller to keep as one endpoint, resolved at
//! connect time as it would be without this table.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use tokio::{sync::watch, task::AbortHandle};

use crate::config::DnsSettings;

mod resolve;

use self::resolve::Resolver;

/// The re-resolved names of one data plane.
#[derive(Debug, Default)]
pub struct Dns {
    /// `None`: re-resolution is off (`--dns-refresh off`, or no resolver configuration).
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    resolver: Resolver,
    refresh: Duration,
    /// The names being watched, while a table holds them.
    names: Mutex<HashMap<Box<str>, Weak<Name>>>,
    /// Bumped when an answer changed (or a table was swapped in with an older one).
    changed: watch::Sender<u64>,
    successes: AtomicU64,
    failures: AtomicU64,
}

/// One watched `host:port`: its answers, and the task that refreshes them while this lives.
#[derive(Debug)]
pub struct Name {
    address: Box<str>,
    host: Arc<str>,
    entry: Arc<Entry>,
    task: Option<AbortHandle>,
}

/// What the task writes and compiles read.
#[derive(Debug)]
struct Entry {
    port: u16,
    status: Mutex<Status>,
}

#[derive(Debug, Default)]
struct Status {
    answer: Option<Answer>,
    /// When a lookup last succeeded.
    resolved_at: Option<SystemTime>,
    /// When the current outage began, if lookups are failing.
    failing_since: Option<SystemTime>,
    /// Why the last lookup failed, while they fail.
    error: Option<String>,
}

/// One answer of a name: its addresses, sorted. A new `Answer` is made only when they change,
/// so that whether a table compiled with the current one is a pointer comparison.
#[derive(Clone, Debug)]
pub struct Answer(Arc<[SocketAddr]>);

/// What one lookup's result did to a name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// The addresses changed (the first answer included).
    pub(crate) changed: bool,
    /// It failed, and the one before did not: an outage begins.
    pub(crate) outage_began: bool,
    /// It succeeded after failures: the outage is over.
    pub(crate) recovered: bool,
}

/// A name's state, for `/config`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub addresses: Vec<SocketAddr>,
    pub resolved_at: Option<SystemTime>,
    pub failing_since: Option<SystemTime>,
    pub error: Option<String>,
}

/// The shortest refresh that a short TTL can bring (a longer `--dns-refresh` never waits less).
const MIN_REFRESH: Duration = Duration::from_secs(1);

// === impl Dns ===

impl Dns {
    /// Re-resolution as `settings` say; off when they say so, or (logged) when no resolver
    /// can be configured.
    pub fn new(settings: &DnsSettings) -> Self {
        let Some(refresh) = settings.refresh.filter(|r| !r.is_zero()) else {
            return Self::default();
        };
        match Resolver::new(settings.server, refresh) {
            Ok(resolver) => Self {
                inner: Some(Arc::new(Inner {
                    resolver,
                    refresh,
                    names: Mutex::default(),
                    changed: watch::Sender::new(0),
                    successes: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                })),
            },
            Err(error) => {
                tracing::warn!(%error, "no DNS resolver: endpoint names are resolved at each connect instead");
                Self::default()
            }
        }
    }

    /// Whether names are re-resolved at all.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// The watched name of endpoint `address`, its task started on first use; `None` when the
    /// address is no name to re-resolve (an IP literal, `localhost`, a hosts-file name, not
    /// `host:port`) or re-resolution is off.
    pub fn name(&self, address: &str) -> Option<Arc<Name>> {
        let inner = self.inner.as_ref()?;
        if address.parse::<SocketAddr>().is_ok() {
            return None;
        }
        let (host, port) = address.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() {
            return None;
        }
        let mut names = lock(&inner.names);
        if let Some(name) = names.get(address).and_then(Weak::upgrade) {
            return Some(name);
        }
        if inner.resolver.is_static(host) {
            return None;
        }
        names.retain(|_, name| name.strong_count() > 0);
        let host: Arc<str> = host.into();
        let entry = Arc::new(Entry {
            port,
            status: Mutex::default(),
        });
        // Without a runtime (a compile in a unit test) nothing is resolved: the endpoint
        // stays a name.
        let task = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let task = refresh(inner.clone(), address.into(), host.clone(), entry.clone());
            runtime.spawn(task).abort_handle()
        });
        let name = Arc::new(Name {
            address: address.into(),
            host,
            entry,
            task,
        });
        names.insert(address.into(), Arc::downgrade(&name));
        Some(name)
    }

    /// A receiver that sees a change whenever a name's answer changed; `None` when
    /// re-resolution is off.
    pub fn changes(&self) -> Option<watch::Receiver<u64>> {
        self.inner.as_ref().map(|inner| inner.changed.subscribe())
    }

    /// Wakes the receivers of [`Dns::changes`]: a table was swapped in that was compiled with
    /// an answer older than the current one.
    pub fn nudge(&self) {
        if let Some(inner) = &self.inner {
            inner.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Every watched name's state, by `host:port`.
    pub fn report(&self) -> BTreeMap<String, Report> {
        let Some(inner) = &self.inner else {
            return BTreeMap::new();
        };
        lock(&inner.names)
            .values()
            .filter_map(Weak::upgrade)
            .map(|name| (name.address.to_string(), name.report()))
            .collect()
    }

    /// Lookups that succeeded and failed so far.
    pub fn resolutions(&self) -> (u64, u64) {
        self.inner.as_ref().map_or((0, 0), |inner| {
            (
                inner.successes.load(Ordering::Relaxed),
                inner.failures.load(Ordering::Relaxed),
            )
        })
    }

    /// The names being watched.
    pub fn watched(&self) -> usize {
        self.inner.as_ref().map_or(0, |inner| {
            lock(&inner.names)
                .values()
                .filter(|name| name.strong_count() > 0)
                .count()
        })
    }
}

/// The task of one name: a lookup now, then one every refresh, until its [`Name`] is dropped.
async fn refresh(inner: Arc<Inner>, address: Box<str>, host: Arc<str>, entry: Arc<Entry>) {
    loop {
        let (result, ttl) = match inner.resolver.lookup(&host, entry.port).await {
            Ok((addresses, ttl)) => (Ok(addresses), ttl),
            Err(error) => (Err(error), None),
        };
        let failed = result.as_ref().err().cloned();
        let recorded = entry.record(result, SystemTime::now());
        let counter = if failed.is_some() {
            &inner.failures
        } else {
            &inner.successes
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match failed {
            Some(error) if recorded.outage_began => match entry.answer() {
                Some(kept) => {
                    let kept = kept.addresses().len();
                    tracing::warn!(name = &*address, %error, kept, "DNS lookup failed; keeping the last good answer");
                }
                None => {
                    tracing::warn!(name = &*address, %error, "DNS lookup failed; the name is resolved at each connect until it answers");
                }
            },
            Some(error) => tracing::debug!(name = &*address, %error, "DNS lookup failed again"),
            None if recorded.recovered => {
                tracing::info!(name = &*address, "DNS lookups succeed again");
            }
            None => {}
        }
        if recorded.changed {
            let addresses = entry.answer().map_or(0, |a| a.addresses().len());
            tracing::info!(name = &*address, addresses, "DNS answer changed");
            inner.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
        tokio::time::sleep(next_refresh(inner.refresh, ttl)).await;
    }
}

/// When to ask again: after the refresh, or after the records' TTL when that is shorter, but
/// not sooner than [`MIN_REFRESH`] (or the refresh, if that is shorter still).
pub(crate) fn next_refresh(refresh: Duration, ttl: Option<Duration>) -> Duration {
    let floor = refresh.min(MIN_REFRESH);
    ttl.map_or(refresh, |ttl| ttl.clamp(floor, refresh))
}

// === impl Name ===

impl Name {
    /// `host:port`, as the endpoint names it.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The host: the TLS server name of the addresses it resolves to.
    pub fn host(&self) -> &Arc<str> {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.entry.port
    }

    /// The last good answer; `None` before the first.
    pub fn answer(&self) -> Option<Answer> {
        self.entry.answer()
    }

    /// Whether `compiled` (what a table compiled with) is still the current answer.
    pub fn is_current(&self, compiled: Option<&Answer>) -> bool {
        match (self.answer(), compiled) {
            (None, None) => true,
            (Some(now), Some(then)) => Arc::ptr_eq(&now.0, &then.0),
            _ => false,
        }
    }

    fn report(&self) -> Report {
        let status = lock(&self.entry.status);
        Report {
            addresses: status
                .answer
                .as_ref()
                .map(|a| a.addresses().to_vec())
                .unwrap_or_default(),
            resolved_at: status.resolved_at,
            failing_since: status.failing_since,
            error: status.error.clone(),
        }
    }

    /// Whether its task still runs (for tests).
    pub fn is_refreshing(&self) -> bool {
        self.task.as_ref().is_some_and(|task| !task.is_finished())
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

// === impl Entry ===

impl Entry {
    fn answer(&self) -> Option<Answer> {
        lock(&self.status).answer.clone()
    }

    /// Takes one lookup's result: new addresses replace the answer, a failure (or an answer
    /// with no address) keeps it.
    fn record(&self, result: Result<Vec<SocketAddr>, String>, now: SystemTime) -> Recorded {
        let result = result.and_then(|mut addresses| {
            addresses.sort_unstable();
            addresses.dedup();
            if addresses.is_empty() {
                Err("the answer has no address".to_owned())
            } else {
                Ok(addresses)
            }
        });
        let mut status = lock(&self.status);
        match result {
            Ok(addresses) => {
                let changed = status
                    .answer
                    .as_ref()
                    .is_none_or(|answer| *answer.0 != *addresses);
                if changed {
                    status.answer = Some(Answer(addresses.into()));
                }
                status.resolved_at = Some(now);
                status.error = None;
                Recorded {
                    changed,
                    outage_began: false,
                    recovered: status.failing_since.take().is_some(),
                }
            }
            Err(error) => {
                let outage_began = status.failing_since.is_none();
                if outage_began {
                    status.failing_since = Some(now);
                }
                status.error = Some(error);
                Recorded {
                    outage_began,
                    ..Recorded::default()
                }
            }
        }
    }
}

// === impl Answer ===

impl Answer {
    /// The addresses, sorted, each once.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.0
    }
}

/// Entries stay valid after a panic elsewhere: every one is written whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
pub(crate) mod nameserver;
#[cfg(test)]
mod tests;

//! The state that the listeners, the admin endpoint and the configuration sources share: the
//! current table behind one `ArcSwap`, the side tables, the counters, and the request-path
//! settings given at start-up.

use std::sync::{
    Arc,
    atomic::{AtomicI64, AtomicUsize, Ordering},
};

use arc_swap::{ArcSwapOption, Guard};

pub use crate::config::{Settings, UnderscoreHeaders};
use crate::{metrics::Metrics, side::SideTables, table::Table};

/// Shared by everything in one data plane.
#[derive(Debug)]
pub struct State {
    table: ArcSwapOption<Table>,
    side: SideTables,
    metrics: Metrics,
    settings: Settings,
    in_flight: AtomicUsize,
    open_connections: AtomicUsize,
    /// The version of the configuration in the disk cache; -1 for none written.
    cached_version: AtomicI64,
}

/// A request counted against `--max-requests` until dropped.
#[derive(Debug)]
pub(crate) struct InFlight<'a>(Option<&'a AtomicUsize>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(count) = self.0 {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Like [`InFlight`], for a request that outlives the borrow (an HTTP/2 stream's exchange).
#[derive(Debug)]
pub(crate) struct OwnedInFlight(Option<Arc<State>>);

impl Drop for OwnedInFlight {
    fn drop(&mut self) {
        if let Some(state) = &self.0 {
            state.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

// === impl State ===

impl State {
    pub fn new(settings: Settings) -> Self {
        Self {
            table: ArcSwapOption::empty(),
            side: SideTables::with_dns(crate::side::dns::Dns::new(&settings.dns)),
            metrics: Metrics::default(),
            settings,
            in_flight: AtomicUsize::new(0),
            open_connections: AtomicUsize::new(0),
            cached_version: AtomicI64::new(-1),
        }
    }

    /// The current table, for a short synchronous look (never hold it across `.await`).
    #[inline]
    pub fn load(&self) -> Guard<Option<Arc<Table>>> {
        self.table.load()
    }

    /// The current table, owned.
    pub fn table(&self) -> Option<Arc<Table>> {
        self.table.load_full()
    }

    /// The version of the current table, 0 when none.
    pub fn version(&self) -> i64 {
        self.table.load().as_ref().map_or(0, |t| t.version())
    }

    /// Swaps in a new table (one store), then prunes side tables it no longer uses.
    pub fn install(&self, table: Table) -> Arc<Table> {
        let table = Arc::new(table);
        self.table.store(Some(table.clone()));
        table.prune_side(&self.side);
        // An answer that changed while this table compiled: the sources recompile for it (a
        // change signalled before the store found the table before this one to update).
        if table.upstreams().any(|u| !u.dns_is_current()) {
            self.side.dns().nudge();
        }
        self.metrics.swapped();
        table
    }

    /// The version the disk cache holds, once this process wrote (or read) one.
    pub fn cached_version(&self) -> Option<i64> {
        let version = self.cached_version.load(Ordering::Acquire);
        (version >= 0).then_some(version)
    }

    pub(crate) fn set_cached_version(&self, version: i64) {
        self.cached_version.store(version, Ordering::Release);
    }

    pub fn side(&self) -> &SideTables {
        &self.side
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Counts a request in flight; `None` when `--max-requests` are in flight already.
    /// Without a limit nothing is counted (no shared cache line on the request path).
    #[inline]
    pub(crate) fn admit(&self) -> Option<InFlight<'_>> {
        let max = self.settings.max_requests;
        if max == 0 {
            return Some(InFlight(None));
        }
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(Some(&self.in_flight));
        (before < max).then_some(guard)
    }

    /// [`State::admit`], holding the state rather than borrowing it.
    #[inline]
    pub(crate) fn admit_owned(self: &Arc<Self>) -> Option<OwnedInFlight> {
        let max = self.settings.max_requests;
        if max == 0 {
            return Some(OwnedInFlight(None));
        }
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = OwnedInFlight(Some(self.clone()));
        (before < max).then_some(guard)
    }

    /// Open client connections (counted by the listener).
    pub(crate) fn open_connections(&self) -> &AtomicUsize {
        &self.open_connections
    }
}

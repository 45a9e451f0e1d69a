//! The state that the listeners, the admin endpoint and the configuration sources share: the
//! current table behind one `ArcSwap`, the side tables and the counters.

use std::sync::Arc;

use arc_swap::{ArcSwapOption, Guard};

use crate::{config::TrustedPeers, metrics::Metrics, side::SideTables, table::Table};

/// Shared by everything in one data plane.
#[derive(Debug)]
pub struct State {
    table: ArcSwapOption<Table>,
    side: SideTables,
    metrics: Metrics,
    trusted_peers: TrustedPeers,
}

// === impl State ===

impl State {
    pub fn new(trusted_peers: TrustedPeers) -> Self {
        Self {
            table: ArcSwapOption::empty(),
            side: SideTables::default(),
            metrics: Metrics::default(),
            trusted_peers,
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
        self.side.prune(&table);
        self.metrics.swapped();
        table
    }

    pub fn side(&self) -> &SideTables {
        &self.side
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn trusted_peers(&self) -> &TrustedPeers {
        &self.trusted_peers
    }
}

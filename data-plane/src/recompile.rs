//! Recompiling some upstreams of the configuration being served when something that is not
//! configuration changed under them: the registry's instances of a service (`subscriber`), or
//! the answer of a DNS name that their endpoints list (both sources, [`on_dns_changes`]). The
//! upstreams and the routes that hold them are compiled again, as for a delta that changed
//! those upstreams, off the request path, and the table is swapped in whole with its version
//! and source: nothing is acknowledged, and nothing is written to the disk cache.

use std::{sync::Arc, time::Instant};

use gateway_proto::{
    ResourceKind,
    v1::{self, resource::Spec},
    validate::Graph,
};
use tokio::sync::watch;

use crate::{state::State, table::Table};

/// The table of `resources` (sorted by kind and name, what `table` was compiled from) with the
/// upstreams `names` and the routes that refer to them compiled again; `None` (logged) when
/// it no longer compiles.
pub(crate) fn upstreams(
    state: &State,
    table: &Table,
    resources: &[v1::Resource],
    graph: &mut Graph,
    names: &[&str],
) -> Option<Table> {
    let version = table.version();
    let keys: Vec<(ResourceKind, &str)> = names
        .iter()
        .map(|name| (ResourceKind::Upstream, *name))
        .collect();
    let next = match graph.check_changed(resources, &keys, state.side().regexes()) {
        Ok(routes) => {
            let upstreams: Vec<(&str, Option<&v1::UpstreamSpec>)> = names
                .iter()
                .map(|name| (*name, upstream_spec(resources, name)))
                .collect();
            table.update(version, &[], &routes, &upstreams, state.side())
        }
        // An upstream with a client certificate, or an auth service's: compiled whole, as a
        // delta that touched it would be.
        Err(_) => match Table::compile(version, resources, table.source(), state.side()) {
            Ok(table) => table,
            Err(error) => {
                // It compiled before with other endpoints; validation does not look at them.
                tracing::error!(%error, "the configuration no longer compiles");
                return None;
            }
        },
    };
    Some(next.with_source(table.source()))
}

/// The upstreams of `resources` that `pick` accepts the spec of.
pub(crate) fn upstreams_where(
    resources: &[v1::Resource],
    pick: impl Fn(&v1::UpstreamSpec) -> bool,
) -> Vec<&str> {
    resources
        .iter()
        .filter_map(|r| match &r.spec {
            Some(Spec::Upstream(spec)) if pick(spec) => Some(r.name.as_str()),
            _ => None,
        })
        .collect()
}

/// Swaps in a table whose upstreams use their DNS names' current answers, when the one served
/// was compiled with older ones. `resources` (sorted) and `graph` are configuration `version`,
/// what the table served was compiled from; the caller holds them locked, so that no other
/// compile swaps in meanwhile.
pub(crate) fn refresh_names(
    state: &State,
    version: i64,
    resources: &[v1::Resource],
    graph: &mut Graph,
) {
    let Some(table) = state.table().filter(|t| t.version() == version) else {
        return;
    };
    let started = Instant::now();
    let mut stale: Vec<&str> = table
        .upstreams()
        .filter(|u| !u.dns_is_current())
        .map(|u| &**u.name())
        .collect();
    if stale.is_empty() {
        return;
    }
    stale.sort_unstable();
    let Some(next) = upstreams(state, &table, resources, graph, &stale) else {
        return;
    };
    state.install(next);
    tracing::info!(
        version = table.version(),
        upstreams = stale.len(),
        elapsed = ?started.elapsed(),
        "new DNS answers swapped in"
    );
}

/// Runs `recompile` on a blocking thread whenever a DNS answer changed (or a table compiled
/// with an older one was swapped in), until `shutdown` turns true. Changes while it runs are
/// taken together by the next run. Returns at once when re-resolution is off.
pub(crate) async fn on_dns_changes(
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
    recompile: impl Fn(&State) + Clone + Send + 'static,
) {
    let Some(mut changes) = state.side().dns().changes() else {
        return;
    };
    // An answer may have come in before this subscribed (after the first table was compiled
    // without it): the first pass does not wait.
    changes.mark_changed();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
        let (state, recompile) = (state.clone(), recompile.clone());
        if let Err(error) = tokio::task::spawn_blocking(move || recompile(&state)).await {
            tracing::error!(%error, "recompiling for new DNS answers failed");
        }
    }
}

fn upstream_spec<'r>(resources: &'r [v1::Resource], name: &str) -> Option<&'r v1::UpstreamSpec> {
    let at = resources
        .binary_search_by(|r| {
            (ResourceKind::of(r), r.name.as_str()).cmp(&(Some(ResourceKind::Upstream), name))
        })
        .ok()?;
    match &resources[at].spec {
        Some(Spec::Upstream(spec)) => Some(spec),
        _ => None,
    }
}

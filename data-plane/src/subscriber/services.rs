//! What the subscriber does with a `Services` message: it keeps the instances in the side
//! tables and, when a service's changed, recompiles the upstreams that discover it (and the
//! routes that hold them) on a blocking thread and swaps the result in, like a delta that
//! changed those upstreams ([`crate::recompile`]). The configuration and its version stay as
//! they are: nothing is answered, and nothing is written to the disk cache.

use std::{
    sync::{Arc, PoisonError},
    time::Instant,
};

use gateway_proto::v1;

use super::held::{Held, Shared};
use crate::{recompile, state::State};

/// Takes the instances, and swaps in a table that uses them if an upstream uses them.
pub(super) async fn apply(state: &Arc<State>, held: &Shared, message: v1::Services) {
    let (state, held) = (state.clone(), held.clone());
    let work = tokio::task::spawn_blocking(move || {
        let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
        apply_blocking(&state, held.as_mut(), message);
    });
    if let Err(error) = work.await {
        tracing::error!(%error, "recompiling for new service instances failed");
    }
}

fn apply_blocking(state: &State, held: Option<&mut Held>, message: v1::Services) {
    let started = Instant::now();
    let changed = state.side().services().apply(message);
    if changed.is_empty() {
        return;
    }
    for service in &changed {
        tracing::debug!(%service, instances = state.side().services().endpoints(service).len(), "service instances changed");
    }
    // Without a configuration yet, the first one is compiled with them.
    let (Some(held), Some(table)) = (held, state.table()) else {
        return;
    };
    let resources = &held.snapshot.resources;
    let names = recompile::upstreams_where(resources, |spec| {
        spec.discovery
            .as_ref()
            .is_some_and(|d| changed.contains(d.service.as_str()))
    });
    if names.is_empty() {
        return;
    }
    let Some(next) = recompile::upstreams(state, &table, resources, &mut held.graph, &names) else {
        return;
    };
    state.install(next);
    tracing::info!(
        version = table.version(),
        services = changed.len(),
        upstreams = names.len(),
        elapsed = ?started.elapsed(),
        "service instances swapped in"
    );
}

//! What the subscriber does with a `Services` message: it keeps the instances in the side
//! tables and, when a service's changed, recompiles the upstreams that discover it (and the
//! routes that hold them) on a blocking thread and swaps the result in, like a delta that
//! changed those upstreams. The configuration and its version stay as they are: nothing is
//! answered, and nothing is written to the disk cache.

use std::{
    collections::BTreeSet,
    sync::{Arc, PoisonError},
    time::Instant,
};

use gateway_proto::{
    ResourceKind,
    v1::{self, resource::Spec},
};

use super::held::{Held, Shared};
use crate::{state::State, table::Table};

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
    let names = upstreams_of(&held.snapshot.resources, &changed);
    if names.is_empty() {
        return;
    }
    let version = held.snapshot.version;
    let keys: Vec<(ResourceKind, &str)> = names
        .iter()
        .map(|name| (ResourceKind::Upstream, *name))
        .collect();
    let resources = &held.snapshot.resources;
    let next = match held
        .graph
        .check_changed(resources, &keys, state.side().regexes())
    {
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
                // It compiled before with other instances; validation does not look at them.
                tracing::error!(%error, "the configuration no longer compiles");
                return;
            }
        },
    };
    state.install(next.with_source(table.source()));
    tracing::info!(
        version,
        services = changed.len(),
        upstreams = names.len(),
        elapsed = ?started.elapsed(),
        "service instances swapped in"
    );
}

/// The upstreams that discover one of `services`.
fn upstreams_of<'r>(resources: &'r [v1::Resource], services: &BTreeSet<Arc<str>>) -> Vec<&'r str> {
    resources
        .iter()
        .filter_map(|r| match &r.spec {
            Some(Spec::Upstream(spec)) => {
                let service = spec.discovery.as_ref()?.service.as_str();
                services.contains(service).then_some(r.name.as_str())
            }
            _ => None,
        })
        .collect()
}

fn upstream_spec<'r>(resources: &'r [v1::Resource], name: &str) -> Option<&'r v1::UpstreamSpec> {
    resources.iter().find_map(|r| match &r.spec {
        Some(Spec::Upstream(spec)) if r.name == name => Some(spec),
        _ => None,
    })
}

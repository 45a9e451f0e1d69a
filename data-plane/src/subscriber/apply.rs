//! What the subscriber does with a configuration from the control plane: a snapshot replaces
//! what it holds, a delta is applied to it; the result is checked and compiled (in proportion
//! to the change when only routes changed) and swapped in (the cache writer writes it to disk
//! later), or refused and undone.

use std::{
    sync::{Arc, PoisonError},
    time::Instant,
};

use gateway_proto::{
    ResourceKind, delta,
    v1::{self, Ack, DataPlaneMessage, Nack, Resync, control_plane_message, data_plane_message},
    validate::Graph,
};

use super::{
    MAX_MESSAGE_BYTES,
    cache_writer::CacheWriter,
    held::{Held, Shared},
    message,
};
use crate::{
    cache,
    pipeline::Chain,
    state::State,
    table::{Source, Table},
};

/// A configuration as the control plane sent it.
pub(super) enum Update {
    Whole(v1::Snapshot),
    Delta(v1::Delta),
    /// Either of them, gzip-compressed.
    Packed(Vec<u8>),
}

/// What became of an update.
enum Applied {
    Swapped(i64),
    Refused {
        version: i64,
        reason: String,
    },
    /// It does not apply to what this data plane holds.
    Resync(String),
}

/// Applies an update to the configuration held, then compiles and swaps in the result, on a
/// blocking thread; the answer to send back. A refused result leaves `held` as it was.
pub(super) async fn apply(
    state: &Arc<State>,
    held: &Shared,
    writer: &CacheWriter,
    update: Update,
) -> DataPlaneMessage {
    let (shared, current) = (state.clone(), held.clone());
    let work = tokio::task::spawn_blocking(move || {
        let mut held = current.lock().unwrap_or_else(PoisonError::into_inner);
        let applied = apply_blocking(&shared, &mut held, update);
        let version = held.as_ref().map_or(0, Held::version);
        (applied, version)
    });
    let (applied, version) = match work.await {
        Ok(done) => done,
        Err(error) => {
            // What is held may be half changed: the next update must be whole.
            *held.lock().unwrap_or_else(PoisonError::into_inner) = None;
            let reason = format!("internal error while compiling: {error}");
            (Applied::Resync(reason), 0)
        }
    };
    match applied {
        Applied::Swapped(version) => {
            writer.changed();
            message(data_plane_message::Message::Ack(Ack { version }))
        }
        Applied::Refused { version, reason } => {
            state.metrics().rejected();
            tracing::warn!(version, %reason, "configuration refused; keeping the last good one");
            message(data_plane_message::Message::Nack(Nack { version, reason }))
        }
        Applied::Resync(reason) => {
            tracing::info!(held = version, %reason, "asking for the whole configuration");
            message(data_plane_message::Message::Resync(Resync { version }))
        }
    }
}

fn apply_blocking(state: &State, held: &mut Option<Held>, update: Update) -> Applied {
    let update = match update {
        Update::Packed(packed) => match delta::unpack(&packed, MAX_MESSAGE_BYTES) {
            Ok(v1::ControlPlaneMessage {
                message: Some(control_plane_message::Message::Snapshot(snapshot)),
            }) => Update::Whole(snapshot),
            Ok(v1::ControlPlaneMessage {
                message: Some(control_plane_message::Message::Delta(delta)),
            }) => Update::Delta(delta),
            Ok(_) => return Applied::Resync("a packed message holds no configuration".into()),
            Err(error) => return Applied::Resync(format!("unreadable packed message: {error}")),
        },
        other => other,
    };
    let started = Instant::now();
    match update {
        Update::Whole(mut snapshot) => {
            // Deltas find resources by key: keep them in the one order.
            delta::sort(&mut snapshot.resources);
            match swap_whole(state, &snapshot, started) {
                Ok(()) => {
                    let version = snapshot.version;
                    *held = Some(Held::new(snapshot));
                    Applied::Swapped(version)
                }
                Err(reason) => Applied::Refused {
                    version: snapshot.version,
                    reason,
                },
            }
        }
        Update::Delta(update) => {
            let Some(held) = held.as_mut() else {
                return Applied::Resync("a delta, and no configuration to apply it to".into());
            };
            let version = update.version;
            let changed = changed_keys(&update);
            let undo = match delta::apply(&mut held.snapshot, update) {
                Ok(undo) => undo,
                Err(error) => return Applied::Resync(error.to_string()),
            };
            match swap_delta(state, held, &changed, started) {
                Ok(()) => Applied::Swapped(version),
                Err(reason) => {
                    undo.revert(&mut held.snapshot);
                    Applied::Refused { version, reason }
                }
            }
        }
        Update::Packed(_) => Applied::Resync("a packed message inside a packed message".into()),
    }
}

/// The keys a delta puts or removes.
fn changed_keys(delta: &v1::Delta) -> Vec<(ResourceKind, String)> {
    let put = delta
        .resources
        .iter()
        .filter_map(|r| Some((ResourceKind::of(r)?, r.name.clone())));
    let removed = delta
        .removed
        .iter()
        .filter_map(|k| Some((ResourceKind::from_proto(k.kind)?, k.name.clone())));
    put.chain(removed).collect()
}

/// Validates and compiles `snapshot` whole, and swaps it in.
fn swap_whole(state: &State, snapshot: &v1::Snapshot, started: Instant) -> Result<(), String> {
    let table = Table::compile(
        snapshot.version,
        &snapshot.resources,
        Source::ControlPlane,
        state.side(),
    )
    .map_err(|e| e.to_string())?;
    install(state, table, started, "whole");
    Ok(())
}

/// Checks and compiles the held configuration after a delta: only what changed (and the routes
/// that refer to a changed upstream) when no policy changed and the incremental check shows
/// it valid, the whole of it otherwise (which also names every problem). On success the graph
/// follows the configuration.
fn swap_delta(
    state: &State,
    held: &mut Held,
    changed: &[(ResourceKind, String)],
    started: Instant,
) -> Result<(), String> {
    let version = held.snapshot.version;
    let changed: Vec<(ResourceKind, &str)> = changed
        .iter()
        .map(|(kind, name)| (*kind, name.as_str()))
        .collect();
    // Policies are compiled into every rule that lists them (every rule, for a global one),
    // and certificates into one SNI table: a change to either is compiled whole.
    let no_policy = changed.iter().all(|(kind, _)| {
        !matches!(
            kind,
            ResourceKind::Policy | ResourceKind::Certificate | ResourceKind::Consumer
        )
    });
    if no_policy && let Some(table) = state.table() {
        let resources = &held.snapshot.resources;
        match held
            .graph
            .check_changed(resources, &changed, state.side().regexes())
        {
            Ok(routes) => {
                let mut names = Vec::new();
                let mut upstreams = Vec::new();
                for (kind, name) in &changed {
                    match kind {
                        ResourceKind::Route => names.push(*name),
                        ResourceKind::Upstream => {
                            upstreams.push((*name, upstream_spec(resources, name)))
                        }
                        ResourceKind::Policy
                        | ResourceKind::Certificate
                        | ResourceKind::Consumer
                        | ResourceKind::ProtoSet => {}
                    }
                }
                let next = table.update(version, &names, &routes, &upstreams, state.side());
                install(state, next, started, "in proportion to the change");
                return Ok(());
            }
            Err(unproven) => tracing::debug!(%unproven, "checking the whole configuration"),
        }
    }
    swap_whole(state, &held.snapshot, started)?;
    held.graph = Graph::of(&held.snapshot.resources);
    Ok(())
}

/// The spec of upstream `name` in `resources` (sorted), if it is there.
fn upstream_spec<'r>(resources: &'r [v1::Resource], name: &str) -> Option<&'r v1::UpstreamSpec> {
    let at = resources
        .binary_search_by(|r| {
            (ResourceKind::of(r), r.name.as_str()).cmp(&(Some(ResourceKind::Upstream), name))
        })
        .ok()?;
    match &resources[at].spec {
        Some(v1::resource::Spec::Upstream(spec)) => Some(spec),
        _ => None,
    }
}

fn install(state: &State, table: Table, started: Instant, compiled: &'static str) {
    let (version, routes, upstreams) = (table.version(), table.routes(), table.upstreams().count());
    state.install(table);
    tracing::info!(version, routes, upstreams, compiled, elapsed = ?started.elapsed(), "configuration swapped in");
}

/// Loads the cached snapshot from `dir` and serves it at once; problems are logged, never
/// fatal. Returns what it served: the configuration deltas apply to.
pub(crate) fn restore_cache(dir: &std::path::Path, state: &State) -> Option<Held> {
    let mut snapshot = match cache::load(dir, state.settings().cache_keys.as_deref()) {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(error = %Chain(&error), "ignoring the snapshot cache");
            return None;
        }
    };
    delta::sort(&mut snapshot.resources);
    match Table::compile(
        snapshot.version,
        &snapshot.resources,
        Source::Cache,
        state.side(),
    ) {
        Ok(table) => {
            tracing::info!(version = table.version(), "serving the cached snapshot");
            state.install(table);
            state.set_cached_version(snapshot.version);
            Some(Held::new(snapshot))
        }
        Err(error) => {
            tracing::warn!(version = snapshot.version, %error, "ignoring the snapshot cache: it does not compile");
            None
        }
    }
}

//! What a write would do: the merged configuration, the changes and the store operations. Pure
//! functions of a listing and a request, so they are easy to test.

use std::collections::{BTreeMap, HashSet};

use gateway_proto::{
    RegexCache, ResourceKind,
    v1::{self, Resource, change::Action},
    validate::Graph,
    validate_with,
};

use super::AdminError;
use crate::store::{Listing, Op};

/// The resources of a request, checked for kinds and duplicates.
#[derive(Debug)]
pub(crate) struct Batch(Vec<(ResourceKind, Resource)>);

/// An apply, planned against one listing.
#[derive(Debug)]
pub(crate) struct ApplyPlan {
    /// One per requested resource, in request order.
    pub(crate) changes: Vec<v1::Change>,
    /// Empty when nothing changes.
    pub(crate) ops: Vec<Op>,
    /// The match-key graph of the configuration after the apply, for the next one.
    pub(crate) graph: Graph,
}

impl Batch {
    pub(crate) fn parse(resources: Vec<Resource>) -> Result<Self, AdminError> {
        let mut seen = HashSet::new();
        let mut batch = Vec::with_capacity(resources.len());
        for (i, resource) in resources.into_iter().enumerate() {
            let Some(kind) = ResourceKind::of(&resource) else {
                return Err(AdminError::InvalidArgument(format!(
                    "Resource/{}: spec: missing (resources[{i}]); the spec gives the kind",
                    resource.name
                )));
            };
            if !seen.insert((kind, resource.name.clone())) {
                return Err(AdminError::InvalidArgument(format!(
                    "{kind}/{}: name: appears more than once in the request",
                    resource.name
                )));
            }
            batch.push((kind, resource));
        }
        Ok(Self(batch))
    }
}

fn index(listing: &Listing) -> BTreeMap<(ResourceKind, &str), &Resource> {
    listing
        .resources
        .iter()
        .filter_map(|r| ResourceKind::of(r).map(|kind| ((kind, r.name.as_str()), r)))
        .collect()
}

/// Merges the batch into the listed config, validates the result and lists the changes.
/// `graph` is the graph of the listed config when the caller has it: the change is then
/// checked in proportion to its size, and the whole config only when that finds a problem
/// (to name every problem as it always does).
pub(crate) fn plan_apply(
    listing: &Listing,
    batch: &Batch,
    regexes: &RegexCache,
    graph: Option<Graph>,
) -> Result<ApplyPlan, AdminError> {
    let mut merged = index(listing);
    let mut changes = Vec::with_capacity(batch.0.len());
    let mut ops = Vec::new();
    for (kind, resource) in &batch.0 {
        let stored = merged.get(&(*kind, resource.name.as_str())).copied();
        if resource.version != 0 {
            let actual = stored.map_or(0, |s| s.version);
            if actual != resource.version {
                return Err(AdminError::VersionMismatch {
                    kind: *kind,
                    name: resource.name.clone(),
                    expected: resource.version,
                    actual,
                });
            }
        }
        let mut after = resource.clone();
        after.version = 0;
        let action = match stored {
            None => Action::Created,
            Some(stored) if stored.spec != after.spec => Action::Updated,
            Some(_) => Action::Unchanged,
        };
        if action == Action::Unchanged {
            after.version = stored.map_or(0, |s| s.version);
        } else {
            ops.push(Op::Put(after.clone()));
        }
        changes.push(v1::Change {
            kind: kind.to_proto() as i32,
            name: resource.name.clone(),
            action: action as i32,
            before: stored.cloned(),
            after: Some(after),
        });
    }
    for (kind, resource) in &batch.0 {
        merged.insert((*kind, resource.name.as_str()), resource);
    }
    // In key order: the order of a snapshot, which the incremental check needs.
    let config: Vec<Resource> = merged.into_values().cloned().collect();
    let changed: Vec<(ResourceKind, &str)> = batch
        .0
        .iter()
        .zip(&changes)
        .filter(|(_, change)| change.action != Action::Unchanged as i32)
        .map(|((kind, resource), _)| (*kind, resource.name.as_str()))
        .collect();
    if let Some(mut graph) = graph
        && graph.check_changed(&config, &changed, regexes).is_ok()
    {
        return Ok(ApplyPlan {
            changes,
            ops,
            graph,
        });
    }
    validate_with(&config, regexes)?;
    Ok(ApplyPlan {
        changes,
        ops,
        graph: Graph::of(&config),
    })
}

/// Checks that a resource exists and that the config stays valid without it.
pub(crate) fn plan_delete(
    listing: &Listing,
    kind: ResourceKind,
    name: &str,
    regexes: &RegexCache,
) -> Result<Resource, AdminError> {
    let all = index(listing);
    let Some(target) = all.get(&(kind, name)).copied() else {
        return Err(AdminError::NotFound {
            kind,
            name: name.to_owned(),
        });
    };
    let before = validate_with(&listing.resources, regexes)
        .err()
        .unwrap_or_default()
        .0;
    let remaining: Vec<Resource> = all
        .iter()
        .filter(|(key, _)| **key != (kind, name))
        .map(|(_, r)| (*r).clone())
        .collect();
    let after = validate_with(&remaining, regexes)
        .err()
        .unwrap_or_default()
        .0;
    let by: Vec<String> = after
        .into_iter()
        .filter(|e| !before.contains(e))
        .map(|e| format!("{}/{} ({})", e.kind, e.name, e.field))
        .collect();
    if !by.is_empty() {
        return Err(AdminError::StillReferenced {
            kind,
            name: name.to_owned(),
            by,
        });
    }
    Ok(target.clone())
}

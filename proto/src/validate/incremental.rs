//! Validation in proportion to a change. A configuration that passed the whole check and then
//! changed in a few resources can only have gone wrong in those resources, in the routes that
//! refer to what changed, or in a conflict that involves a changed route. So only those are
//! checked, against a [`Graph`] of the match keys every route holds.
//!
//! The answer is "valid" or "not shown valid": on any problem the caller runs the whole check,
//! which names every problem the same way it always does. Validity itself never depends on the
//! path taken (a property test holds the two to the same verdict).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use super::{
    CheckedRoute, RegexCache, Report, check_upstream, policy,
    route::{self, MatchAt},
};
use crate::{
    ResourceKind, names,
    v1::{self, policy_spec::Body, resource::Spec},
};

/// The match keys of every route of a valid configuration: what a changed route's new
/// matches must not collide with.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Hashed match key → the route and match holding it.
    owners: HashMap<u128, (Arc<str>, MatchAt)>,
    /// Each route's keys, to take them out when it changes.
    keys: HashMap<Arc<str>, Arc<[u128]>>,
}

/// The change could not be shown valid: run the whole check for the verdict and the problems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the change needs the whole-graph check")]
pub struct Unproven;

// === impl Graph ===

impl Graph {
    /// The graph of `resources`, which passed [`super::check`].
    pub fn of(resources: &[v1::Resource]) -> Self {
        let mut graph = Self::default();
        for resource in resources {
            if let Some(Spec::Route(spec)) = &resource.spec {
                graph.insert(&resource.name, route::match_hashes(spec));
            }
        }
        graph
    }

    fn insert(&mut self, name: &str, hashes: Vec<(u128, MatchAt)>) {
        let name: Arc<str> = name.into();
        for (hash, at) in &hashes {
            self.owners.insert(*hash, (name.clone(), *at));
        }
        self.keys
            .insert(name, hashes.into_iter().map(|(h, _)| h).collect());
    }

    /// Checks `after` (sorted by kind and name, as snapshots are), which differs from this
    /// graph's valid configuration in the resources `changed` only (put or removed). When it
    /// is shown valid, returns parsed (what compiling them needs) its changed routes and the
    /// routes that refer to a changed upstream or policy, and moves the graph to `after`;
    /// otherwise leaves the graph as it was.
    pub fn check_changed<'a>(
        &mut self,
        after: &'a [v1::Resource],
        changed: &[(ResourceKind, &str)],
        regexes: &RegexCache,
    ) -> Result<Vec<CheckedRoute<'a>>, Unproven> {
        let find = |kind: ResourceKind, name: &str| {
            after
                .binary_search_by(|r| {
                    (ResourceKind::of(r), r.name.as_str()).cmp(&(Some(kind), name))
                })
                .ok()
                .map(|at| &after[at])
        };
        // The names a route may refer to (upstreams and policies come before routes).
        let mut upstreams = HashSet::new();
        let mut policies = HashMap::new();
        for resource in after {
            match &resource.spec {
                Some(Spec::Upstream(_)) => {
                    upstreams.insert(resource.name.as_str());
                }
                Some(Spec::Policy(spec)) => {
                    // An auth service is an Upstream a policy refers to: whether it still
                    // exists, and speaks HTTP/1.1, is for the whole check.
                    if let Some(Body::ExternalAuth(auth)) = &spec.body
                        && changed.iter().any(|&(kind, name)| {
                            (kind == ResourceKind::Policy && name == resource.name)
                                || (kind == ResourceKind::Upstream
                                    && auth.backend_ref.as_ref().is_some_and(|b| b.name == name))
                        })
                    {
                        return Err(Unproven);
                    }
                    policies.insert(resource.name.as_str(), policy::PolicyFacts::of(spec));
                }
                Some(Spec::Route(_)) => break,
                Some(Spec::Consumer(_) | Spec::Certificate(_) | Spec::ProtoSet(_)) => {}
                None => return Err(Unproven),
            }
        }
        let known = route::Known {
            upstreams: &upstreams,
            policies: &policies,
            transcoding: None,
        };

        let mut report = Report::default();
        let mut routes = Vec::new();
        let mut changed_routes = HashSet::new();
        // A removed upstream or policy, or a changed policy (it may have turned global), can
        // break a route that did not change; a changed upstream or policy changes what the
        // route compiles to. Those routes are checked again.
        let mut referenced = HashSet::new();
        for &(kind, name) in changed {
            let resource = find(kind, name);
            match kind {
                // Hostnames and the default are checked across every certificate: the whole
                // check, which is cheap next to compiling a certificate.
                // A ProtoSet compiles in milliseconds to seconds: the whole check, which the
                // change needs anyway.
                // API keys are unique across consumers: the whole check, which is cheap.
                ResourceKind::Consumer | ResourceKind::Certificate | ResourceKind::ProtoSet => {
                    return Err(Unproven);
                }
                ResourceKind::Route => {
                    changed_routes.insert(name);
                }
                ResourceKind::Upstream | ResourceKind::Policy => {
                    referenced.insert((kind, name));
                }
            }
            let Some(resource) = resource else { continue };
            let mut at = report.at(resource);
            if let Err(reason) = names::check_resource_name(&resource.name) {
                at.error("name", reason);
            }
            match &resource.spec {
                Some(Spec::Consumer(_) | Spec::Certificate(_) | Spec::ProtoSet(_)) => {
                    return Err(Unproven);
                }
                // A client certificate is a reference to a Certificate, and compiling it
                // needs the certificate: the whole check, and a whole compile.
                Some(Spec::Upstream(spec))
                    if spec
                        .tls
                        .as_ref()
                        .is_some_and(|tls| !tls.client_certificate.is_empty()) =>
                {
                    return Err(Unproven);
                }
                Some(Spec::Upstream(spec)) => check_upstream(&mut at, spec),
                Some(Spec::Policy(spec)) => policy::check_policy(&mut at, spec),
                Some(Spec::Route(spec)) => {
                    let rules = route::check_route(&mut at, spec, &known, regexes);
                    routes.push(CheckedRoute {
                        name: resource.name.as_str(),
                        spec,
                        rules,
                    });
                }
                None => return Err(Unproven),
            }
        }
        if !referenced.is_empty() {
            for resource in after {
                let Some(Spec::Route(spec)) = &resource.spec else {
                    continue;
                };
                if changed_routes.contains(resource.name.as_str())
                    || !refers_to_any(spec, &referenced)
                {
                    continue;
                }
                // Checked again, and handed over as changed: its compiled rules hold what
                // changed under it.
                changed_routes.insert(resource.name.as_str());
                let mut at = report.at(resource);
                let rules = route::check_route(&mut at, spec, &known, regexes);
                routes.push(CheckedRoute {
                    name: resource.name.as_str(),
                    spec,
                    rules,
                });
            }
        }
        if report.finish().is_err() {
            return Err(Unproven);
        }

        // Conflicts: the changed routes' new keys against every other route's, and each other.
        let mut taken: HashMap<u128, (&str, MatchAt)> = HashMap::new();
        let mut new_keys = Vec::with_capacity(routes.len());
        for checked in &routes {
            let hashes = route::match_hashes(checked.spec);
            for &(hash, at) in &hashes {
                let clash = match self.owners.get(&hash) {
                    Some((owner, _)) if !changed_routes.contains(&**owner) => true,
                    _ => taken
                        .insert(hash, (checked.name, at))
                        .is_some_and(|other| other != (checked.name, at)),
                };
                if clash {
                    return Err(Unproven);
                }
            }
            new_keys.push((checked.name, hashes));
        }

        for name in &changed_routes {
            if let Some(hashes) = self.keys.remove(*name) {
                for hash in hashes.iter() {
                    self.owners.remove(hash);
                }
            }
        }
        for (name, hashes) in new_keys {
            self.insert(name, hashes);
        }
        routes.sort_by_key(|route| route.name);
        Ok(routes)
    }
}

fn refers_to_any(spec: &v1::RouteSpec, names: &HashSet<(ResourceKind, &str)>) -> bool {
    let policy = |n: &String| names.contains(&(ResourceKind::Policy, n.as_str()));
    spec.policies.iter().any(policy)
        || spec.rules.iter().any(|rule| {
            rule.policies.iter().any(policy)
                || rule
                    .backend_refs
                    .iter()
                    .chain(
                        rule.filters
                            .iter()
                            .filter_map(|f| f.request_mirror.as_ref()?.backend_ref.as_ref()),
                    )
                    .any(|b| names.contains(&(ResourceKind::Upstream, b.name.as_str())))
        })
}

#[cfg(test)]
mod tests;

//! The compiled table: one immutable value built from a snapshot off the request path, holding
//! the router, the rules (backends, filters, policies) and the upstreams. Request handling reads only this;
//! it never touches generated protobuf types.

use std::{sync::Arc, time::SystemTime};

use gateway_proto::{
    ValidationErrors,
    v1::{self, resource::Spec},
    validate::{CheckedMatch, CheckedPath},
};

use crate::side::SideTables;

mod filter;
mod hash;
mod matchers;
mod policy;
mod router;
mod rule;
mod upstream;
mod warm;

pub use self::{
    filter::{Filters, HeaderEdits, PathRewrite, Redirect, Rewrite},
    policy::{Cors, IpAccess, Limits, Policy, RulePolicies},
    router::{RequestHeaders, RequestView},
    rule::Rule,
    upstream::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Endpoint, Upstream},
};
use self::{
    hash::{FxHashMap, FxHashSet},
    matchers::{HeaderMatcher, QueryMatcher},
    router::{CompiledPath, Conditions, Router, RouterBuilder},
};

/// Where a table's configuration came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    ControlPlane,
    Cache,
    File,
}

/// One compiled configuration.
#[derive(Debug)]
pub struct Table {
    version: i64,
    source: Source,
    loaded_at: SystemTime,
    router: Router,
    rules: Box<[Arc<Rule>]>,
    upstreams: FxHashMap<Arc<str>, Arc<Upstream>>,
    /// Route names, sorted.
    routes: Box<[Arc<str>]>,
    /// The regular expressions this table uses (to prune the side table's cache).
    regexes: FxHashSet<Box<str>>,
}

/// Why a snapshot does not compile. The text is the NACK reason. Validation is the only thing
/// that can refuse a configuration: what it accepts arrives parsed (`gateway_proto::check`),
/// and compiling that cannot fail.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The configuration fails the shared validation.
    #[error("{0}")]
    Invalid(#[from] ValidationErrors),
}

// === impl Table ===

impl Table {
    /// Validates and compiles a whole configuration.
    pub fn compile(
        version: i64,
        resources: &[v1::Resource],
        source: Source,
        side: &SideTables,
    ) -> Result<Self, CompileError> {
        warm::warm_regexes(resources, side.regexes());
        let checked = gateway_proto::check(resources, side.regexes())?;

        let mut upstreams = FxHashMap::default();
        for resource in resources {
            if let Some(Spec::Upstream(spec)) = &resource.spec {
                let upstream = Upstream::compile(&resource.name, spec, side);
                upstreams.insert(upstream.name().clone(), Arc::new(upstream));
            }
        }

        let mut policies = FxHashMap::default();
        let mut global = Vec::new();
        for resource in resources {
            if let Some(Spec::Policy(spec)) = &resource.spec
                && let Some(policy) = Policy::compile(spec)
            {
                let policy = Arc::new(policy);
                if spec.global {
                    global.push((resource.name.as_str(), policy.clone()));
                }
                policies.insert(resource.name.as_str(), policy);
            }
        }
        global.sort_by_key(|(name, _)| *name);
        let global: Vec<Arc<Policy>> = global.into_iter().map(|(_, p)| p).collect();

        let cx = rule::Context {
            upstreams: &upstreams,
            policies: &policies,
            global: &global,
            side,
        };
        let mut builder = RouterBuilder::default();
        let mut rules = Vec::new();
        let mut names = Vec::with_capacity(checked.routes.len());
        let mut order = 0u32;
        let mut regexes = FxHashSet::default();
        // In name order (validation sorted them), so that precedence ties break the same way
        // on every data plane.
        for checked_route in &checked.routes {
            let route: Arc<str> = checked_route.name.into();
            names.push(route.clone());
            let spec = checked_route.spec;
            for (r, (rule, matches)) in checked_route.rules.iter().enumerate() {
                let index = rules.len();
                rules.push(Arc::new(Rule::compile(&route, spec, r, rule, &cx)));
                for checked_match in matches {
                    let path = compile_path(&checked_match.path, &mut regexes);
                    let conditions = compile_conditions(checked_match, &mut regexes);
                    builder.add(&spec.hostnames, &path, &Arc::new(conditions), index, order);
                    order = order.saturating_add(1);
                }
            }
        }

        Ok(Self {
            version,
            source,
            loaded_at: SystemTime::now(),
            router: builder.build(),
            rules: rules.into(),
            upstreams,
            routes: names.into(),
            regexes,
        })
    }

    /// The rule that the request matches, if any.
    #[inline]
    pub fn route(&self, req: &RequestView<'_>) -> Option<&Arc<Rule>> {
        let index = self.router.find(req)?;
        self.rules.get(index)
    }

    /// Whether routing looks at the host at all (some route names a hostname).
    #[inline]
    pub fn uses_hosts(&self) -> bool {
        self.router.uses_hosts()
    }

    pub fn version(&self) -> i64 {
        self.version
    }

    pub fn source(&self) -> Source {
        self.source
    }

    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// The number of routes.
    pub fn routes(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table has a route of this name.
    pub fn has_route(&self, name: &str) -> bool {
        self.routes.binary_search_by(|r| (**r).cmp(name)).is_ok()
    }

    /// Drops the side tables' entries that this table no longer uses.
    pub fn prune_side(&self, side: &SideTables) {
        side.regexes().retain(|pattern| self.uses_regex(pattern));
        side.retain_upstreams(|name| self.upstream(name).is_some());
        let addresses: FxHashSet<&str> = self
            .upstreams()
            .flat_map(|u| u.endpoints())
            .map(Endpoint::address)
            .collect();
        side.retain_pools(|address| addresses.contains(address));
        side.retain_splits(|route| self.has_route(route));
    }

    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.values()
    }

    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.get(name)
    }

    /// Whether the table uses this regular expression (as written in the config).
    pub fn uses_regex(&self, pattern: &str) -> bool {
        self.regexes.contains(pattern)
    }
}

fn compile_path(path: &CheckedPath, used: &mut FxHashSet<Box<str>>) -> CompiledPath {
    match path {
        CheckedPath::Exact(exact) => CompiledPath::Exact(exact.as_str().into()),
        CheckedPath::Prefix(prefix) => CompiledPath::Prefix(prefix.as_str().into()),
        CheckedPath::Template(template) => CompiledPath::Template(Arc::new(template.clone())),
        CheckedPath::Regex { pattern, regex } => {
            used.insert(pattern.as_str().into());
            CompiledPath::Regex(regex.clone())
        }
    }
}

fn compile_conditions(m: &CheckedMatch, used: &mut FxHashSet<Box<str>>) -> Conditions {
    Conditions {
        method: m.method.clone(),
        headers: m
            .headers
            .iter()
            .map(|h| HeaderMatcher::new(h, used))
            .collect(),
        query: m.query.iter().map(|q| QueryMatcher::new(q, used)).collect(),
    }
}

#[cfg(test)]
mod tests;

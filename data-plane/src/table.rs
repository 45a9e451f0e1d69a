//! The compiled table: one immutable value built from a snapshot off the request path, holding
//! the router, the rules' backend choices and the upstreams. Request handling reads only this;
//! it never touches generated protobuf types.

use std::{sync::Arc, time::SystemTime};

use gateway_proto::{
    ValidationErrors,
    template::PathTemplate,
    v1::{self, path_match, resource::Spec},
    validate::normalized_path,
};
use http::Method;

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
    matchers::{BadMatcher, HeaderMatcher, QueryMatcher, Regexes},
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

/// Why a snapshot does not compile. The text is the NACK reason.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The configuration fails the shared validation.
    #[error("{0}")]
    Invalid(#[from] ValidationErrors),
    /// A route field that does not compile (validation should have refused it).
    #[error("Route/{route}: {field}: {reason}")]
    Route {
        route: String,
        field: String,
        reason: String,
    },
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
        gateway_proto::validate_with(resources, side.regexes())?;

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

        let mut routes: Vec<(&str, &v1::RouteSpec)> = resources
            .iter()
            .filter_map(|r| match &r.spec {
                Some(Spec::Route(spec)) => Some((r.name.as_str(), spec)),
                _ => None,
            })
            .collect();
        routes.sort_by_key(|(name, _)| *name);

        let cx = rule::Context {
            upstreams: &upstreams,
            policies: &policies,
            global: &global,
            side,
        };
        let default_match = [v1::RouteMatch::default()];
        let mut builder = RouterBuilder::default();
        let mut rules = Vec::new();
        let mut names = Vec::with_capacity(routes.len());
        let mut order = 0u32;
        let mut regexes = Regexes::new(side);
        for &(name, spec) in &routes {
            let route: Arc<str> = name.into();
            names.push(route.clone());
            for (r, rule) in spec.rules.iter().enumerate() {
                let index = u32::try_from(rules.len()).map_err(|_| CompileError::Route {
                    route: name.to_owned(),
                    field: "spec.rules".into(),
                    reason: "too many rules".into(),
                })?;
                rules.push(Arc::new(Rule::compile(&route, spec, r, rule, &cx)));
                let matches = if rule.matches.is_empty() {
                    &default_match[..]
                } else {
                    &rule.matches[..]
                };
                for (m, route_match) in matches.iter().enumerate() {
                    let field = || format!("spec.rules[{r}].matches[{m}]");
                    let error = |reason: String| CompileError::Route {
                        route: name.to_owned(),
                        field: field(),
                        reason,
                    };
                    let path =
                        compile_path(route_match.path.as_ref(), &mut regexes).map_err(error)?;
                    let conditions =
                        compile_conditions(route_match, &mut regexes).map_err(|e| error(e.0))?;
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
            regexes: regexes.used,
        })
    }

    /// The rule that the request matches, if any.
    #[inline]
    pub fn route(&self, req: &RequestView<'_>) -> Option<&Arc<Rule>> {
        let index = self.router.find(req)?;
        self.rules.get(index as usize)
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

fn compile_path(
    path: Option<&v1::PathMatch>,
    regexes: &mut Regexes<'_>,
) -> Result<CompiledPath, String> {
    let Some(path) = path else {
        return Ok(CompiledPath::Prefix("/".into()));
    };
    let kind = path_match::Type::try_from(path.r#type)
        .map_err(|_| format!("unknown path type {}", path.r#type))?;
    Ok(match kind {
        path_match::Type::Exact => CompiledPath::Exact(path.value.as_str().into()),
        path_match::Type::PathPrefix => {
            let prefix = normalized_path(kind, &path.value);
            CompiledPath::Prefix(if prefix.is_empty() { "/" } else { prefix }.into())
        }
        path_match::Type::Template => CompiledPath::Template(Arc::new(
            PathTemplate::parse(&path.value).map_err(|e| e.to_string())?,
        )),
        path_match::Type::RegularExpression => CompiledPath::Regex(regexes.get(&path.value)?),
    })
}

fn compile_conditions(
    m: &v1::RouteMatch,
    regexes: &mut Regexes<'_>,
) -> Result<Conditions, BadMatcher> {
    let method = if m.method.is_empty() {
        None
    } else {
        Some(
            Method::from_bytes(m.method.as_bytes())
                .map_err(|e| BadMatcher(format!("method {:?}: {e}", m.method)))?,
        )
    };
    Ok(Conditions {
        method,
        headers: m
            .headers
            .iter()
            .map(|h| HeaderMatcher::compile(h, regexes))
            .collect::<Result<_, _>>()?,
        query: m
            .query_params
            .iter()
            .map(|q| QueryMatcher::compile(q, regexes))
            .collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests;

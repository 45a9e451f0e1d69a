//! The compiled table: one immutable value built from a snapshot off the request path, holding
//! the router, the rules (backends, filters, policies) and the upstreams. Request handling reads only this;
//! it never touches generated protobuf types.

use std::{sync::Arc, time::SystemTime};

use gateway_proto::{
    ValidationErrors,
    v1::{self, resource::Spec},
    validate::{CheckedMatch, CheckedPath, CheckedRoute},
};

use crate::side::SideTables;

mod certificates;
mod filter;
mod hash;
mod matchers;
mod policy;
mod router;
mod rule;
mod shards;
mod upstream;
mod warm;

pub use self::{
    certificates::Certificates,
    filter::{Filters, HeaderEdits, PathRewrite, Redirect, Rewrite},
    policy::{
        Consumer, Consumers, Cors, Identity, IpAccess, Limits, Phase, Policy, RulePolicies,
        X_CONSUMER, X_CONSUMER_GROUPS, external_auth, identity, jwt, rate_limit, validation,
    },
    router::{RequestHeaders, RequestView},
    rule::{Retry, Rule, Timeouts},
    upstream::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Endpoint, Upstream, balance},
};
use self::{
    hash::{FxHashMap, FxHashSet},
    matchers::{HeaderMatcher, QueryMatcher},
    router::{CompiledPath, Conditions, Host, MatchOf, Place, Router, RouterBuilder},
    shards::Shards,
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
    upstreams: FxHashMap<Arc<str>, Arc<Upstream>>,
    policies: FxHashMap<Arc<str>, Arc<Policy>>,
    /// Global policies, in name order.
    global: Arc<[Arc<Policy>]>,
    routes: Shards<Arc<CompiledRoute>>,
    /// The regular expressions this table uses, with how many routes use each (to prune the
    /// side table's cache).
    regexes: FxHashMap<Arc<str>, usize>,
    /// What the TLS listener serves.
    certificates: Arc<Certificates>,
    /// The Consumers, by key and by name.
    consumers: Arc<Consumers>,
}

/// What a route put into the table: what taking it out again must visit.
#[derive(Debug)]
struct CompiledRoute {
    rules: Box<[Arc<Rule>]>,
    places: Box<[(Host, Place)]>,
    regexes: Box<[Arc<str>]>,
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

        let certificates: FxHashMap<&str, &v1::CertificateSpec> = resources
            .iter()
            .filter_map(|r| match &r.spec {
                Some(Spec::Certificate(spec)) => Some((r.name.as_str(), spec)),
                _ => None,
            })
            .collect();
        let proto_sets: FxHashMap<&str, &v1::ProtoSetSpec> = resources
            .iter()
            .filter_map(|r| match &r.spec {
                Some(Spec::ProtoSet(spec)) => Some((r.name.as_str(), spec)),
                _ => None,
            })
            .collect();
        let mut upstreams = FxHashMap::default();
        for resource in resources {
            if let Some(Spec::Upstream(spec)) = &resource.spec {
                let client_certificate = spec
                    .tls
                    .as_ref()
                    .and_then(|tls| certificates.get(tls.client_certificate.as_str()).copied());
                let upstream = Upstream::compile(&resource.name, spec, client_certificate, side);
                upstreams.insert(upstream.name().clone(), Arc::new(upstream));
            }
        }

        let mut policies = FxHashMap::default();
        let mut global = Vec::new();
        for resource in resources {
            if let Some(Spec::Policy(spec)) = &resource.spec
                && let Some(policy) = Policy::compile(&resource.name, spec, side)
            {
                let policy = Arc::new(policy);
                if spec.global {
                    global.push((resource.name.as_str(), policy.clone()));
                }
                policies.insert(resource.name.as_str().into(), policy);
            }
        }
        global.sort_by_key(|(name, _)| *name);
        let global: Arc<[Arc<Policy>]> = global.into_iter().map(|(_, p)| p).collect();

        let mut table = Self {
            version,
            source,
            loaded_at: SystemTime::now(),
            router: Router::default(),
            upstreams,
            policies,
            global,
            routes: Shards::default(),
            regexes: FxHashMap::default(),
            certificates: Arc::new(Certificates::compile(resources)),
            consumers: Arc::new(Consumers::compile(resources)),
        };
        let mut builder = RouterBuilder::default();
        for route in &checked.routes {
            table.add_route(route, &mut builder, side, &proto_sets);
        }
        table.router = builder.build();
        Ok(table)
    }

    /// The table of a configuration that differs from this one's in some routes and upstreams
    /// (no policy), which passed the incremental check. `changed` names every route to take
    /// out (changed, removed, or referring to a changed upstream), `routes` those of them that
    /// exist, parsed, and `upstreams` the upstreams put (with their spec) or removed. Only they
    /// are compiled, and only the host buckets they touch are rebuilt; everything else is
    /// shared with this table.
    pub fn update(
        &self,
        version: i64,
        changed: &[&str],
        routes: &[CheckedRoute<'_>],
        upstreams: &[(&str, Option<&v1::UpstreamSpec>)],
        side: &SideTables,
    ) -> Self {
        let mut next = Self {
            version,
            // Updates are the control plane's deltas (a table from the cache included).
            source: Source::ControlPlane,
            loaded_at: SystemTime::now(),
            router: Router::default(),
            upstreams: self.upstreams.clone(),
            policies: self.policies.clone(),
            global: self.global.clone(),
            routes: self.routes.clone(),
            regexes: self.regexes.clone(),
            // A delta that changes certificates or consumers is compiled whole.
            certificates: self.certificates.clone(),
            consumers: self.consumers.clone(),
        };
        for (name, spec) in upstreams {
            match spec {
                Some(spec) => {
                    // An upstream with a client certificate is never in a delta's update: the
                    // incremental check sends it to the whole compile.
                    let upstream = Upstream::compile(name, spec, None, side);
                    next.upstreams
                        .insert(upstream.name().clone(), Arc::new(upstream));
                }
                None => {
                    next.upstreams.remove(*name);
                }
            }
        }
        let mut removed = FxHashSet::default();
        let mut gone = Vec::new();
        for name in changed.iter().copied().chain(routes.iter().map(|r| r.name)) {
            let Some(old) = next.routes.remove(name) else {
                continue; // new, or named twice
            };
            removed.extend(old.rules.iter().map(router::address));
            for pattern in &old.regexes {
                if let Some(uses) = next.regexes.get_mut(pattern) {
                    *uses -= 1;
                    if *uses == 0 {
                        next.regexes.remove(pattern);
                    }
                }
            }
            gone.push(old);
        }
        let mut builder = RouterBuilder::default();
        for route in routes {
            next.add_route(route, &mut builder, side, &FxHashMap::default());
        }
        next.router = self.router.update(
            &removed,
            gone.iter().flat_map(|route| route.places.iter()),
            builder,
        );
        next
    }

    /// The same table marked as coming from `source`: an update that only refreshed the
    /// registry's instances does not change where the configuration came from.
    #[must_use]
    pub fn with_source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// Compiles one route's rules, and its matches into `builder`.
    fn add_route(
        &mut self,
        checked_route: &CheckedRoute<'_>,
        builder: &mut RouterBuilder,
        side: &SideTables,
        proto_sets: &FxHashMap<&str, &v1::ProtoSetSpec>,
    ) {
        let name: Arc<str> = checked_route.name.into();
        let spec = checked_route.spec;
        let cx = rule::Context {
            proto_sets,
            upstreams: &self.upstreams,
            policies: &self.policies,
            global: &self.global,
            side,
        };
        let mut rules = Vec::with_capacity(checked_route.rules.len());
        let mut places = Vec::new();
        let mut regexes = FxHashSet::default();
        let mut seq = 0u32;
        for (r, (rule, matches)) in checked_route.rules.iter().enumerate() {
            let compiled = Arc::new(Rule::compile(&name, spec, r, rule, &cx));
            for checked_match in matches {
                let path = compile_path(&checked_match.path, &mut regexes);
                let conditions = compile_conditions(checked_match, &mut regexes);
                builder.add(
                    &spec.hostnames,
                    &path,
                    &Arc::new(conditions),
                    MatchOf {
                        rule: &compiled,
                        route: &name,
                        seq,
                    },
                    &mut places,
                );
                seq = seq.saturating_add(1);
            }
            rules.push(compiled);
        }
        let regexes: Box<[Arc<str>]> = regexes.into_iter().map(Arc::from).collect();
        for pattern in &regexes {
            *self.regexes.entry(pattern.clone()).or_default() += 1;
        }
        self.routes.insert(
            name,
            Arc::new(CompiledRoute {
                rules: rules.into(),
                places: places.into(),
                regexes,
            }),
        );
    }

    /// The rule that the request matches, if any.
    #[inline]
    pub fn route(&self, req: &RequestView<'_>) -> Option<&Arc<Rule>> {
        self.router.find(req)
    }

    /// Whether routing looks at the host at all (some route names a hostname).
    #[inline]
    pub fn uses_hosts(&self) -> bool {
        self.router.uses_hosts()
    }

    /// The Consumers identity policies find requests' identities among.
    pub fn consumers(&self) -> &Arc<Consumers> {
        &self.consumers
    }

    /// The certificates the TLS listener serves.
    pub fn certificates(&self) -> &Certificates {
        &self.certificates
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
        self.routes.get(name).is_some()
    }

    /// Drops the side tables' entries that this table no longer uses.
    pub fn prune_side(&self, side: &SideTables) {
        side.regexes().retain(|pattern| self.uses_regex(pattern));
        side.retain_upstreams(|name| self.upstream(name).is_some());
        let addresses: FxHashSet<&str> = self
            .upstreams()
            .flat_map(|u| u.endpoints())
            .map(Endpoint::pool_key)
            .collect();
        side.retain_pools(|key| addresses.contains(key));
        side.retain_splits(|route| self.has_route(route));
        let buckets: FxHashSet<*const crate::side::buckets::Buckets> = self
            .policies
            .values()
            .filter_map(|policy| match &**policy {
                Policy::RateLimit(limit) => Some(Arc::as_ptr(limit.buckets())),
                _ => None,
            })
            .collect();
        side.retain_buckets(|b| buckets.contains(&Arc::as_ptr(b)));
        let shared: FxHashSet<*const crate::side::shared_limits::ClusterLimit> = self
            .policies
            .values()
            .filter_map(|policy| match &**policy {
                Policy::RateLimit(limit) => limit.cluster().map(Arc::as_ptr),
                _ => None,
            })
            .collect();
        side.shared_limits()
            .retain(|limit| shared.contains(&Arc::as_ptr(limit)));
        let answers: FxHashSet<*const crate::side::auth_answers::AuthAnswers> = self
            .policies
            .values()
            .filter_map(|policy| match &**policy {
                Policy::ExternalAuth(auth) => Some(Arc::as_ptr(&auth.answers)),
                _ => None,
            })
            .collect();
        side.retain_auth_answers(|a| answers.contains(&Arc::as_ptr(a)));
        let origins: FxHashSet<&crate::jwks::Origin> = self
            .policies
            .values()
            .filter_map(|policy| match &**policy {
                Policy::Jwt(jwt) => Some(jwt.providers()),
                _ => None,
            })
            .flatten()
            .filter_map(|provider| provider.remote().map(|r| r.origin()))
            .collect();
        side.retain_key_sets(|origin| origins.contains(origin));
    }

    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.values()
    }

    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.get(name)
    }

    /// Whether the table uses this regular expression (as written in the config).
    pub fn uses_regex(&self, pattern: &str) -> bool {
        self.regexes.contains_key(pattern)
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

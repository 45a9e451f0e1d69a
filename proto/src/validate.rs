//! Whole-graph validation of a configuration: every resource on its own, the references between
//! them, and conflicts among routes. It reports every problem, each with its resource and the
//! field path in the document (`spec.rules[0].backendRefs[0].name`).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    sync::{Mutex, PoisonError},
};

use crate::{
    ResourceKind, names,
    template::PathTemplate,
    v1::{self, path_match, resource::Spec},
};

mod certificate;
mod checked;
mod external_auth;
mod filter;
mod identity;
mod incremental;
mod policy;
mod proto_set;
mod resilience;
mod route;
mod transcode;
mod upstream;

pub use certificate::{
    REDACTED, check_not_expired, not_after as certificate_not_after, parse as parse_certificate,
    redact,
};
pub use checked::{Checked, CheckedMatch, CheckedPath, CheckedRoute, CheckedValue};
pub use incremental::{Graph, Unproven};

pub use external_auth::{MAX_AUTH_CACHE_TTL_SECS, MAX_AUTH_TIMEOUT_SECS};
pub use identity::{
    MAX_CLOCK_SKEW_SECS, MAX_KEYS_GRACE_SECS, MAX_LIMITS, MAX_TOKEN_BYTES, block_pattern,
};
pub use policy::MAX_HEAD_BYTES;
pub use proto_set::{
    MAX_BYTES as MAX_PROTO_SET_BYTES, ProtoSetError, compile as compile_proto_set,
};
pub use upstream::trust_anchors;

use upstream::check_upstream;

/// Largest weight of an endpoint or backend reference.
pub const MAX_WEIGHT: u32 = 10_000;

/// Largest compiled size of one regular expression.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One problem, located by resource and field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// `Route`, `Upstream`, or `Resource` when the kind itself is missing.
    pub kind: String,
    pub name: String,
    /// Field path in the resource document, e.g. `spec.rules[0].matches[0].path.value`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}: {}: {}",
            self.kind, self.name, self.field, self.message
        )
    }
}

/// Every problem found in a configuration, in a stable order.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Validates a whole configuration: the set of resources that would be stored.
pub fn validate(resources: &[v1::Resource]) -> Result<(), ValidationErrors> {
    validate_with(resources, &RegexCache::default())
}

/// Like [`validate`], compiling regular expressions through `regexes`, so that a caller who
/// validates config after config (a data plane, a control plane) compiles each pattern once.
pub fn validate_with(
    resources: &[v1::Resource],
    regexes: &RegexCache,
) -> Result<(), ValidationErrors> {
    check(resources, regexes).map(drop)
}

/// What only a write is checked for, besides the whole graph: the clock-dependent checks on
/// the resources being written (a certificate expired or not valid yet), which a stored
/// configuration is never held to.
pub fn check_written<'a>(
    resources: impl IntoIterator<Item = &'a v1::Resource>,
    now: std::time::SystemTime,
) -> Result<(), ValidationErrors> {
    let mut report = Report::default();
    for resource in resources {
        if let Some(Spec::Certificate(spec)) = &resource.spec
            && let Err((field, message)) = certificate::check_not_expired(spec, now)
        {
            report.at(resource).error(field, message);
        }
        if let Some(Spec::Consumer(spec)) = &resource.spec {
            identity::check_consumer(&mut report.at(resource), spec);
        }
    }
    report.finish()
}

/// Validates like [`validate_with`] and, when the configuration is valid, hands over its
/// routes with every match parsed: what the data plane compiles, with nothing left to fail.
pub fn check<'a>(
    resources: &'a [v1::Resource],
    regexes: &RegexCache,
) -> Result<Checked<'a>, ValidationErrors> {
    let mut report = Report::default();
    let mut seen: HashSet<(ResourceKind, &str)> = HashSet::new();
    let mut upstreams = HashSet::new();
    let mut certificates = HashSet::new();
    let mut transcoding = transcode::Transcoding::default();
    // Policy names, and whether each is global.
    let mut policies = HashMap::new();
    for resource in resources {
        let Some(kind) = ResourceKind::of(resource) else {
            report.push("Resource", &resource.name, "kind", "has no spec".into());
            continue;
        };
        if let Err(reason) = names::check_resource_name(&resource.name) {
            report.push(kind.as_str(), &resource.name, "name", reason);
        }
        if !seen.insert((kind, resource.name.as_str())) {
            report.push(
                kind.as_str(),
                &resource.name,
                "name",
                format!("duplicate: another {kind} is named {:?}", resource.name),
            );
        }
        match &resource.spec {
            Some(Spec::Upstream(spec)) => {
                upstreams.insert(resource.name.as_str());
                let protocol = v1::upstream_spec::Protocol::try_from(spec.protocol);
                if matches!(
                    protocol,
                    Ok(v1::upstream_spec::Protocol::H2c | v1::upstream_spec::Protocol::H2)
                ) {
                    transcoding.multiplexed.insert(resource.name.as_str());
                }
            }
            Some(Spec::Policy(spec)) => {
                policies.insert(resource.name.as_str(), policy::PolicyFacts::of(spec));
            }
            Some(Spec::Certificate(_)) => {
                certificates.insert(resource.name.as_str());
            }
            Some(Spec::ProtoSet(spec)) => {
                transcoding.proto_sets.insert(resource.name.as_str(), spec);
            }
            _ => {}
        }
    }

    // Sorted by name so that conflicts are reported against the same resource every time.
    let mut routes: Vec<(&str, &v1::RouteSpec)> = Vec::new();
    let mut checked = Vec::new();
    for resource in resources {
        let mut at = report.at(resource);
        match &resource.spec {
            Some(Spec::Consumer(spec)) => identity::check_consumer(&mut at, spec),
            Some(Spec::Certificate(spec)) => certificate::check_certificate(&mut at, spec),
            Some(Spec::ProtoSet(spec)) => proto_set::check_proto_set(&mut at, spec),
            Some(Spec::Upstream(spec)) => {
                check_upstream(&mut at, spec);
                upstream::check_references(&mut at, spec, &certificates);
            }
            Some(Spec::Policy(spec)) => {
                policy::check_policy(&mut at, spec);
                if let Some(v1::policy_spec::Body::ExternalAuth(auth)) = &spec.body {
                    external_auth::check_references(
                        &mut at,
                        auth,
                        &upstreams,
                        &transcoding.multiplexed,
                    );
                }
            }
            Some(Spec::Route(spec)) => {
                let rules = route::check_route(
                    &mut at,
                    spec,
                    &route::Known {
                        upstreams: &upstreams,
                        policies: &policies,
                        transcoding: Some(&transcoding),
                    },
                    regexes,
                );
                routes.push((resource.name.as_str(), spec));
                checked.push(CheckedRoute {
                    name: resource.name.as_str(),
                    spec,
                    rules,
                });
            }
            None => {}
        }
    }
    routes.sort_by_key(|(name, _)| *name);
    route::check_conflicts(&mut report, &routes);
    identity::check_consumer_keys(&mut report, resources);
    certificate::check_certificates(
        &mut report,
        resources.iter().filter_map(|r| match &r.spec {
            Some(Spec::Certificate(spec)) => Some((r.name.as_str(), spec)),
            _ => None,
        }),
    );

    report.finish()?;
    // Valid: every match parsed (a match that did not was reported, and we would not be here).
    checked.sort_by_key(|route| route.name);
    Ok(Checked { routes: checked })
}

fn check_weight(at: &mut At<'_>, field: &str, weight: Option<u32>) {
    if weight.is_some_and(|w| w > MAX_WEIGHT) {
        at.error(field, format!("must be at most {MAX_WEIGHT}"));
    }
}

fn check_duration(at: &mut At<'_>, field: &str, duration: Option<&prost_types::Duration>) {
    if let Some(d) = duration
        && let Err(reason) = crate::duration::check_proto_duration(d)
    {
        at.error(field, reason);
    }
}

// === Reporting ===

#[derive(Default)]
struct Report {
    errors: Vec<FieldError>,
}

impl Report {
    fn push(&mut self, kind: &str, name: &str, field: &str, message: String) {
        self.errors.push(FieldError {
            kind: kind.to_owned(),
            name: name.to_owned(),
            field: field.to_owned(),
            message,
        });
    }

    fn at<'r>(&'r mut self, resource: &'r v1::Resource) -> At<'r> {
        let kind = ResourceKind::of(resource).map_or("Resource", ResourceKind::as_str);
        At {
            report: self,
            kind,
            name: &resource.name,
        }
    }

    fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        // Group by resource, keep the order found within one resource.
        let mut grouped: BTreeMap<(String, String), Vec<FieldError>> = BTreeMap::new();
        for error in self.errors {
            grouped
                .entry((error.kind.clone(), error.name.clone()))
                .or_default()
                .push(error);
        }
        Err(ValidationErrors(grouped.into_values().flatten().collect()))
    }
}

/// The report, positioned at one resource.
struct At<'r> {
    report: &'r mut Report,
    kind: &'static str,
    name: &'r str,
}

impl At<'_> {
    fn error(&mut self, field: &str, message: String) {
        self.report.push(self.kind, self.name, field, message);
    }
}

/// Compiles a regular expression the way the data plane will (anchored to the whole value).
pub fn compile_anchored_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid regular expression: {e}"))
}

/// Anchored regular expressions by pattern as written. Compiling one costs ~100 µs, so a
/// config with thousands of them is compiled once and then reused across validations and
/// compiled tables; the owner prunes it with [`RegexCache::retain`].
#[derive(Debug, Default)]
pub struct RegexCache {
    compiled: Mutex<HashMap<Box<str>, regex::Regex>>,
}

// === impl RegexCache ===

impl RegexCache {
    /// The compiled expression for `pattern`, from the cache or compiled now.
    pub fn get_or_compile(&self, pattern: &str) -> Result<regex::Regex, String> {
        if let Some(regex) = self.lock().get(pattern) {
            return Ok(regex.clone());
        }
        // Compiled outside the lock; a concurrent compile of the same pattern only costs time.
        let regex = compile_anchored_regex(pattern)?;
        self.lock().insert(pattern.into(), regex.clone());
        Ok(regex)
    }

    /// Whether `pattern` is compiled already.
    pub fn contains(&self, pattern: &str) -> bool {
        self.lock().contains_key(pattern)
    }

    /// Keeps only the patterns for which `keep` is true.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.lock().retain(|pattern, _| keep(pattern));
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, regex::Regex>> {
        // The map is valid after any panic: entries are inserted whole.
        self.compiled.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The canonical form of a path match's value: a prefix without its trailing slash ("/api/"
/// and "/api" are the same prefix), other kinds as written.
pub fn normalized_path(kind: path_match::Type, value: &str) -> &str {
    match kind {
        path_match::Type::PathPrefix if value.len() > 1 => value.trim_end_matches('/'),
        _ => value,
    }
}

/// Parses a template the way the data plane will.
pub fn parse_template(value: &str) -> Result<PathTemplate, String> {
    PathTemplate::parse(value).map_err(|e| format!("invalid path template: {e}"))
}

#[cfg(test)]
mod tests;

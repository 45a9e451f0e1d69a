//! Checks of routes: each field, references to upstreams, and matches that two rules share.

use std::collections::{HashMap, HashSet};

use super::{
    At, MAX_WEIGHT, RegexCache, Report, check_weight, filter, normalized_path, parse_template,
    policy,
};
use http::{HeaderName, Method};

use super::checked::{CheckedMatch, CheckedPath, CheckedValue};
use crate::{
    names,
    v1::{self, header_match, path_match, query_param_match},
};

/// The names a route may refer to.
pub(super) struct Known<'a> {
    pub(super) upstreams: &'a HashSet<&'a str>,
    /// Policy names, with what the checks of a route need to know of each.
    pub(super) policies: &'a HashMap<&'a str, policy::PolicyFacts>,
    /// ProtoSets and HTTP/2 upstreams, for GrpcTranscode filters (whole checks only).
    pub(super) transcoding: Option<&'a super::transcode::Transcoding<'a>>,
}

/// Checks a route; its rules with their parsed matches (those that had no problem: any other
/// was reported).
pub(super) fn check_route<'s>(
    at: &mut At<'_>,
    spec: &'s v1::RouteSpec,
    known: &Known<'_>,
    regexes: &RegexCache,
) -> Vec<(&'s v1::RouteRule, Vec<CheckedMatch>)> {
    let mut checked = Vec::with_capacity(spec.rules.len());
    let mut route_policies = HashSet::new();
    policy::check_references(
        at,
        "spec.policies",
        &spec.policies,
        known.policies,
        &mut route_policies,
    );
    let mut hostnames = HashSet::new();
    for (i, hostname) in spec.hostnames.iter().enumerate() {
        let field = format!("spec.hostnames[{i}]");
        if let Err(reason) = names::check_hostname(hostname) {
            at.error(&field, reason);
        } else if !hostnames.insert(hostname.as_str()) {
            at.error(&field, format!("{hostname:?} is listed twice"));
        }
    }
    if spec.rules.is_empty() {
        at.error("spec.rules", "must have at least one rule".into());
    }
    let default_match = [v1::RouteMatch::default()];
    let mut route_refused = false;
    for (r, rule) in spec.rules.iter().enumerate() {
        let matches = if rule.matches.is_empty() {
            &default_match[..]
        } else {
            &rule.matches[..]
        };
        let mut parsed = Vec::with_capacity(matches.len());
        for (m, route_match) in matches.iter().enumerate() {
            let field = format!("spec.rules[{r}].matches[{m}]");
            parsed.extend(check_match(at, &field, route_match, regexes));
        }
        checked.push((rule, parsed));
        filter::check_filters(at, r, rule, known.transcoding);
        let mut seen = route_policies.clone();
        let rule_field = format!("spec.rules[{r}].policies");
        policy::check_references(at, &rule_field, &rule.policies, known.policies, &mut seen);
        policy::refuse_second_external_auth(
            at,
            &rule_field,
            known.policies,
            &spec.policies,
            &rule.policies,
        );
        if !policy::finds_identity(known.policies, &spec.policies, &rule.policies) {
            policy::refuse_needing_identity(at, &rule_field, &rule.policies, known.policies);
            // The route's own list once, by the first rule without an identity.
            if !route_refused {
                route_refused = policy::refuse_needing_identity(
                    at,
                    "spec.policies",
                    &spec.policies,
                    known.policies,
                );
            }
        }
        if let Some(timeouts) = &rule.timeouts {
            check_timeouts(at, &format!("spec.rules[{r}].timeouts"), timeouts);
        }
        if let Some(retry) = &rule.retry {
            check_retry(at, &format!("spec.rules[{r}].retry"), retry);
        }
        if rule.backend_refs.is_empty() && !filter::redirects(rule) {
            at.error(
                &format!("spec.rules[{r}].backendRefs"),
                "must name at least one upstream".into(),
            );
        }
        for (f, filter) in rule.filters.iter().enumerate() {
            if let Some(name) = filter
                .request_mirror
                .as_ref()
                .and_then(|m| m.backend_ref.as_ref())
                .map(|b| b.name.as_str())
                .filter(|name| !name.is_empty() && !known.upstreams.contains(name))
            {
                at.error(
                    &format!("spec.rules[{r}].filters[{f}].requestMirror.backendRef.name"),
                    format!("upstream {name:?} does not exist"),
                );
            }
        }
        for (b, backend) in rule.backend_refs.iter().enumerate() {
            let field = format!("spec.rules[{r}].backendRefs[{b}]");
            if !known.upstreams.contains(backend.name.as_str()) {
                at.error(
                    &format!("{field}.name"),
                    format!("upstream {:?} does not exist", backend.name),
                );
            }
            check_weight(at, &format!("{field}.weight"), backend.weight);
        }
        if !rule.backend_refs.is_empty() && rule.backend_refs.iter().all(|b| b.weight == Some(0)) {
            at.error(
                &format!("spec.rules[{r}].backendRefs"),
                format!("at least one weight must be above 0 (at most {MAX_WEIGHT})"),
            );
        }
    }
    checked
}

fn check_retry(at: &mut At<'_>, field: &str, retry: &v1::RouteRetry) {
    if !(1..=10).contains(&retry.attempts) {
        at.error(
            &format!("{field}.attempts"),
            "must be between 1 and 10".into(),
        );
    }
    super::check_duration(at, &format!("{field}.backoff"), retry.backoff.as_ref());
    if retry.backoff.as_ref().is_some_and(|b| b.seconds >= 10) {
        at.error(&format!("{field}.backoff"), "must be under 10s".into());
    }
    for (i, code) in retry.codes.iter().enumerate() {
        if !(400..=599).contains(code) {
            at.error(
                &format!("{field}.codes[{i}]"),
                format!("{code} is not an error status (400 to 599)"),
            );
        }
    }
}

fn check_timeouts(at: &mut At<'_>, field: &str, timeouts: &v1::RouteTimeouts) {
    super::check_duration(at, &format!("{field}.request"), timeouts.request.as_ref());
    super::check_duration(
        at,
        &format!("{field}.backendRequest"),
        timeouts.backend_request.as_ref(),
    );
    let as_duration = |d: Option<&prost_types::Duration>| d.and_then(crate::duration::from_proto);
    if let (Some(request), Some(backend)) = (
        as_duration(timeouts.request.as_ref()),
        as_duration(timeouts.backend_request.as_ref()),
    ) && backend > request
    {
        at.error(
            &format!("{field}.backendRequest"),
            format!("must be at most request ({request:?}): a try cannot outlast the request"),
        );
    }
}

/// Checks one match; its parsed form when it has no problem.
fn check_match(
    at: &mut At<'_>,
    field: &str,
    route_match: &v1::RouteMatch,
    regexes: &RegexCache,
) -> Option<CheckedMatch> {
    let mut ok = true;
    let mut fail = |at: &mut At<'_>, field: &str, reason: String| {
        at.error(field, reason);
        ok = false;
    };
    let path = match &route_match.path {
        None => Some(CheckedPath::Prefix("/".into())),
        Some(path) => {
            let value_field = format!("{field}.path.value");
            match path_match::Type::try_from(path.r#type) {
                Ok(kind @ (path_match::Type::Exact | path_match::Type::PathPrefix)) => {
                    match check_literal_path(&path.value) {
                        Err(reason) => {
                            fail(at, &value_field, reason);
                            None
                        }
                        Ok(()) if kind == path_match::Type::Exact => {
                            Some(CheckedPath::Exact(path.value.clone()))
                        }
                        Ok(()) => {
                            let prefix = normalized_path(kind, &path.value);
                            Some(CheckedPath::Prefix(
                                if prefix.is_empty() { "/" } else { prefix }.into(),
                            ))
                        }
                    }
                }
                Ok(path_match::Type::RegularExpression) => {
                    match regexes.get_or_compile(&path.value) {
                        Ok(regex) => Some(CheckedPath::Regex {
                            pattern: path.value.clone(),
                            regex,
                        }),
                        Err(reason) => {
                            fail(at, &value_field, reason);
                            None
                        }
                    }
                }
                Ok(path_match::Type::Template) => match parse_template(&path.value) {
                    Ok(template) => Some(CheckedPath::Template(template)),
                    Err(reason) => {
                        fail(at, &value_field, reason);
                        None
                    }
                },
                Err(_) => {
                    fail(at, &format!("{field}.path.type"), "unknown type".into());
                    None
                }
            }
        }
    };
    let method = if route_match.method.is_empty() {
        None
    } else {
        match names::check_method(&route_match.method).and_then(|()| {
            Method::from_bytes(route_match.method.as_bytes()).map_err(|e| e.to_string())
        }) {
            Ok(method) => Some(method),
            Err(reason) => {
                fail(at, &format!("{field}.method"), reason);
                None
            }
        }
    };
    let mut headers = Vec::with_capacity(route_match.headers.len());
    let mut header_names = HashSet::new();
    for (h, header) in route_match.headers.iter().enumerate() {
        let field = format!("{field}.headers[{h}]");
        let name = match names::check_header_name(&header.name).and_then(|()| {
            HeaderName::from_bytes(header.name.to_ascii_lowercase().as_bytes())
                .map_err(|e| e.to_string())
        }) {
            Ok(name) if !header_names.insert(name.clone()) => {
                fail(
                    at,
                    &format!("{field}.name"),
                    format!("header {:?} is matched twice", header.name),
                );
                None
            }
            Ok(name) => Some(name),
            Err(reason) => {
                fail(at, &format!("{field}.name"), reason);
                None
            }
        };
        let value = match header_match::Type::try_from(header.r#type) {
            Ok(header_match::Type::Exact) => names::check_header_value(&header.value)
                .map(|()| CheckedValue::Exact(header.value.clone())),
            Ok(header_match::Type::RegularExpression) => checked_regex(regexes, &header.value),
            Err(_) => {
                fail(at, &format!("{field}.type"), "unknown type".into());
                continue;
            }
        };
        match (name, value) {
            (Some(name), Ok(value)) => headers.push((name, value)),
            (_, Err(reason)) => fail(at, &format!("{field}.value"), reason),
            (None, Ok(_)) => {}
        }
    }
    let mut query = Vec::with_capacity(route_match.query_params.len());
    let mut query_names = HashSet::new();
    for (q, param) in route_match.query_params.iter().enumerate() {
        let field = format!("{field}.queryParams[{q}]");
        if param.name.is_empty() {
            fail(at, &format!("{field}.name"), "must not be empty".into());
        } else if !query_names.insert(param.name.as_str()) {
            fail(
                at,
                &format!("{field}.name"),
                format!("query parameter {:?} is matched twice", param.name),
            );
        }
        let value = match query_param_match::Type::try_from(param.r#type) {
            Ok(query_param_match::Type::Exact) => Ok(CheckedValue::Exact(param.value.clone())),
            Ok(query_param_match::Type::RegularExpression) => checked_regex(regexes, &param.value),
            Err(_) => {
                fail(at, &format!("{field}.type"), "unknown type".into());
                continue;
            }
        };
        match value {
            Ok(value) => query.push((param.name.clone(), value)),
            Err(reason) => fail(at, &format!("{field}.value"), reason),
        }
    }
    let path = path?;
    ok.then_some(CheckedMatch {
        path,
        method,
        headers,
        query,
    })
}

fn checked_regex(regexes: &RegexCache, pattern: &str) -> Result<CheckedValue, String> {
    regexes
        .get_or_compile(pattern)
        .map(|regex| CheckedValue::Regex {
            pattern: pattern.to_owned(),
            regex,
        })
}

pub(super) fn check_literal_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with '/'"));
    }
    if path
        .bytes()
        .any(|b| b == b'?' || b == b'#' || !(b'!'..=b'~').contains(&b))
    {
        return Err(format!(
            "{path:?} must be a path without query, fragment, spaces or control characters"
        ));
    }
    Ok(())
}

/// What makes two matches the same: for the same hostname, two rules with these equal would
/// compete for exactly the same requests.
#[derive(PartialEq, Eq, Hash)]
struct MatchKey<'a> {
    hostname: &'a str,
    path_type: i32,
    path: &'a str,
    method: &'a str,
    headers: Vec<(String, i32, &'a str)>,
    query: Vec<(&'a str, i32, &'a str)>,
}

/// Reports a match that an earlier route (by name) or rule already has for the same hostname.
pub(super) fn check_conflicts(report: &mut Report, routes: &[(&str, &v1::RouteSpec)]) {
    let default_match = v1::RouteMatch::default();
    let mut first: HashMap<MatchKey<'_>, String> = HashMap::new();
    for (name, spec) in routes {
        let hostnames: Vec<&str> = if spec.hostnames.is_empty() {
            vec![""]
        } else {
            spec.hostnames.iter().map(String::as_str).collect()
        };
        for (r, rule) in spec.rules.iter().enumerate() {
            let matches: Vec<(String, &v1::RouteMatch)> = if rule.matches.is_empty() {
                vec![(format!("spec.rules[{r}]"), &default_match)]
            } else {
                rule.matches
                    .iter()
                    .enumerate()
                    .map(|(m, rm)| (format!("spec.rules[{r}].matches[{m}]"), rm))
                    .collect()
            };
            for (field, route_match) in matches {
                for hostname in &hostnames {
                    let key = match_key(hostname, route_match);
                    let here = format!("Route/{name} {field}");
                    match first.get(&key) {
                        Some(there) if *there != here => {
                            let host = if hostname.is_empty() {
                                "any host"
                            } else {
                                hostname
                            };
                            report.push(
                                "Route",
                                name,
                                &field,
                                format!("conflicts with {there}: the same match for {host}"),
                            );
                        }
                        Some(_) => {}
                        None => {
                            first.insert(key, here);
                        }
                    }
                }
            }
        }
    }
}

/// Where a match sits in its route: (rule, match), the match `u32::MAX` for a rule without
/// matches (its default match).
pub(super) type MatchAt = (u32, u32);

/// The conflict keys of a route's matches (as [`check_conflicts`] compares them), hashed to
/// 128 bits (two 64-bit hashes under different salts, so that a collision is out of reach even
/// for someone who writes routes to find one), each with where it sits.
pub(super) fn match_hashes(spec: &v1::RouteSpec) -> Vec<(u128, MatchAt)> {
    use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};
    // Fixed keys: the same key hashes the same on every call.
    let hasher = BuildHasherDefault::<DefaultHasher>::default();
    let hash = |key: &MatchKey<'_>| {
        let low = hasher.hash_one((0u8, key));
        let high = hasher.hash_one((1u8, key));
        (u128::from(high) << 64) | u128::from(low)
    };
    let default_match = v1::RouteMatch::default();
    let hostnames: Vec<&str> = if spec.hostnames.is_empty() {
        vec![""]
    } else {
        spec.hostnames.iter().map(String::as_str).collect()
    };
    let mut out = Vec::new();
    for (r, rule) in spec.rules.iter().enumerate() {
        let matches: Vec<(u32, &v1::RouteMatch)> = if rule.matches.is_empty() {
            vec![(u32::MAX, &default_match)]
        } else {
            (0u32..).zip(&rule.matches).collect()
        };
        for (m, route_match) in matches {
            for hostname in &hostnames {
                let key = match_key(hostname, route_match);
                out.push((hash(&key), (r as u32, m)));
            }
        }
    }
    out
}

fn match_key<'a>(hostname: &'a str, m: &'a v1::RouteMatch) -> MatchKey<'a> {
    let (path_type, path) = match &m.path {
        Some(p) => {
            let kind = path_match::Type::try_from(p.r#type).unwrap_or_default();
            (p.r#type, normalized_path(kind, &p.value))
        }
        None => (path_match::Type::PathPrefix as i32, "/"),
    };
    let mut headers: Vec<_> = m
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.r#type, h.value.as_str()))
        .collect();
    headers.sort();
    let mut query: Vec<_> = m
        .query_params
        .iter()
        .map(|q| (q.name.as_str(), q.r#type, q.value.as_str()))
        .collect();
    query.sort();
    MatchKey {
        hostname,
        path_type,
        path,
        method: &m.method,
        headers,
        query,
    }
}

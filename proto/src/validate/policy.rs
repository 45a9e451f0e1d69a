//! Checks of policies: each body on its own, and the policy names routes refer to.

use std::collections::{HashMap, HashSet};

use super::{At, check_duration, external_auth, identity};
use crate::{
    names,
    net::Cidr,
    v1::{self, policy_spec::Body},
};

/// The largest request head the data plane reads (HTTP/1 head, HTTP/2 header list); a
/// `maxHeaderBytes` above it could never apply.
pub const MAX_HEAD_BYTES: u64 = 64 * 1024;

pub(super) fn check_policy(at: &mut At<'_>, spec: &v1::PolicySpec) {
    match &spec.body {
        None => at.error(
            "spec",
            "must set one policy body (ipAccess, cors, requestLimits, jwt, apiKey, externalAuth, authorization, rateLimit or requestValidation)".into(),
        ),
        Some(Body::Jwt(jwt)) => identity::check_jwt(at, jwt),
        Some(Body::ApiKey(key)) => identity::check_api_key(at, key),
        Some(Body::Authorization(rules)) => identity::check_authorization(at, rules),
        Some(Body::RateLimit(limit)) => identity::check_rate_limit(at, limit),
        Some(Body::RequestValidation(rules)) => identity::check_request_validation(at, rules),
        Some(Body::IpAccess(ip)) => check_ip_access(at, ip),
        Some(Body::Cors(cors)) => check_cors(at, cors),
        Some(Body::RequestLimits(limits)) => check_limits(at, limits),
        Some(Body::ExternalAuth(auth)) => external_auth::check_external_auth(at, auth),
    }
}

fn check_ip_access(at: &mut At<'_>, ip: &v1::IpAccessPolicy) {
    if ip.allow.is_empty() && ip.deny.is_empty() {
        at.error("spec.ipAccess", "must list allow or deny networks".into());
    }
    for (list, field) in [(&ip.allow, "allow"), (&ip.deny, "deny")] {
        for (i, network) in list.iter().enumerate() {
            if let Err(e) = network.parse::<Cidr>() {
                at.error(&format!("spec.ipAccess.{field}[{i}]"), e.to_string());
            }
        }
    }
}

fn check_cors(at: &mut At<'_>, cors: &v1::CorsPolicy) {
    if cors.allow_origins.is_empty() {
        at.error(
            "spec.cors.allowOrigins",
            "must list at least one origin".into(),
        );
    }
    for (i, origin) in cors.allow_origins.iter().enumerate() {
        let field = format!("spec.cors.allowOrigins[{i}]");
        if origin == "*" {
            if cors.allow_credentials {
                at.error(
                    &field,
                    "\"*\" cannot be combined with allowCredentials (browsers refuse it)".into(),
                );
            }
        } else if let Err(reason) = check_origin(origin) {
            at.error(&field, reason);
        }
    }
    for (i, method) in cors.allow_methods.iter().enumerate() {
        if method != "*"
            && let Err(reason) = names::check_method(method)
        {
            at.error(&format!("spec.cors.allowMethods[{i}]"), reason);
        }
    }
    for (list, field) in [
        (&cors.allow_headers, "allowHeaders"),
        (&cors.expose_headers, "exposeHeaders"),
    ] {
        for (i, name) in list.iter().enumerate() {
            if name != "*"
                && let Err(reason) = names::check_header_name(name)
            {
                at.error(&format!("spec.cors.{field}[{i}]"), reason);
            }
        }
    }
    check_duration(at, "spec.cors.maxAge", cors.max_age.as_ref());
}

/// `scheme://host[:port]`, the host optionally `*.`-prefixed; nothing after it.
fn check_origin(origin: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{origin:?} is not an origin (\"https://app.example.com\", \"https://*.example.com\" or \"*\")"
        )
    };
    let (scheme, rest) = origin.split_once("://").ok_or_else(bad)?;
    if !matches!(scheme, "http" | "https") {
        return Err(bad());
    }
    let host = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(bad());
            }
            host
        }
        _ => rest,
    };
    let host = host.strip_prefix("*.").unwrap_or(host);
    if !names::is_dns_name(host) && host.parse::<std::net::IpAddr>().is_err() {
        return Err(bad());
    }
    Ok(())
}

fn check_limits(at: &mut At<'_>, limits: &v1::RequestLimitsPolicy) {
    let fields = [
        (limits.max_body_bytes, "maxBodyBytes", u64::MAX),
        (limits.max_header_bytes, "maxHeaderBytes", MAX_HEAD_BYTES),
        (limits.max_uri_bytes, "maxUriBytes", MAX_HEAD_BYTES),
    ];
    if fields.iter().all(|(value, _, _)| value.is_none()) {
        at.error(
            "spec.requestLimits",
            "must set maxBodyBytes, maxHeaderBytes or maxUriBytes".into(),
        );
    }
    for (value, field, max) in fields {
        match value {
            Some(0) => at.error(
                &format!("spec.requestLimits.{field}"),
                "must be above 0".into(),
            ),
            Some(n) if n > max => at.error(
                &format!("spec.requestLimits.{field}"),
                format!("must be at most {max} (the data plane's head limit)"),
            ),
            _ => {}
        }
    }
}

/// What a route's checks need to know of a policy.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PolicyFacts {
    pub(super) global: bool,
    /// `jwt` or `apiKey`: it finds the request's identity.
    pub(super) identity: bool,
    /// What of it needs an identity to mean anything, if anything does.
    pub(super) needs_identity: Option<&'static str>,
    /// `externalAuth`: a rule asks one auth service at most.
    pub(super) external_auth: bool,
}

impl PolicyFacts {
    pub(super) fn of(spec: &v1::PolicySpec) -> Self {
        use v1::rate_limit_policy::Key;
        Self {
            global: spec.global,
            identity: matches!(spec.body, Some(Body::Jwt(_) | Body::ApiKey(_))),
            needs_identity: match &spec.body {
                Some(Body::Authorization(_)) => Some("its authorization rules"),
                Some(Body::RateLimit(limit)) if limit.key == Key::Consumer as i32 => {
                    Some("its rate limit by Consumer")
                }
                _ => None,
            },
            external_auth: matches!(spec.body, Some(Body::ExternalAuth(_))),
        }
    }
}

/// Checks a list of policy names (`spec.policies`, `spec.rules[r].policies`): each names a
/// policy, none twice, and none that is global (it applies already).
pub(super) fn check_references(
    at: &mut At<'_>,
    field: &str,
    names: &[String],
    policies: &HashMap<&str, PolicyFacts>,
    seen: &mut HashSet<String>,
) {
    for (i, name) in names.iter().enumerate() {
        let field = format!("{field}[{i}]");
        match policies.get(name.as_str()).map(|facts| facts.global) {
            None => at.error(&field, format!("policy {name:?} does not exist")),
            Some(true) => at.error(
                &field,
                format!("policy {name:?} is global: it applies to every route already"),
            ),
            Some(false) if !seen.insert(name.clone()) => {
                at.error(&field, format!("policy {name:?} is listed twice"));
            }
            Some(false) => {}
        }
    }
}

/// Refuses a rule that would ask more than one auth service (global policies, the route's,
/// its own): each would need its own round trip before the request could go on.
pub(super) fn refuse_second_external_auth(
    at: &mut At<'_>,
    field: &str,
    policies: &HashMap<&str, PolicyFacts>,
    route: &[String],
    rule: &[String],
) {
    let global = policies
        .iter()
        .filter(|(_, facts)| facts.global && facts.external_auth)
        .map(|(name, _)| *name);
    let listed = route.iter().chain(rule).map(String::as_str).filter(|name| {
        policies
            .get(name)
            .is_some_and(|facts| !facts.global && facts.external_auth)
    });
    let mut names: Vec<&str> = global.chain(listed).collect();
    names.sort_unstable();
    names.dedup();
    if names.len() > 1 {
        at.error(
            field,
            format!(
                "applies more than one externalAuth policy ({}); a rule asks one auth service",
                names.join(", ")
            ),
        );
    }
}

/// Whether a rule's policies (global, the route's, its own) find an identity.
pub(super) fn finds_identity(
    policies: &HashMap<&str, PolicyFacts>,
    route: &[String],
    rule: &[String],
) -> bool {
    policies
        .values()
        .any(|facts| facts.global && facts.identity)
        || route
            .iter()
            .chain(rule)
            .filter_map(|name| policies.get(name.as_str()))
            .any(|facts| facts.identity)
}

/// Refuses the policies of a list that need an identity (on a rule where none is found);
/// whether there was one.
pub(super) fn refuse_needing_identity(
    at: &mut At<'_>,
    field: &str,
    names: &[String],
    policies: &HashMap<&str, PolicyFacts>,
) -> bool {
    let mut refused = false;
    for (i, name) in names.iter().enumerate() {
        if let Some(what) = policies.get(name.as_str()).and_then(|f| f.needs_identity) {
            at.error(
                &format!("{field}[{i}]"),
                format!(
                    "policy {name:?}: {what} need an identity, and no jwt or apiKey policy applies to the rule"
                ),
            );
            refused = true;
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins() {
        for good in [
            "https://app.example.com",
            "http://localhost:3000",
            "https://*.example.com",
            "http://127.0.0.1:8080",
        ] {
            assert!(super::check_origin(good).is_ok(), "{good}");
        }
        for bad in [
            "app.example.com",
            "ftp://x.com",
            "https://x.com/path",
            "https://x.com:0",
            "https://",
            "https://a b",
        ] {
            assert!(super::check_origin(bad).is_err(), "{bad}");
        }
    }
}

//! Checks of `externalAuth` policies: the body on its own, and the Upstream it names (which
//! only the whole graph knows).

use std::collections::HashSet;

use super::{At, check_duration};
use crate::{duration, names, v1};

/// The longest an auth service may take to answer.
pub const MAX_AUTH_TIMEOUT_SECS: i64 = 60;
/// The longest an answer is reused.
pub const MAX_AUTH_CACHE_TTL_SECS: i64 = 3600;

/// Headers the gateway writes on the auth request, or that frame a message: never copied
/// between the request, the auth service and the upstream by name.
const RESERVED: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-method",
    "x-forwarded-uri",
];

pub(super) fn check_external_auth(at: &mut At<'_>, policy: &v1::ExternalAuthPolicy) {
    if policy
        .backend_ref
        .as_ref()
        .is_none_or(|b| b.name.is_empty())
    {
        at.error(
            "spec.externalAuth.backendRef.name",
            "must name the auth service's Upstream".into(),
        );
    }
    if policy
        .backend_ref
        .as_ref()
        .is_some_and(|b| b.weight.is_some())
    {
        at.error(
            "spec.externalAuth.backendRef.weight",
            "has no meaning here (one auth service)".into(),
        );
    }
    if !policy.path.is_empty()
        && (!policy.path.starts_with('/') || !policy.path.bytes().all(|b| b.is_ascii_graphic()))
    {
        at.error(
            "spec.externalAuth.path",
            format!(
                "{:?} is not a path (it starts with \"/\" and has no spaces or control characters)",
                policy.path
            ),
        );
    }
    for (list, field) in [
        (&policy.headers_to_auth, "headersToAuth"),
        (&policy.headers_from_auth, "headersFromAuth"),
    ] {
        let mut seen = HashSet::new();
        for (i, name) in list.iter().enumerate() {
            let field = format!("spec.externalAuth.{field}[{i}]");
            let lower = name.to_ascii_lowercase();
            if let Err(reason) = names::check_header_name(name) {
                at.error(&field, reason);
            } else if RESERVED.contains(&lower.as_str()) {
                at.error(
                    &field,
                    format!("{name:?} is written by the gateway and cannot be passed by name"),
                );
            } else if !seen.insert(lower) {
                at.error(&field, format!("{name:?} is listed twice"));
            }
        }
    }
    check_bounded(
        at,
        "spec.externalAuth.timeout",
        policy.timeout.as_ref(),
        MAX_AUTH_TIMEOUT_SECS,
    );
    check_bounded(
        at,
        "spec.externalAuth.cacheTtl",
        policy.cache_ttl.as_ref(),
        MAX_AUTH_CACHE_TTL_SECS,
    );
}

/// A positive duration of at most `max_secs`.
fn check_bounded(
    at: &mut At<'_>,
    field: &str,
    value: Option<&prost_types::Duration>,
    max_secs: i64,
) {
    check_duration(at, field, value);
    if let Some(d) = value
        && duration::check_proto_duration(d).is_ok()
        && (d.seconds > max_secs || (d.seconds == max_secs && d.nanos > 0))
    {
        at.error(field, format!("must be at most {max_secs}s"));
    }
}

/// The Upstream an `externalAuth` policy names exists, and speaks HTTP/1.1.
pub(super) fn check_references(
    at: &mut At<'_>,
    policy: &v1::ExternalAuthPolicy,
    upstreams: &HashSet<&str>,
    multiplexed: &HashSet<&str>,
) {
    let Some(name) = policy.backend_ref.as_ref().map(|b| b.name.as_str()) else {
        return;
    };
    if name.is_empty() {
        return;
    }
    if !upstreams.contains(name) {
        at.error(
            "spec.externalAuth.backendRef.name",
            format!("upstream {name:?} does not exist"),
        );
    } else if multiplexed.contains(name) {
        at.error(
            "spec.externalAuth.backendRef.name",
            format!("upstream {name:?} speaks HTTP/2; an auth service is called over HTTP/1.1"),
        );
    }
}

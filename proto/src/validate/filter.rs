//! Checks of a rule's filters (Gateway API HTTPRouteFilter): the type and its one body, header
//! edits, rewrites and redirects.

use std::collections::HashSet;

use super::{
    At,
    route::check_literal_path,
    transcode::{self, Transcoding},
};
use crate::{
    names,
    v1::{self, path_match, path_modifier, route_filter::Type},
};

/// Headers a modifier may not touch: the gateway writes them itself (framing, the hop, the
/// request id), and `host` is URLRewrite's.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "x-request-id",
];

/// `transcoding` is what a GrpcTranscode filter is checked against (none in an incremental
/// check, which leaves such routes to the whole one).
pub(super) fn check_filters(
    at: &mut At<'_>,
    r: usize,
    rule: &v1::RouteRule,
    transcoding: Option<&Transcoding<'_>>,
) {
    let mut rewrites = 0;
    let mut redirects = 0;
    for (f, filter) in rule.filters.iter().enumerate() {
        let field = format!("spec.rules[{r}].filters[{f}]");
        let Ok(kind) = Type::try_from(filter.r#type) else {
            at.error(&format!("{field}.type"), "unknown type".into());
            continue;
        };
        let bodies = [
            (
                Type::RequestHeaderModifier,
                filter.request_header_modifier.is_some(),
                "requestHeaderModifier",
            ),
            (
                Type::ResponseHeaderModifier,
                filter.response_header_modifier.is_some(),
                "responseHeaderModifier",
            ),
            (Type::UrlRewrite, filter.url_rewrite.is_some(), "urlRewrite"),
            (
                Type::RequestRedirect,
                filter.request_redirect.is_some(),
                "requestRedirect",
            ),
            (
                Type::RequestMirror,
                filter.request_mirror.is_some(),
                "requestMirror",
            ),
            (
                Type::GrpcTranscode,
                filter.grpc_transcode.is_some(),
                "grpcTranscode",
            ),
        ];
        match kind {
            Type::Unspecified => {
                at.error(
                    &format!("{field}.type"),
                    "is required (RequestHeaderModifier, ResponseHeaderModifier, URLRewrite or RequestRedirect)".into(),
                );
                continue;
            }
            Type::GrpcTranscode => {
                match (&filter.grpc_transcode, transcoding) {
                    (Some(body), Some(transcoding)) => transcode::check_transcode(
                        at,
                        &format!("{field}.grpcTranscode"),
                        body,
                        rule,
                        transcoding,
                    ),
                    (Some(_), None) => at.error(
                        &format!("{field}.grpcTranscode"),
                        "is checked with the whole configuration".into(),
                    ),
                    (None, _) => at.error(
                        &format!("{field}.grpcTranscode"),
                        "is required for type GrpcTranscode".into(),
                    ),
                }
                continue;
            }
            Type::RequestMirror => {
                if let Some(mirror) = &filter.request_mirror {
                    if mirror
                        .backend_ref
                        .as_ref()
                        .is_none_or(|b| b.name.is_empty())
                    {
                        at.error(
                            &format!("{field}.requestMirror.backendRef.name"),
                            "must name the shadow Upstream".into(),
                        );
                    }
                    if mirror.percent.is_some_and(|p| p == 0 || p > 100) {
                        at.error(
                            &format!("{field}.requestMirror.percent"),
                            "must be between 1 and 100".into(),
                        );
                    }
                }
            }
            _ => {}
        }
        for (body_kind, set, name) in bodies {
            if body_kind == kind && !set {
                at.error(
                    &format!("{field}.{name}"),
                    format!("is required for type {}", kind.as_str_name()),
                );
            } else if body_kind != kind && set {
                at.error(
                    &format!("{field}.{name}"),
                    format!("must not be set for type {}", kind.as_str_name()),
                );
            }
        }
        if let Some(m) = &filter.request_header_modifier {
            check_modifier(at, &format!("{field}.requestHeaderModifier"), m);
        }
        if let Some(m) = &filter.response_header_modifier {
            check_modifier(at, &format!("{field}.responseHeaderModifier"), m);
        }
        if let Some(rewrite) = &filter.url_rewrite {
            rewrites += 1;
            let field = format!("{field}.urlRewrite");
            if !rewrite.hostname.is_empty() && !names::is_dns_name(&rewrite.hostname) {
                at.error(
                    &format!("{field}.hostname"),
                    format!("{:?} is not a DNS name", rewrite.hostname),
                );
            }
            if rewrite.hostname.is_empty() && rewrite.path.is_none() {
                at.error(&field, "must set hostname or path".into());
            }
            if let Some(path) = &rewrite.path {
                check_path_modifier(at, &format!("{field}.path"), path, rule);
            }
        }
        if let Some(redirect) = &filter.request_redirect {
            redirects += 1;
            check_redirect(at, &format!("{field}.requestRedirect"), redirect, rule);
        }
    }
    let field = format!("spec.rules[{r}].filters");
    if rewrites > 1 {
        at.error(&field, "at most one URLRewrite filter per rule".into());
    }
    if redirects > 1 {
        at.error(&field, "at most one RequestRedirect filter per rule".into());
    }
    if rewrites > 0 && redirects > 0 {
        at.error(
            &field,
            "URLRewrite and RequestRedirect cannot be on the same rule".into(),
        );
    }
}

/// Whether the rule answers every request itself (a redirect), so it needs no backend.
pub(super) fn redirects(rule: &v1::RouteRule) -> bool {
    rule.filters
        .iter()
        .any(|f| f.r#type == Type::RequestRedirect as i32)
}

fn check_modifier(at: &mut At<'_>, field: &str, m: &v1::HeaderModifier) {
    if m.set.is_empty() && m.add.is_empty() && m.remove.is_empty() {
        at.error(field, "must set, add or remove at least one header".into());
    }
    let mut seen = HashSet::new();
    let mut check_name = |at: &mut At<'_>, field: String, name: &str| {
        if let Err(reason) = names::check_header_name(name) {
            at.error(&field, reason);
        } else if RESERVED_HEADERS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
        {
            at.error(
                &field,
                format!("{name:?} is managed by the gateway and cannot be modified"),
            );
        } else if !seen.insert(name.to_ascii_lowercase()) {
            at.error(
                &field,
                format!("header {name:?} appears twice in this modifier"),
            );
        }
    };
    for (list, which) in [(&m.set, "set"), (&m.add, "add")] {
        for (i, header) in list.iter().enumerate() {
            check_name(at, format!("{field}.{which}[{i}].name"), &header.name);
            if let Err(reason) = names::check_header_value(&header.value) {
                at.error(&format!("{field}.{which}[{i}].value"), reason);
            }
        }
    }
    for (i, name) in m.remove.iter().enumerate() {
        check_name(at, format!("{field}.remove[{i}]"), name);
    }
}

fn check_path_modifier(
    at: &mut At<'_>,
    field: &str,
    path: &v1::PathModifier,
    rule: &v1::RouteRule,
) {
    match path_modifier::Type::try_from(path.r#type) {
        Ok(path_modifier::Type::ReplaceFullPath) => {
            if let Err(reason) = check_literal_path(&path.replace_full_path) {
                at.error(&format!("{field}.replaceFullPath"), reason);
            }
            if !path.replace_prefix_match.is_empty() {
                at.error(
                    &format!("{field}.replacePrefixMatch"),
                    "must not be set for type ReplaceFullPath".into(),
                );
            }
        }
        Ok(path_modifier::Type::ReplacePrefixMatch) => {
            if let Err(reason) = check_literal_path(&path.replace_prefix_match) {
                at.error(&format!("{field}.replacePrefixMatch"), reason);
            }
            if !path.replace_full_path.is_empty() {
                at.error(
                    &format!("{field}.replaceFullPath"),
                    "must not be set for type ReplacePrefixMatch".into(),
                );
            }
            let all_prefixes = rule.matches.iter().all(|m| {
                m.path
                    .as_ref()
                    .is_none_or(|p| p.r#type == path_match::Type::PathPrefix as i32)
            });
            if !all_prefixes {
                at.error(
                    &format!("{field}.type"),
                    "ReplacePrefixMatch needs every match of the rule to be a PathPrefix".into(),
                );
            }
        }
        Ok(path_modifier::Type::Unspecified) => at.error(
            &format!("{field}.type"),
            "is required (ReplaceFullPath or ReplacePrefixMatch)".into(),
        ),
        Err(_) => at.error(&format!("{field}.type"), "unknown type".into()),
    }
}

fn check_redirect(
    at: &mut At<'_>,
    field: &str,
    redirect: &v1::RequestRedirect,
    rule: &v1::RouteRule,
) {
    if !matches!(redirect.scheme.as_str(), "" | "http" | "https") {
        at.error(
            &format!("{field}.scheme"),
            format!("{:?} must be http or https", redirect.scheme),
        );
    }
    if !redirect.hostname.is_empty() && !names::is_dns_name(&redirect.hostname) {
        at.error(
            &format!("{field}.hostname"),
            format!("{:?} is not a DNS name", redirect.hostname),
        );
    }
    if let Some(port) = redirect.port
        && !(1..=65_535).contains(&port)
    {
        at.error(
            &format!("{field}.port"),
            "must be between 1 and 65535".into(),
        );
    }
    if let Some(status) = redirect.status_code
        && !matches!(status, 301 | 302 | 307 | 308)
    {
        at.error(
            &format!("{field}.statusCode"),
            "must be 301, 302, 307 or 308".into(),
        );
    }
    if let Some(path) = &redirect.path {
        check_path_modifier(at, &format!("{field}.path"), path, rule);
    }
}

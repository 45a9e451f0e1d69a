//! A `GrpcTranscode` filter against the rest of the configuration: its ProtoSet exists and
//! compiles, the services it names are in it, every HTTP rule of their methods parses and fits
//! the method's messages, no two rules of one HTTP method have the same template, and the rule
//! sends to HTTP/2 upstreams (gRPC needs them).

use std::collections::{HashMap, HashSet};

use super::{At, proto_set};
use crate::{http_rule, v1};

/// What a GrpcTranscode filter is checked against.
#[derive(Debug, Default)]
pub(super) struct Transcoding<'a> {
    pub(super) proto_sets: HashMap<&'a str, &'a v1::ProtoSetSpec>,
    /// Upstreams spoken to over HTTP/2 (H2C or H2).
    pub(super) multiplexed: HashSet<&'a str>,
}

pub(super) fn check_transcode(
    at: &mut At<'_>,
    field: &str,
    filter: &v1::GrpcTranscode,
    rule: &v1::RouteRule,
    transcoding: &Transcoding<'_>,
) {
    let set_field = format!("{field}.protoSet");
    let Some(spec) = transcoding.proto_sets.get(filter.proto_set.as_str()) else {
        return at.error(
            &set_field,
            format!("no ProtoSet is named {:?}", filter.proto_set),
        );
    };
    let Ok(pool) = proto_set::compile(spec) else {
        // The ProtoSet's own check names the problem.
        return at.error(
            &set_field,
            format!("ProtoSet {:?} does not compile", filter.proto_set),
        );
    };
    // Headers that gRPC or the hop owns cannot be passed through as metadata.
    for (list, names) in [
        ("requestHeaders", &filter.request_headers),
        ("responseHeaders", &filter.response_headers),
    ] {
        for (i, name) in names.iter().enumerate() {
            let lower = name.to_ascii_lowercase();
            let reserved = lower.starts_with("grpc-")
                || matches!(
                    lower.as_str(),
                    "content-type"
                        | "content-length"
                        | "te"
                        | "host"
                        | "connection"
                        | "transfer-encoding"
                        | "upgrade"
                        | "keep-alive"
                        | "x-request-id"
                );
            let field = format!("{field}.{list}[{i}]");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                at.error(&field, format!("{name:?} is not a header name"));
            } else if reserved {
                at.error(&field, format!("{name:?} is managed by the gateway"));
            }
        }
    }
    if filter.services.is_empty() {
        at.error(
            &format!("{field}.services"),
            "must name at least one service".into(),
        );
    }
    // (HTTP method, template shape) → the method that has it.
    let mut taken = HashMap::new();
    for (s, name) in filter.services.iter().enumerate() {
        let service_field = format!("{field}.services[{s}]");
        let Some(service) = pool.get_service_by_name(name) else {
            at.error(
                &service_field,
                format!("ProtoSet {:?} has no service {name:?}", filter.proto_set),
            );
            continue;
        };
        for method in service.methods() {
            let mut bindings = match http_rule::bindings(&method) {
                Ok(bindings) => bindings,
                Err(reason) => {
                    at.error(&service_field, format!("{}: {reason}", method.full_name()));
                    continue;
                }
            };
            if bindings.is_empty() && filter.allow_unannotated {
                bindings.push(http_rule::unannotated(&method));
            }
            for binding in bindings {
                let (segments, verb) = binding.template.shape();
                let key = (binding.method.clone(), segments, verb);
                if let Some(other) = taken.insert(key, method.full_name().to_owned()) {
                    at.error(
                        &service_field,
                        format!(
                            "{}: {} {} is already {other}'s",
                            method.full_name(),
                            binding.method,
                            binding.template
                        ),
                    );
                }
            }
        }
    }
    for (b, backend) in rule.backend_refs.iter().enumerate() {
        if !transcoding.multiplexed.contains(backend.name.as_str()) {
            at.error(
                &format!(
                    "{}.backendRefs[{b}].name",
                    field.split(".filters").next().unwrap_or(field)
                ),
                format!(
                    "upstream {:?} must be H2C or H2: gRPC backends speak HTTP/2",
                    backend.name
                ),
            );
        }
    }
}

//! The KIND argument of `get` and `delete`.

use gateway_proto::ResourceKind;

use crate::error::usage;

/// Parses a kind: `routes`, `Route`, `upstream`, … (any case). An unknown one is a usage
/// error.
pub(crate) fn parse_kind(text: &str) -> anyhow::Result<ResourceKind> {
    if let Some(kind) = ResourceKind::parse(text) {
        return Ok(kind);
    }
    let known: Vec<&str> = ResourceKind::ALL.iter().map(|kind| kind.plural()).collect();
    Err(usage(format!(
        "unknown kind {text:?} (known: {})",
        known.join(", ")
    )))
}

/// How gatewayctl names one resource: `route/users-api`.
pub(crate) fn label(kind: ResourceKind, name: &str) -> String {
    format!("{}/{name}", kind.as_str().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{USAGE, exit_code};

    #[test]
    fn parses_singular_plural_and_any_case() {
        for text in ["routes", "route", "Route", "ROUTES"] {
            assert_eq!(parse_kind(text).unwrap(), ResourceKind::Route, "{text}");
        }
        for text in ["upstreams", "upstream", "Upstream"] {
            assert_eq!(parse_kind(text).unwrap(), ResourceKind::Upstream, "{text}");
        }
        for text in ["policies", "policy", "Policy"] {
            assert_eq!(parse_kind(text).unwrap(), ResourceKind::Policy, "{text}");
        }
        for text in ["certificates", "certificate", "Certificate"] {
            assert_eq!(
                parse_kind(text).unwrap(),
                ResourceKind::Certificate,
                "{text}"
            );
        }
        for text in ["protosets", "protoset", "ProtoSet"] {
            assert_eq!(parse_kind(text).unwrap(), ResourceKind::ProtoSet, "{text}");
        }
    }

    #[test]
    fn consumers_are_a_kind() {
        for text in ["consumers", "Consumer", "CONSUMERS"] {
            assert_eq!(parse_kind(text).unwrap(), ResourceKind::Consumer, "{text}");
        }
    }

    #[test]
    fn unknown_kinds_are_usage_errors() {
        let err = parse_kind("widgets").unwrap_err();
        assert_eq!(exit_code(&err), USAGE);
        assert_eq!(
            err.to_string(),
            r#"unknown kind "widgets" (known: consumers, certificates, protosets, upstreams, policies, routes)"#
        );
    }

    #[test]
    fn labels_are_lower_case_singular() {
        assert_eq!(label(ResourceKind::Route, "users-api"), "route/users-api");
        assert_eq!(label(ResourceKind::Upstream, "users"), "upstream/users");
    }
}

//! The KIND argument of `get` and `delete`.

use gateway_proto::ResourceKind;

use crate::error::usage;

/// Kinds the gateway's contract names that this server's API does not serve yet, as
/// (singular, plural).
const FUTURE_KINDS: [(&str, &str); 1] = [("consumer", "consumers")];

/// Parses a kind: `routes`, `Route`, `upstream`, … (any case). A kind of the contract that the
/// server does not serve yet, or an unknown one, is a usage error.
pub(crate) fn parse_kind(text: &str) -> anyhow::Result<ResourceKind> {
    if let Some(kind) = ResourceKind::parse(text) {
        return Ok(kind);
    }
    if let Some((_, plural)) = FUTURE_KINDS.iter().find(|(singular, plural)| {
        text.eq_ignore_ascii_case(singular) || text.eq_ignore_ascii_case(plural)
    }) {
        return Err(usage(format!(
            "kind {plural:?} is not supported by this server yet"
        )));
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
    fn future_kinds_are_not_supported_yet() {
        for text in ["consumers", "Consumer", "CONSUMERS"] {
            let err = parse_kind(text).unwrap_err();
            assert_eq!(exit_code(&err), USAGE);
            assert!(
                err.to_string()
                    .contains("is not supported by this server yet")
            );
        }
        assert_eq!(
            parse_kind("consumer").unwrap_err().to_string(),
            r#"kind "consumers" is not supported by this server yet"#
        );
    }

    #[test]
    fn unknown_kinds_are_usage_errors() {
        let err = parse_kind("widgets").unwrap_err();
        assert_eq!(exit_code(&err), USAGE);
        assert_eq!(
            err.to_string(),
            r#"unknown kind "widgets" (known: certificates, protosets, upstreams, policies, routes)"#
        );
    }

    #[test]
    fn labels_are_lower_case_singular() {
        assert_eq!(label(ResourceKind::Route, "users-api"), "route/users-api");
        assert_eq!(label(ResourceKind::Upstream, "users"), "upstream/users");
    }
}

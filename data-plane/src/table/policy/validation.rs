//! The `requestValidation` policy, compiled: block rules whose patterns refuse a request
//! (APISIX's uri-blocker, and more), typed query parameters, and a JSON Schema for bodies,
//! before anything reaches a backend. The head is checked with the other policies; a body is
//! checked once a front end has read it whole ([`RequestValidation::check_body`]).

use std::{borrow::Cow, sync::Arc};

use gateway_proto::v1::{self, block_rule::In, query_parameter::Type};
use http::HeaderName;
use regex::Regex;

use crate::table::{
    RequestHeaders,
    matchers::{decode, query_values},
};

/// The largest body read whole to be checked on a rule that sets no `maxBodyBytes`.
pub const MAX_CHECKED_BODY: u64 = 1 << 20;

#[derive(Debug)]
pub struct RequestValidation {
    block: Box<[Block]>,
    query: Box<[Parameter]>,
    /// Request bodies must be JSON valid against it.
    pub schema: Option<Arc<jsonschema::Validator>>,
}

#[derive(Debug)]
struct Parameter {
    name: Box<str>,
    kind: Type,
    required: bool,
}

#[derive(Debug)]
struct Block {
    target: Target,
    pattern: Regex,
}

#[derive(Debug)]
enum Target {
    Path,
    Query(Option<Box<str>>),
    Header(HeaderName),
}

/// What a block rule refused, as the client is told it.
#[derive(Debug)]
pub struct Refused(pub Cow<'static, str>);

impl RequestValidation {
    pub(crate) fn compile(policy: &v1::RequestValidationPolicy) -> Self {
        Self {
            block: policy
                .block
                .iter()
                .filter_map(|rule| {
                    let target = match rule.r#in() {
                        In::Path => Target::Path,
                        In::Query => Target::Query(
                            (!rule.name.is_empty()).then(|| rule.name.as_str().into()),
                        ),
                        In::Header => {
                            Target::Header(HeaderName::from_bytes(rule.name.as_bytes()).ok()?)
                        }
                    };
                    // Validation refused patterns that do not compile.
                    let pattern = gateway_proto::validate::block_pattern(&rule.pattern).ok()?;
                    Some(Block { target, pattern })
                })
                .collect(),
            query: policy
                .query
                .iter()
                .map(|p| Parameter {
                    name: p.name.as_str().into(),
                    kind: p.r#type(),
                    required: p.required,
                })
                .collect(),
            // Validation compiled it the same way.
            schema: (!policy.json_schema.is_empty())
                .then(|| gateway_proto::json_schema::compile(&policy.json_schema).ok())
                .flatten()
                .map(Arc::new),
        }
    }

    /// Whether a body must be read whole and checked.
    pub fn checks_body(&self) -> bool {
        self.schema.is_some()
    }

    /// Checks a whole request body against the schema.
    pub fn check_body(&self, body: &[u8]) -> Result<(), Refused> {
        let Some(schema) = &self.schema else {
            return Ok(());
        };
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| Refused(Cow::Borrowed("body (not JSON)")))?;
        match schema.validate(&value) {
            Ok(()) => Ok(()),
            // The message names the schema's words, never the value sent.
            Err(error) => {
                let at = error.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                Err(Refused(Cow::Owned(format!(
                    "body at {at} ({})",
                    error.masked()
                ))))
            }
        }
    }

    /// The first rule that refuses the request: `path` as sent and as normalised.
    pub fn check(
        &self,
        (sent, normalised): (&str, &str),
        query: Option<&str>,
        headers: &dyn RequestHeaders,
    ) -> Result<(), Refused> {
        for block in self.block.iter() {
            let refused = match &block.target {
                Target::Path => (block.pattern.is_match(sent)
                    || block.pattern.is_match(normalised))
                .then_some(Cow::Borrowed("path")),
                Target::Query(None) => query
                    .filter(|q| block.pattern.is_match(q) || block.pattern.is_match(&decode(q)))
                    .map(|_| Cow::Borrowed("query")),
                Target::Query(Some(name)) => query
                    .is_some_and(|q| query_values(q, name).any(|v| block.pattern.is_match(&v)))
                    .then(|| Cow::Owned(format!("query parameter {name:?}"))),
                Target::Header(name) => {
                    let mut matched = false;
                    headers.any_value(name, &mut |value| {
                        matched = block.pattern.is_match(&String::from_utf8_lossy(value));
                        matched
                    });
                    matched.then(|| Cow::Owned(format!("header {:?}", name.as_str())))
                }
            };
            if let Some(field) = refused {
                return Err(Refused(field));
            }
        }
        for parameter in self.query.iter() {
            let mut found = false;
            for value in query
                .into_iter()
                .flat_map(|q| query_values(q, &parameter.name))
            {
                found = true;
                if !parameter.kind.admits(&value) {
                    return Err(Refused(Cow::Owned(format!(
                        "query parameter {:?} (not {})",
                        &*parameter.name,
                        parameter.kind.as_str_name().to_ascii_lowercase()
                    ))));
                }
            }
            if parameter.required && !found {
                return Err(Refused(Cow::Owned(format!(
                    "query parameter {:?} (missing)",
                    &*parameter.name
                ))));
            }
        }
        Ok(())
    }
}

trait Admits {
    fn admits(&self, value: &str) -> bool;
}

impl Admits for Type {
    fn admits(&self, value: &str) -> bool {
        match self {
            Type::String => true,
            Type::Integer => value.parse::<i64>().is_ok(),
            Type::Number => value.parse::<f64>().is_ok_and(f64::is_finite),
            Type::Boolean => matches!(value, "true" | "false"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: &[(In, &str, &str)]) -> RequestValidation {
        RequestValidation::compile(&v1::RequestValidationPolicy {
            block: rules
                .iter()
                .map(|(r#in, name, pattern)| v1::BlockRule {
                    r#in: *r#in as i32,
                    name: (*name).into(),
                    pattern: (*pattern).into(),
                })
                .collect(),
            ..Default::default()
        })
    }

    #[test]
    fn blocks_paths_queries_and_headers() {
        let p = policy(&[
            (In::Path, "", r"\.php$"),
            (In::Query, "", "(?i)union.+select"),
            (In::Query, "id", "[^0-9]"),
            (In::Header, "user-agent", "sqlmap"),
        ]);
        let headers = http::HeaderMap::new();
        let check = |path: &str, query: Option<&str>| p.check((path, path), query, &headers);
        assert!(check("/a", Some("id=7&x=1")).is_ok());
        assert_eq!(check("/x.php", None).unwrap_err().0, "path");
        assert_eq!(
            check("/a", Some("q=1%20UNION%20select")).unwrap_err().0,
            "query"
        );
        assert_eq!(
            check("/a", Some("id=7%27")).unwrap_err().0,
            "query parameter \"id\""
        );
        let mut agent = http::HeaderMap::new();
        agent.insert("user-agent", "sqlmap/1.0".parse().unwrap());
        assert_eq!(
            p.check(("/a", "/a"), None, &agent).unwrap_err().0,
            "header \"user-agent\""
        );
    }

    #[test]
    fn typed_query_parameters_and_bodies_are_checked() {
        let p = RequestValidation::compile(&v1::RequestValidationPolicy {
            query: vec![
                v1::QueryParameter {
                    name: "page".into(),
                    r#type: Type::Integer as i32,
                    required: true,
                },
                v1::QueryParameter {
                    name: "ratio".into(),
                    r#type: Type::Number as i32,
                    required: false,
                },
            ],
            json_schema: r#"{"type":"object","required":["name"],"properties":{"name":{"type":"string"},"age":{"type":"integer"}},"additionalProperties":false}"#.into(),
            ..Default::default()
        });
        let headers = http::HeaderMap::new();
        let check = |query: Option<&str>| p.check(("/a", "/a"), query, &headers);
        assert!(check(Some("page=2&ratio=0.5")).is_ok());
        assert_eq!(
            check(Some("page=two")).unwrap_err().0,
            "query parameter \"page\" (not integer)"
        );
        assert_eq!(
            check(Some("page=1&ratio=inf")).unwrap_err().0,
            "query parameter \"ratio\" (not number)"
        );
        assert_eq!(
            check(None).unwrap_err().0,
            "query parameter \"page\" (missing)"
        );
        assert!(p.check_body(br#"{"name":"a","age":3}"#).is_ok());
        let refused = |body: &[u8]| p.check_body(body).unwrap_err().0.into_owned();
        assert_eq!(refused(b"{"), "body (not JSON)");
        assert!(
            refused(br#"{"name":"a","age":"x"}"#).starts_with("body at /age ("),
            "{}",
            refused(br#"{"name":"a","age":"x"}"#)
        );
        assert!(
            refused(br#"{"age":3}"#).contains("name"),
            "{}",
            refused(br#"{"age":3}"#)
        );
        assert!(
            refused(br#"{"name":"a","extra":1}"#).contains("extra"),
            "{}",
            refused(br#"{"name":"a","extra":1}"#)
        );
        // The value sent is never echoed.
        assert!(!refused(br#"{"name":"a","age":"secret-value"}"#).contains("secret-value"));
    }
}

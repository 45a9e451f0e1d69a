//! The `requestValidation` policy, compiled: block rules whose patterns refuse a request
//! (APISIX's uri-blocker, and more) before anything reaches a backend.

use std::borrow::Cow;

use gateway_proto::v1::{self, block_rule::In};
use http::HeaderName;
use regex::Regex;

use crate::table::{
    RequestHeaders,
    matchers::{decode, query_values},
};

#[derive(Debug)]
pub struct RequestValidation {
    block: Box<[Block]>,
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
        Ok(())
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
}

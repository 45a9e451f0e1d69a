//! Who a request is: Consumers (by API key hash and by name), where credentials are read from,
//! the `apiKey` policy, and `authorization` rules over the identity found.

use std::{collections::HashMap, sync::Arc};

use gateway_proto::{api_key, v1};
use http::{HeaderName, HeaderValue, header};
use serde_json::{Map, Value};

use crate::table::RequestHeaders;

/// A Consumer, with the header values that announce it upstream.
#[derive(Debug)]
pub struct Consumer {
    pub name: Box<str>,
    pub groups: Box<[Box<str>]>,
    /// `x-consumer`.
    pub name_value: Option<HeaderValue>,
    /// `x-consumer-groups`: the groups joined with commas.
    pub groups_value: Option<HeaderValue>,
}

/// Every Consumer of a table, by the SHA-256 of each of its keys and by name: a lookup costs
/// the same however many there are.
#[derive(Debug, Default)]
pub struct Consumers {
    by_key: HashMap<[u8; 32], Arc<Consumer>>,
    by_name: HashMap<Box<str>, Arc<Consumer>>,
}

impl Consumers {
    pub(crate) fn compile(resources: &[v1::Resource]) -> Self {
        let mut consumers = Self::default();
        for resource in resources {
            let Some(v1::resource::Spec::Consumer(spec)) = &resource.spec else {
                continue;
            };
            let groups = spec.groups.join(",");
            let consumer = Arc::new(Consumer {
                name: resource.name.as_str().into(),
                groups: spec.groups.iter().map(|g| g.as_str().into()).collect(),
                name_value: HeaderValue::from_str(&resource.name).ok(),
                groups_value: (!groups.is_empty())
                    .then(|| HeaderValue::from_str(&groups).ok())
                    .flatten(),
            });
            for key in &spec.api_keys {
                // A standalone file may hold the key itself; the control plane stores hashes.
                let hash = if key.key.is_empty() {
                    key.key_hash.clone()
                } else {
                    api_key::hash(key.key.as_bytes())
                };
                if let Some(digest) = parse_hash(&hash) {
                    consumers.by_key.insert(digest, consumer.clone());
                }
            }
            consumers.by_name.insert(consumer.name.clone(), consumer);
        }
        consumers
    }

    /// The consumer whose key is `key`.
    pub fn by_key(&self, key: &[u8]) -> Option<&Arc<Consumer>> {
        self.by_key.get(&api_key::digest(key))
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Consumer>> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |b: u8| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// Where a credential is read from.
/// The value of cookie `name` in the request's `Cookie` headers, if it has one.
pub fn cookie(headers: &dyn RequestHeaders, name: &str) -> Option<Vec<u8>> {
    let mut found = None;
    headers.any_value(&header::COOKIE, &mut |value| {
        found = value
            .split(|&b| b == b';')
            .map(<[u8]>::trim_ascii)
            .find_map(|pair| pair.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
            .filter(|v| !v.is_empty())
            .map(<[u8]>::to_vec);
        found.is_some()
    });
    found
}

#[derive(Debug)]
pub enum Source {
    Header { name: HeaderName, prefix: Box<str> },
    Cookie(Box<str>),
    Query(Box<str>),
}

impl Source {
    pub(crate) fn compile(source: &v1::CredentialSource) -> Option<Self> {
        if !source.header.is_empty() {
            return Some(Self::Header {
                name: HeaderName::from_bytes(source.header.as_bytes()).ok()?,
                prefix: source.prefix.as_str().into(),
            });
        }
        if !source.cookie.is_empty() {
            return Some(Self::Cookie(source.cookie.as_str().into()));
        }
        (!source.query.is_empty()).then(|| Self::Query(source.query.as_str().into()))
    }

    /// `Authorization: Bearer`, where a provider names no source.
    pub(crate) fn bearer() -> Self {
        Self::Header {
            name: header::AUTHORIZATION,
            prefix: "Bearer ".into(),
        }
    }

    /// The credential in the request, if this source holds one.
    pub fn find<'r>(
        &self,
        headers: &'r dyn RequestHeaders,
        query: Option<&'r str>,
    ) -> Option<std::borrow::Cow<'r, [u8]>> {
        match self {
            Self::Header { name, prefix } => {
                let value = headers.first(name)?;
                let rest = if prefix.is_empty() {
                    value
                } else {
                    // Schemes are case-insensitive ("bearer x" is a bearer token too).
                    let head = value.get(..prefix.len())?;
                    if !head.eq_ignore_ascii_case(prefix.as_bytes()) {
                        return None;
                    }
                    &value[prefix.len()..]
                };
                let rest = rest.trim_ascii();
                (!rest.is_empty()).then_some(std::borrow::Cow::Borrowed(rest))
            }
            Self::Cookie(name) => cookie(headers, name).map(std::borrow::Cow::Owned),
            Self::Query(name) => query_value(query?, name),
        }
    }

    /// The header to drop before forwarding, when the credential travels in one.
    pub(crate) fn header(&self) -> Option<&HeaderName> {
        match self {
            Self::Header { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The query parameter to drop before forwarding, when the credential travels in one.
    pub(crate) fn query(&self) -> Option<&str> {
        match self {
            Self::Query(name) => Some(name),
            _ => None,
        }
    }
}

/// The first non-empty value of query parameter `name`, decoded.
fn query_value<'q>(query: &'q str, name: &str) -> Option<std::borrow::Cow<'q, [u8]>> {
    use std::borrow::Cow;
    crate::table::matchers::query_values(query, name)
        .find(|value| !value.is_empty())
        .map(|value| match value {
            Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
            Cow::Owned(text) => Cow::Owned(text.into_bytes()),
        })
}

/// An `apiKey` policy: where the key is read from.
#[derive(Debug)]
pub struct ApiKey {
    pub sources: Box<[Source]>,
}

impl ApiKey {
    pub(crate) fn compile(policy: &v1::ApiKeyPolicy) -> Self {
        Self {
            sources: policy.from.iter().filter_map(Source::compile).collect(),
        }
    }

    /// The key the request carries, if any.
    pub fn find<'r>(
        &self,
        headers: &'r dyn RequestHeaders,
        query: Option<&'r str>,
    ) -> Option<std::borrow::Cow<'r, [u8]>> {
        self.sources.iter().find_map(|s| s.find(headers, query))
    }
}

/// What identity policies found out about a request.
#[derive(Debug, Default)]
pub struct Identity {
    pub consumer: Option<Arc<Consumer>>,
    /// The verified token's claims.
    pub claims: Option<Arc<Map<String, Value>>>,
}

/// An `authorization` policy: a request passes when any rule holds.
#[derive(Debug)]
pub struct Authorization {
    rules: Box<[Rule]>,
}

#[derive(Debug)]
struct Rule {
    groups: Box<[Box<str>]>,
    consumers: Box<[Box<str>]>,
    claims: Box<[ClaimRule]>,
}

#[derive(Debug)]
struct ClaimRule {
    claim: Box<str>,
    values: Box<[Box<str>]>,
    all: bool,
}

impl Authorization {
    pub(crate) fn compile(policy: &v1::AuthorizationPolicy) -> Self {
        let strings = |items: &[String]| items.iter().map(|s| s.as_str().into()).collect();
        Self {
            rules: policy
                .rules
                .iter()
                .map(|rule| Rule {
                    groups: strings(&rule.allow_groups),
                    consumers: strings(&rule.allow_consumers),
                    claims: rule
                        .require_claims
                        .iter()
                        .map(|c| ClaimRule {
                            claim: c.claim.as_str().into(),
                            values: strings(&c.values),
                            all: c.r#match() == v1::claim_requirement::Match::All,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    pub fn allows(&self, identity: &Identity) -> bool {
        self.rules.iter().any(|rule| rule.holds(identity))
    }
}

impl Rule {
    fn holds(&self, identity: &Identity) -> bool {
        let consumer = identity.consumer.as_deref();
        (self.groups.is_empty()
            || consumer.is_some_and(|c| c.groups.iter().any(|g| self.groups.contains(g))))
            && (self.consumers.is_empty()
                || consumer.is_some_and(|c| self.consumers.contains(&c.name)))
            && self.claims.iter().all(|rule| {
                identity
                    .claims
                    .as_ref()
                    .and_then(|claims| claims.get(&*rule.claim))
                    .is_some_and(|value| rule.holds(value))
            })
    }
}

impl ClaimRule {
    fn holds(&self, value: &Value) -> bool {
        let has = |wanted: &str| match value {
            // A string claim is a space-separated list, as `scope` is.
            Value::String(s) => s.split(' ').any(|item| item == wanted),
            Value::Array(items) => items.iter().any(|item| item.as_str() == Some(wanted)),
            Value::Bool(b) => wanted == if *b { "true" } else { "false" },
            Value::Number(n) => n.to_string() == wanted,
            _ => false,
        };
        if self.all {
            self.values.iter().all(|v| has(v))
        } else {
            self.values.iter().any(|v| has(v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_headers_cookies_and_queries() {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        headers.insert(header::COOKIE, "a=1; session=tok; b=2".parse().unwrap());
        let bearer = Source::bearer();
        assert_eq!(bearer.find(&headers, None).as_deref(), Some(&b"abc"[..]));
        let cookie = Source::Cookie("session".into());
        assert_eq!(cookie.find(&headers, None).as_deref(), Some(&b"tok"[..]));
        let query = Source::Query("api_key".into());
        assert_eq!(
            query.find(&headers, Some("x=1&api_key=k%2B1")).as_deref(),
            Some(&b"k+1"[..])
        );
        assert_eq!(query.find(&headers, Some("api_keyx=1")), None);
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer.find(&headers, None), None);
    }

    #[test]
    fn claim_rules() {
        let rule = ClaimRule {
            claim: "scope".into(),
            values: ["a".into(), "b".into()].into(),
            all: true,
        };
        assert!(rule.holds(&Value::String("b c a".into())));
        assert!(!rule.holds(&Value::String("a".into())));
        assert!(!rule.holds(&Value::String("ab".into())));
        let any = ClaimRule { all: false, ..rule };
        assert!(any.holds(&serde_json::json!(["x", "b"])));
    }
}

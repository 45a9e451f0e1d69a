//! Header and query-parameter conditions of a route match, compiled once and checked without
//! allocating (except a regular expression on a percent-encoded query value).

use std::borrow::Cow;

use gateway_proto::v1::{self, header_match, query_param_match};
use http::HeaderName;
use regex::Regex;

use super::hash::FxHashSet;
use super::router::RequestHeaders;
use crate::side::SideTables;

/// Compiles regular expressions through the side table's cache (a swap that changes one
/// route does not recompile every other route's expressions), noting which ones a table uses.
pub(crate) struct Regexes<'a> {
    side: &'a SideTables,
    pub(crate) used: FxHashSet<Box<str>>,
}

impl<'a> Regexes<'a> {
    pub(crate) fn new(side: &'a SideTables) -> Self {
        Self {
            side,
            used: FxHashSet::default(),
        }
    }

    /// The anchored expression for `pattern`.
    pub(crate) fn get(&mut self, pattern: &str) -> Result<Regex, String> {
        let regex = self.side.regex(pattern)?;
        if !self.used.contains(pattern) {
            self.used.insert(pattern.into());
        }
        Ok(regex)
    }
}

/// A value condition: exact bytes or an anchored regular expression.
#[derive(Debug)]
pub(crate) enum ValueMatch {
    Exact(Box<str>),
    Regex(Regex),
}

/// A request header must be present with a matching value (any of its values).
#[derive(Debug)]
pub(crate) struct HeaderMatcher {
    name: HeaderName,
    value: ValueMatch,
}

/// A query parameter must be present with a matching (percent-decoded) value.
#[derive(Debug)]
pub(crate) struct QueryMatcher {
    name: Box<str>,
    value: ValueMatch,
}

/// A condition that does not compile (validation should have caught it first).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadMatcher(pub(crate) String);

// === impl ValueMatch ===

impl ValueMatch {
    fn compile(regex: bool, value: &str, regexes: &mut Regexes<'_>) -> Result<Self, BadMatcher> {
        if regex {
            regexes
                .get(value)
                .map(ValueMatch::Regex)
                .map_err(BadMatcher)
        } else {
            Ok(ValueMatch::Exact(value.into()))
        }
    }
}

// === impl HeaderMatcher ===

impl HeaderMatcher {
    pub(crate) fn compile(
        m: &v1::HeaderMatch,
        regexes: &mut Regexes<'_>,
    ) -> Result<Self, BadMatcher> {
        let name = HeaderName::from_bytes(m.name.to_ascii_lowercase().as_bytes())
            .map_err(|e| BadMatcher(format!("header name {:?}: {e}", m.name)))?;
        let regex = m.r#type == header_match::Type::RegularExpression as i32;
        Ok(Self {
            name,
            value: ValueMatch::compile(regex, &m.value, regexes)?,
        })
    }

    #[inline]
    pub(crate) fn matches(&self, headers: &dyn RequestHeaders) -> bool {
        headers.any_value(&self.name, &mut |v| match &self.value {
            ValueMatch::Exact(want) => v == want.as_bytes(),
            ValueMatch::Regex(re) => std::str::from_utf8(v).is_ok_and(|s| re.is_match(s)),
        })
    }
}

// === impl QueryMatcher ===

impl QueryMatcher {
    pub(crate) fn compile(
        m: &v1::QueryParamMatch,
        regexes: &mut Regexes<'_>,
    ) -> Result<Self, BadMatcher> {
        let regex = m.r#type == query_param_match::Type::RegularExpression as i32;
        Ok(Self {
            name: m.name.as_str().into(),
            value: ValueMatch::compile(regex, &m.value, regexes)?,
        })
    }

    #[inline]
    pub(crate) fn matches(&self, query: Option<&str>) -> bool {
        let Some(query) = query else {
            return false;
        };
        query.split('&').any(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            decoded_eq(name, &self.name)
                && match &self.value {
                    ValueMatch::Exact(want) => decoded_eq(value, want),
                    ValueMatch::Regex(re) => re.is_match(&decode(value)),
                }
        })
    }
}

/// Whether the form-urlencoded `raw` decodes to `want`, without allocating.
fn decoded_eq(raw: &str, want: &str) -> bool {
    let mut want = want.bytes();
    let mut raw = raw.bytes();
    while let Some(b) = raw.next() {
        let decoded = match b {
            b'+' => b' ',
            b'%' => {
                let mut look = raw.clone();
                match (look.next().and_then(hex), look.next().and_then(hex)) {
                    (Some(h), Some(l)) => {
                        raw = look;
                        h << 4 | l
                    }
                    _ => b'%',
                }
            }
            b => b,
        };
        if want.next() != Some(decoded) {
            return false;
        }
    }
    want.next().is_none()
}

/// The form-urlencoded `raw`, decoded (borrowed when there is nothing to decode).
fn decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains(['%', '+']) {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let mut look = bytes.clone();
                match (look.next().and_then(hex), look.next().and_then(hex)) {
                    (Some(h), Some(l)) => {
                        bytes = look;
                        out.push(h << 4 | l);
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert!(decoded_eq("a%20b+c", "a b c"));
        assert!(decoded_eq("100%", "100%"));
        assert!(!decoded_eq("ab", "abc"));
        assert!(!decoded_eq("abc", "ab"));
        assert_eq!(decode("x%2Fy"), "x/y");
        assert_eq!(decode("plain"), "plain");
    }

    #[test]
    fn query_matching() {
        let side = SideTables::default();
        let m = QueryMatcher::compile(
            &v1::QueryParamMatch {
                r#type: 0,
                name: "v".into(),
                value: "2 x".into(),
            },
            &mut Regexes::new(&side),
        )
        .unwrap();
        assert!(m.matches(Some("a=1&v=2+x")));
        assert!(m.matches(Some("v=2%20x")));
        assert!(!m.matches(Some("v=2")));
        assert!(!m.matches(None));
    }
}

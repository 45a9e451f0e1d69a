//! Header and query-parameter conditions of a route match, compiled once and checked without
//! allocating (except a regular expression on a percent-encoded query value).

use std::borrow::Cow;

use gateway_proto::validate::CheckedValue;
use http::HeaderName;
use regex::Regex;

use super::{hash::FxHashSet, router::RequestHeaders};

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

// === impl ValueMatch ===

impl ValueMatch {
    /// The condition validation parsed; its pattern, if a regular expression, goes to `used`.
    fn from_checked(value: &CheckedValue, used: &mut FxHashSet<Box<str>>) -> Self {
        match value {
            CheckedValue::Exact(want) => Self::Exact(want.as_str().into()),
            CheckedValue::Regex { pattern, regex } => {
                used.insert(pattern.as_str().into());
                Self::Regex(regex.clone())
            }
        }
    }
}

// === impl HeaderMatcher ===

impl HeaderMatcher {
    pub(crate) fn new(
        (name, value): &(HeaderName, CheckedValue),
        used: &mut FxHashSet<Box<str>>,
    ) -> Self {
        Self {
            name: name.clone(),
            value: ValueMatch::from_checked(value, used),
        }
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
    pub(crate) fn new(
        (name, value): &(String, CheckedValue),
        used: &mut FxHashSet<Box<str>>,
    ) -> Self {
        Self {
            name: name.as_str().into(),
            value: ValueMatch::from_checked(value, used),
        }
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

/// The decoded values of query parameter `name` (form-urlencoded names and values).
pub(crate) fn query_values<'q, 'n>(
    query: &'q str,
    name: &'n str,
) -> impl Iterator<Item = Cow<'q, str>> + use<'q, 'n> {
    query.split('&').filter_map(move |pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        decoded_eq(key, name).then(|| decode(value))
    })
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
pub(crate) fn decode(raw: &str) -> Cow<'_, str> {
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
        let m = QueryMatcher::new(
            &("v".into(), CheckedValue::Exact("2 x".into())),
            &mut FxHashSet::default(),
        );
        assert!(m.matches(Some("a=1&v=2+x")));
        assert!(m.matches(Some("v=2%20x")));
        assert!(!m.matches(Some("v=2")));
        assert!(!m.matches(None));
    }
}

//! A rule's filters, compiled: header edits folded into one list of names to drop and one of
//! headers to append (so a writer applies them while copying a head, without a header map),
//! the URL rewrite and the redirect.

use std::borrow::Cow;

use gateway_proto::v1::{self, path_modifier, route_filter::Type};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// Header edits of one direction, in effect: incoming headers named in `drop` are not copied,
/// then `append` is written. `set` is a drop and an append; `remove` a drop; `add` an append.
#[derive(Debug, Default)]
pub struct HeaderEdits {
    drop: Box<[HeaderName]>,
    append: Box<[(HeaderName, HeaderValue)]>,
}

/// How the path sent upstream, or redirected to, is made.
#[derive(Debug)]
pub enum PathRewrite {
    Full(Box<str>),
    /// The matched prefix is replaced by this (without its trailing slash).
    Prefix(Box<str>),
}

/// A URLRewrite filter.
#[derive(Debug, Default)]
pub struct Rewrite {
    pub host: Option<HeaderValue>,
    pub path: Option<PathRewrite>,
}

/// A RequestRedirect filter.
#[derive(Debug)]
pub struct Redirect {
    pub scheme: Option<&'static str>,
    pub host: Option<Box<str>>,
    pub port: Option<u16>,
    pub path: Option<PathRewrite>,
    pub status: StatusCode,
}

/// The filters of one rule.
#[derive(Debug, Default)]
pub struct Filters {
    pub request: HeaderEdits,
    pub response: HeaderEdits,
    pub rewrite: Option<Rewrite>,
    pub redirect: Option<Redirect>,
}

// === impl Filters ===

impl Filters {
    /// Compiles validated filters. Names and values were checked by the validator against the
    /// same grammar `http` uses, so a conversion that fails is skipped rather than refused.
    pub(crate) fn compile(filters: &[v1::RouteFilter]) -> Self {
        let mut request = EditsBuilder::default();
        let mut response = EditsBuilder::default();
        let mut compiled = Self::default();
        for filter in filters {
            match Type::try_from(filter.r#type) {
                Ok(Type::RequestHeaderModifier) => {
                    if let Some(m) = &filter.request_header_modifier {
                        request.fold(m);
                    }
                }
                Ok(Type::ResponseHeaderModifier) => {
                    if let Some(m) = &filter.response_header_modifier {
                        response.fold(m);
                    }
                }
                Ok(Type::UrlRewrite) => {
                    if let Some(rewrite) = &filter.url_rewrite {
                        compiled.rewrite = Some(Rewrite {
                            host: (!rewrite.hostname.is_empty())
                                .then(|| HeaderValue::from_str(&rewrite.hostname).ok())
                                .flatten(),
                            path: rewrite.path.as_ref().and_then(PathRewrite::compile),
                        });
                    }
                }
                Ok(Type::RequestRedirect) => {
                    if let Some(r) = &filter.request_redirect {
                        compiled.redirect = Some(Redirect {
                            scheme: match r.scheme.as_str() {
                                "http" => Some("http"),
                                "https" => Some("https"),
                                _ => None,
                            },
                            host: (!r.hostname.is_empty()).then(|| r.hostname.as_str().into()),
                            port: r.port.and_then(|p| u16::try_from(p).ok()),
                            path: r.path.as_ref().and_then(PathRewrite::compile),
                            status: r
                                .status_code
                                .and_then(|s| u16::try_from(s).ok())
                                .and_then(|s| StatusCode::from_u16(s).ok())
                                .unwrap_or(StatusCode::FOUND),
                        });
                    }
                }
                // Refused by validation (not supported yet), or nothing to do.
                _ => {}
            }
        }
        compiled.request = request.build();
        compiled.response = response.build();
        compiled
    }

    pub fn is_empty(&self) -> bool {
        self.request.is_empty()
            && self.response.is_empty()
            && self.rewrite.is_none()
            && self.redirect.is_none()
    }
}

// === impl HeaderEdits ===

impl HeaderEdits {
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.drop.is_empty() && self.append.is_empty()
    }

    /// Whether an incoming header of this name is left out.
    #[inline]
    pub fn drops(&self, name: &str) -> bool {
        self.drop
            .iter()
            .any(|d| d.as_str().eq_ignore_ascii_case(name))
    }

    /// The headers written after the copied ones.
    pub fn appended(&self) -> &[(HeaderName, HeaderValue)] {
        &self.append
    }

    /// Applies the edits to a header map.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.drop {
            headers.remove(name);
        }
        for (name, value) in &self.append {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// Folds modifiers in order into one drop list and one append list.
#[derive(Default)]
struct EditsBuilder {
    drop: Vec<HeaderName>,
    append: Vec<(HeaderName, HeaderValue)>,
}

impl EditsBuilder {
    fn fold(&mut self, m: &v1::HeaderModifier) {
        let parse = |h: &v1::HttpHeader| {
            Some((
                HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                HeaderValue::from_str(&h.value).ok()?,
            ))
        };
        for name in m
            .remove
            .iter()
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        {
            self.replace(&name);
        }
        for (name, value) in m.set.iter().filter_map(parse) {
            self.replace(&name);
            self.append.push((name, value));
        }
        self.append.extend(m.add.iter().filter_map(parse));
    }

    /// Later edits of `name` start from nothing: earlier appends go, incoming headers go.
    fn replace(&mut self, name: &HeaderName) {
        self.append.retain(|(n, _)| n != name);
        if !self.drop.contains(name) {
            self.drop.push(name.clone());
        }
    }

    fn build(self) -> HeaderEdits {
        HeaderEdits {
            drop: self.drop.into(),
            append: self.append.into(),
        }
    }
}

// === impl PathRewrite ===

impl PathRewrite {
    fn compile(path: &v1::PathModifier) -> Option<Self> {
        match path_modifier::Type::try_from(path.r#type).ok()? {
            path_modifier::Type::ReplaceFullPath => {
                Some(Self::Full(path.replace_full_path.as_str().into()))
            }
            path_modifier::Type::ReplacePrefixMatch => Some(Self::Prefix(
                path.replace_prefix_match.trim_end_matches('/').into(),
            )),
            path_modifier::Type::Unspecified => None,
        }
    }

    /// The new path for `path`, which matched the PathPrefix `matched` (no trailing slash, "/"
    /// for the root), as the Gateway API defines ReplacePrefixMatch.
    pub fn apply<'p>(&self, path: &'p str, matched: &str) -> Cow<'p, str> {
        match self {
            Self::Full(full) => Cow::Owned(full.to_string()),
            Self::Prefix(replacement) => {
                // What follows the prefix: empty, or from a '/' on.
                let rest = if matched == "/" {
                    path
                } else {
                    path.get(matched.len()..).unwrap_or("")
                };
                let mut out = String::with_capacity(replacement.len() + rest.len() + 1);
                out.push_str(replacement);
                out.push_str(rest);
                if out.is_empty() {
                    out.push('/');
                }
                Cow::Owned(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_replacement_follows_the_gateway_api_table() {
        let p = |r: &str| PathRewrite::Prefix(r.trim_end_matches('/').into());
        assert_eq!(p("/xyz").apply("/foo/bar", "/foo"), "/xyz/bar");
        assert_eq!(p("/xyz").apply("/foo", "/foo"), "/xyz");
        assert_eq!(p("/xyz/").apply("/foo/bar", "/foo"), "/xyz/bar");
        assert_eq!(p("/").apply("/foo", "/foo"), "/");
        assert_eq!(p("/").apply("/foo/bar", "/foo"), "/bar");
        assert_eq!(p("/").apply("/foo/", "/foo"), "/");
        assert_eq!(p("/v2").apply("/a/b", "/"), "/v2/a/b");
        assert_eq!(p("/v2").apply("/", "/"), "/v2/");
        assert_eq!(p("/xyz").apply("/foo/", "/foo"), "/xyz/");
    }

    #[test]
    fn modifiers_fold_in_order() {
        let h = |name: &str, value: &str| v1::HttpHeader {
            name: name.into(),
            value: value.into(),
        };
        let mut b = EditsBuilder::default();
        b.fold(&v1::HeaderModifier {
            set: vec![h("x-env", "prod")],
            add: vec![h("x-a", "1")],
            remove: vec!["x-debug".into()],
        });
        b.fold(&v1::HeaderModifier {
            set: vec![h("x-a", "2")],
            ..Default::default()
        });
        let edits = b.build();
        assert!(edits.drops("X-Env") && edits.drops("x-debug") && edits.drops("x-a"));
        assert!(!edits.drops("x-other"));
        let appended: Vec<_> = edits
            .appended()
            .iter()
            .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
            .collect();
        assert_eq!(appended, ["x-env=prod", "x-a=2"]);
    }
}

//! The router: host buckets, then path indexes within a bucket, then the conditions of each
//! candidate in precedence order (see `docs/architecture.md`, "Route precedence").
//!
//! Lookups borrow the request's host, path and query; nothing is allocated while matching.

use std::{cmp::Reverse, collections::HashMap, sync::Arc};

use gateway_proto::template::PathTemplate;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use regex::Regex;

use super::{
    Rule,
    hash::FxHashMap,
    matchers::{HeaderMatcher, QueryMatcher},
};

/// The parts of a request that routing looks at.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// Lower case, without port; `None` when the request names no host.
    pub host: Option<&'a str>,
    /// The path, without query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a Method,
    pub headers: &'a dyn RequestHeaders,
}

impl std::fmt::Debug for RequestView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestView")
            .field("host", &self.host)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("method", self.method)
            .finish_non_exhaustive()
    }
}

/// A request's headers as routing and policies read them, whichever HTTP stack parsed them.
pub trait RequestHeaders {
    /// Whether any value of the header `name` satisfies `accept`.
    fn any_value(&self, name: &HeaderName, accept: &mut dyn FnMut(&[u8]) -> bool) -> bool;

    /// The first value of the header `name`.
    fn first(&self, name: &HeaderName) -> Option<&[u8]>;

    /// The size of every header name and value together (what `maxHeaderBytes` limits, the
    /// same on every protocol).
    fn total_bytes(&self) -> usize;
}

impl RequestHeaders for HeaderMap {
    fn any_value(&self, name: &HeaderName, accept: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.get_all(name).iter().any(|v| accept(v.as_bytes()))
    }

    fn first(&self, name: &HeaderName) -> Option<&[u8]> {
        self.get(name).map(HeaderValue::as_bytes)
    }

    fn total_bytes(&self) -> usize {
        self.iter().map(|(n, v)| n.as_str().len() + v.len()).sum()
    }
}

impl RequestHeaders for &[httparse::Header<'_>] {
    fn any_value(&self, name: &HeaderName, accept: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name.as_str()))
            .any(|h| accept(h.value))
    }

    fn first(&self, name: &HeaderName) -> Option<&[u8]> {
        self.iter()
            .find(|h| h.name.eq_ignore_ascii_case(name.as_str()))
            .map(|h| h.value)
    }

    fn total_bytes(&self) -> usize {
        self.iter().map(|h| h.name.len() + h.value.len()).sum()
    }
}

/// Method, header and query conditions of one route match.
#[derive(Debug)]
pub(crate) struct Conditions {
    pub(crate) method: Option<Method>,
    pub(crate) headers: Box<[HeaderMatcher]>,
    pub(crate) query: Box<[QueryMatcher]>,
}

/// The path part of one route match, compiled.
#[derive(Clone, Debug)]
pub(crate) enum CompiledPath {
    Exact(Box<str>),
    /// Normalised: no trailing slash, except the root "/".
    Prefix(Box<str>),
    Template(Arc<PathTemplate>),
    Regex(Regex),
}

/// The host bucket a match lives in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Host {
    Exact(Arc<str>),
    /// The suffix after `*.`.
    Wildcard(Arc<str>),
    Any,
}

/// The index of a bucket a match lives in: what a route's removal must visit.
#[derive(Clone, Debug)]
pub(crate) enum Place {
    Exact(Arc<str>),
    Prefix(Arc<str>),
    Pattern,
}

/// Whose match [`RouterBuilder::add`] adds: the rule, its route, and the match's position in
/// the route (which breaks ties after the route's name).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatchOf<'a> {
    pub(crate) rule: &'a Arc<Rule>,
    pub(crate) route: &'a Arc<str>,
    pub(crate) seq: u32,
}

/// Precedence among candidates of the same path: method, then header count, then query count,
/// then route name, then the match's position in its route.
type Rank = (Reverse<bool>, Reverse<usize>, Reverse<usize>, Arc<str>, u32);

#[derive(Clone, Debug)]
struct Candidate {
    rule: Arc<Rule>,
    key: Rank,
    conditions: Arc<Conditions>,
}

#[derive(Clone, Debug)]
struct Pattern {
    path: CompiledPath,
    /// The length of the literal text (a template's text before its first placeholder; 0 for
    /// a regular expression).
    rank: usize,
    template: bool,
    candidate: Candidate,
}

/// The routes of one host bucket. Shared between tables: an update copies only the buckets it
/// touches, and their entries are shared too.
#[derive(Clone, Debug, Default)]
struct Bucket {
    exact: FxHashMap<Arc<str>, Arc<[Candidate]>>,
    prefix: FxHashMap<Arc<str>, Arc<[Candidate]>>,
    max_prefix_len: usize,
    /// Templates and regular expressions, most specific first.
    patterns: Arc<[Arc<Pattern>]>,
}

/// The compiled router.
#[derive(Clone, Debug, Default)]
pub(crate) struct Router {
    exact_hosts: FxHashMap<Arc<str>, Arc<Bucket>>,
    wildcard_hosts: FxHashMap<Arc<str>, Arc<Bucket>>,
    any_host: Option<Arc<Bucket>>,
}

/// Collects route matches, then builds the [`Router`] (or the buckets an update touches).
#[derive(Default)]
pub(crate) struct RouterBuilder {
    buckets: HashMap<Host, BucketBuilder>,
}

#[derive(Default)]
struct BucketBuilder {
    exact: HashMap<Arc<str>, Vec<Candidate>>,
    prefix: HashMap<Arc<str>, Vec<Candidate>>,
    patterns: Vec<Arc<Pattern>>,
}

// === impl Conditions ===

impl Conditions {
    #[inline]
    fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(method) = &self.method
            && method != req.method
        {
            return false;
        }
        self.headers.iter().all(|h| h.matches(req.headers))
            && self.query.iter().all(|q| q.matches(req.query))
    }
}

// === impl Router ===

impl Router {
    /// The best match for the request.
    #[inline]
    pub(crate) fn find(&self, req: &RequestView<'_>) -> Option<&Arc<Rule>> {
        if let Some(host) = req.host {
            if !self.exact_hosts.is_empty()
                && let Some(rule) = self.exact_hosts.get(host).and_then(|b| b.find(req))
            {
                return Some(rule);
            }
            if !self.wildcard_hosts.is_empty() {
                // Suffixes after each dot, longest first: "a.b.example.com" tries
                // "b.example.com", then "example.com", then "com".
                for (dot, _) in host.match_indices('.') {
                    let suffix = &host[dot + 1..];
                    if let Some(rule) = self.wildcard_hosts.get(suffix).and_then(|b| b.find(req)) {
                        return Some(rule);
                    }
                }
            }
        }
        self.any_host.as_ref()?.find(req)
    }

    /// Whether any route names a hostname (if not, the host need not be looked at).
    pub(crate) fn uses_hosts(&self) -> bool {
        !self.exact_hosts.is_empty() || !self.wildcard_hosts.is_empty()
    }
}

// === impl Bucket ===

impl Bucket {
    #[inline]
    fn find(&self, req: &RequestView<'_>) -> Option<&Arc<Rule>> {
        let path = req.path;
        if !self.exact.is_empty()
            && let Some(rule) = self.exact.get(path).and_then(|c| first_match(c, req))
        {
            return Some(rule);
        }
        let mut patterns = self.patterns.iter();
        if !self.prefix.is_empty() && path.starts_with('/') {
            let bytes = path.as_bytes();
            let mut len = path.len().min(self.max_prefix_len);
            while len > 1 {
                let boundary = if len == bytes.len() {
                    bytes[len - 1] != b'/'
                } else {
                    bytes[len] == b'/'
                };
                if boundary {
                    if let Some(rule) = patterns_before(&mut patterns, len, req) {
                        return Some(rule);
                    }
                    if let Some(rule) = self
                        .prefix
                        .get(&path[..len])
                        .and_then(|c| first_match(c, req))
                    {
                        return Some(rule);
                    }
                }
                len -= 1;
            }
            if let Some(rule) = patterns_before(&mut patterns, 1, req) {
                return Some(rule);
            }
            if let Some(rule) = self.prefix.get("/").and_then(|c| first_match(c, req)) {
                return Some(rule);
            }
        }
        patterns.find_map(|p| p.try_match(req))
    }
}

/// Tries the patterns that outrank a prefix of length `len`: a longer literal, or a template
/// of the same length.
#[inline]
fn patterns_before<'p>(
    patterns: &mut std::slice::Iter<'p, Arc<Pattern>>,
    len: usize,
    req: &RequestView<'_>,
) -> Option<&'p Arc<Rule>> {
    while let Some(p) = patterns.as_slice().first() {
        if p.rank < len || (p.rank == len && !p.template) {
            return None;
        }
        patterns.next();
        if let Some(rule) = p.try_match(req) {
            return Some(rule);
        }
    }
    None
}

#[inline]
fn first_match<'c>(candidates: &'c [Candidate], req: &RequestView<'_>) -> Option<&'c Arc<Rule>> {
    candidates
        .iter()
        .find(|c| c.conditions.matches(req))
        .map(|c| &c.rule)
}

// === impl Pattern ===

impl Pattern {
    #[inline]
    fn try_match(&self, req: &RequestView<'_>) -> Option<&Arc<Rule>> {
        let path_matches = match &self.path {
            CompiledPath::Template(t) => t.matches(req.path),
            CompiledPath::Regex(re) => re.is_match(req.path),
            CompiledPath::Exact(_) | CompiledPath::Prefix(_) => false,
        };
        (path_matches && self.candidate.conditions.matches(req)).then_some(&self.candidate.rule)
    }
}

mod update;

pub(crate) use self::update::address;

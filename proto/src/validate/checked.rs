//! What validation hands the data plane's compiler: each route's matches with every field
//! already parsed (methods, header names, templates, compiled regular expressions), so that
//! compiling a configuration that passed validation has nothing left that can fail.

use http::{HeaderName, Method};
use regex::Regex;

use crate::{template::PathTemplate, v1};

/// A configuration that passed validation, its routes sorted by name.
#[derive(Debug)]
pub struct Checked<'a> {
    pub routes: Vec<CheckedRoute<'a>>,
}

/// One route and, for each of its rules, the rule and its parsed matches (a rule without
/// matches has the default one: every path).
#[derive(Debug)]
pub struct CheckedRoute<'a> {
    pub name: &'a str,
    pub spec: &'a v1::RouteSpec,
    pub rules: Vec<(&'a v1::RouteRule, Vec<CheckedMatch>)>,
}

/// One route match, parsed.
#[derive(Debug)]
pub struct CheckedMatch {
    pub path: CheckedPath,
    pub method: Option<Method>,
    pub headers: Vec<(HeaderName, CheckedValue)>,
    pub query: Vec<(String, CheckedValue)>,
}

/// The path part of a match.
#[derive(Debug)]
pub enum CheckedPath {
    Exact(String),
    /// Without its trailing slash ("/" for the root).
    Prefix(String),
    Template(PathTemplate),
    Regex {
        pattern: String,
        regex: Regex,
    },
}

/// A header or query value condition.
#[derive(Debug)]
pub enum CheckedValue {
    Exact(String),
    Regex { pattern: String, regex: Regex },
}

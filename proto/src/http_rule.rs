//! The path templates of `google.api.http` rules (google/api/http.proto):
//!
//! ```text
//! Template = "/" Segments [ ":" Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! ```
//!
//! `{name}` is `{name=*}`; `**` matches the rest of the path and may only come last; variables
//! do not nest and bind each field once. Parsed once, when a ProtoSet's rules are checked or
//! compiled; [`HttpTemplate::shape`] is what two rules of one HTTP method must not share.

use std::fmt;

mod bindings;

pub use self::bindings::{Binding, bindings, unannotated};

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTemplate {
    pub segments: Vec<Segment>,
    /// The `:verb` suffix (a custom method), if any.
    pub verb: Option<String>,
    pub variables: Vec<Variable>,
}

/// One path segment of a template.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Literal(String),
    /// `*`: one segment.
    Single,
    /// `**`: the rest of the path, possibly nothing.
    Rest,
}

/// A variable: the request field path it binds and the segments it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    /// `book.name` as `["book", "name"]`.
    pub field_path: Vec<String>,
    /// The segments it covers, `start..end` in [`HttpTemplate::segments`].
    pub start: usize,
    pub end: usize,
}

/// Why a template does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpTemplateError {
    #[error("must start with '/'")]
    NotAbsolute,
    #[error("empty segment")]
    EmptySegment,
    #[error("'**' may only be the last segment")]
    RestNotLast,
    #[error("variables do not nest")]
    Nested,
    #[error("unclosed '{{'")]
    Unclosed,
    #[error("{0:?} is not a field path (identifiers joined by '.')")]
    BadFieldPath(String),
    #[error("field {0:?} is bound twice")]
    BoundTwice(String),
    #[error("segment {0:?} holds a character a template does not allow")]
    BadLiteral(String),
    #[error("empty verb after ':'")]
    EmptyVerb,
}

impl HttpTemplate {
    pub fn parse(template: &str) -> Result<Self, HttpTemplateError> {
        let rest = template
            .strip_prefix('/')
            .ok_or(HttpTemplateError::NotAbsolute)?;
        // The verb is after the last ':' that is outside a variable and after the last '/'.
        let (path, verb) = split_verb(rest)?;
        let mut parsed = Self {
            segments: Vec::new(),
            verb,
            variables: Vec::new(),
        };
        let mut chars = path;
        loop {
            if let Some(inner) = chars.strip_prefix('{') {
                let close = inner.find('}').ok_or(HttpTemplateError::Unclosed)?;
                let (body, after) = (&inner[..close], &inner[close + 1..]);
                if body.contains('{') {
                    return Err(HttpTemplateError::Nested);
                }
                let (field, sub) = body.split_once('=').unwrap_or((body, "*"));
                let field_path = field_path(field)?;
                let start = parsed.segments.len();
                for segment in sub.split('/') {
                    parsed.segments.push(segment_of(segment)?);
                }
                let dotted = field_path.join(".");
                if parsed
                    .variables
                    .iter()
                    .any(|v| v.field_path.join(".") == dotted)
                {
                    return Err(HttpTemplateError::BoundTwice(dotted));
                }
                parsed.variables.push(Variable {
                    field_path,
                    start,
                    end: parsed.segments.len(),
                });
                chars = after;
            } else {
                let end = chars.find('/').unwrap_or(chars.len());
                parsed.segments.push(segment_of(&chars[..end])?);
                chars = &chars[end..];
            }
            match chars.strip_prefix('/') {
                Some(next) => chars = next,
                None if chars.is_empty() => break,
                None => return Err(HttpTemplateError::BadLiteral(chars.to_owned())),
            }
        }
        let last = parsed.segments.len().saturating_sub(1);
        if parsed.segments[..last].contains(&Segment::Rest) {
            return Err(HttpTemplateError::RestNotLast);
        }
        Ok(parsed)
    }

    /// What the template matches, without the names of its variables: two rules of one HTTP
    /// method with the same shape could never be told apart.
    pub fn shape(&self) -> (Vec<Segment>, Option<String>) {
        (self.segments.clone(), self.verb.clone())
    }
}

impl fmt::Display for HttpTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            f.write_str("/")?;
            if let Some(v) = self.variables.iter().find(|v| v.start == i) {
                write!(f, "{{{}=", v.field_path.join("."))?;
            }
            match segment {
                Segment::Literal(l) => f.write_str(l)?,
                Segment::Single => f.write_str("*")?,
                Segment::Rest => f.write_str("**")?,
            }
            if self.variables.iter().any(|v| v.end == i + 1) {
                f.write_str("}")?;
            }
        }
        if let Some(verb) = &self.verb {
            write!(f, ":{verb}")?;
        }
        Ok(())
    }
}

fn split_verb(path: &str) -> Result<(&str, Option<String>), HttpTemplateError> {
    let last_slash = path.rfind('/').map_or(0, |i| i + 1);
    let last_close = path.rfind('}').map_or(0, |i| i + 1);
    let tail_start = last_slash.max(last_close);
    match path[tail_start..].find(':') {
        None => Ok((path, None)),
        Some(colon) => {
            let verb = &path[tail_start + colon + 1..];
            if verb.is_empty() {
                return Err(HttpTemplateError::EmptyVerb);
            }
            check_literal(verb)?;
            Ok((&path[..tail_start + colon], Some(verb.to_owned())))
        }
    }
}

fn segment_of(segment: &str) -> Result<Segment, HttpTemplateError> {
    match segment {
        "" => Err(HttpTemplateError::EmptySegment),
        "*" => Ok(Segment::Single),
        "**" => Ok(Segment::Rest),
        literal => {
            check_literal(literal)?;
            Ok(Segment::Literal(literal.to_owned()))
        }
    }
}

/// A literal is made of URL path characters (RFC 3986 pchar, `:` aside: it starts the verb).
fn check_literal(literal: &str) -> Result<(), HttpTemplateError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()+,;=@%".contains(&b);
    if literal.bytes().all(allowed) && !literal.contains("*") {
        Ok(())
    } else {
        Err(HttpTemplateError::BadLiteral(literal.to_owned()))
    }
}

fn field_path(text: &str) -> Result<Vec<String>, HttpTemplateError> {
    let ident = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let parts: Vec<&str> = text.split('.').collect();
    if parts.iter().all(|p| ident(p)) {
        Ok(parts.into_iter().map(str::to_owned).collect())
    } else {
        Err(HttpTemplateError::BadFieldPath(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Segment {
        Segment::Literal(s.to_owned())
    }

    #[test]
    fn parses_the_forms_of_http_proto() {
        let t = HttpTemplate::parse("/v1/{name=shelves/*/books/*}").unwrap();
        assert_eq!(
            t.segments,
            [
                lit("v1"),
                lit("shelves"),
                Segment::Single,
                lit("books"),
                Segment::Single
            ]
        );
        assert_eq!(
            t.variables,
            [Variable {
                field_path: vec!["name".into()],
                start: 1,
                end: 5
            }]
        );

        let t = HttpTemplate::parse("/v1/shelves/{shelf}/books/{book.id}").unwrap();
        assert_eq!(t.variables[0].field_path, ["shelf"]);
        assert_eq!((t.variables[0].start, t.variables[0].end), (2, 3));
        assert_eq!(t.variables[1].field_path, ["book", "id"]);

        let t = HttpTemplate::parse("/v1/{path=**}").unwrap();
        assert_eq!(t.segments, [lit("v1"), Segment::Rest]);

        let t = HttpTemplate::parse("/v1/{name=projects/*}:undelete").unwrap();
        assert_eq!(t.verb.as_deref(), Some("undelete"));
        assert_eq!(t.to_string(), "/v1/{name=projects/*}:undelete");

        let t = HttpTemplate::parse("/v1/books:batchGet").unwrap();
        assert_eq!(t.segments, [lit("v1"), lit("books")]);
        assert_eq!(t.verb.as_deref(), Some("batchGet"));
    }

    #[test]
    fn refuses_what_the_grammar_does_not_allow() {
        use HttpTemplateError as E;
        for (template, error) in [
            ("v1/x", E::NotAbsolute),
            ("/v1//x", E::EmptySegment),
            ("/v1/**/x", E::RestNotLast),
            ("/v1/{a={b}}", E::Nested),
            ("/v1/{a", E::Unclosed),
            ("/v1/{1a}", E::BadFieldPath("1a".into())),
            ("/v1/{a}/{a}", E::BoundTwice("a".into())),
            ("/v1/a b", E::BadLiteral("a b".into())),
            ("/v1/x:", E::EmptyVerb),
        ] {
            assert_eq!(HttpTemplate::parse(template), Err(error), "{template}");
        }
    }

    #[test]
    fn shapes_ignore_variable_names() {
        let a = HttpTemplate::parse("/v1/{name=shelves/*}").unwrap();
        let b = HttpTemplate::parse("/v1/shelves/{id}").unwrap();
        let c = HttpTemplate::parse("/v1/shelves/{id}:archive").unwrap();
        assert_eq!(a.shape(), b.shape());
        assert_ne!(a.shape(), c.shape());
    }
}

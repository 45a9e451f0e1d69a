//! Path templates: `/users/{id}/posts/{post}`, where each segment is a literal or a whole-segment
//! `{param}` placeholder.

use std::fmt;

/// A parsed path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    segments: Box<[Segment]>,
    literal_prefix_len: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Param(Box<str>),
}

/// Why a template does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Templates are absolute paths.
    #[error("must start with '/'")]
    NotAbsolute,
    /// `{` or `}` inside a literal segment, or a placeholder that is not a whole segment.
    #[error("segment {0:?}: a placeholder must be a whole segment, like {{id}}")]
    PartialPlaceholder(String),
    /// A placeholder name that is not an identifier.
    #[error("placeholder {0:?} must be a name of letters, digits and '_'")]
    BadParamName(String),
    /// The same placeholder twice.
    #[error("placeholder {{{0}}} appears more than once")]
    DuplicateParam(String),
}

// === impl PathTemplate ===

impl PathTemplate {
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let rest = template
            .strip_prefix('/')
            .ok_or(TemplateError::NotAbsolute)?;
        let mut segments = Vec::new();
        let mut literal_prefix_len = 1;
        let mut in_prefix = true;
        for raw in rest.split('/') {
            let segment = if let Some(name) =
                raw.strip_prefix('{').and_then(|r| r.strip_suffix('}'))
            {
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(TemplateError::BadParamName(name.to_owned()));
                }
                if segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(p) if &**p == name))
                {
                    return Err(TemplateError::DuplicateParam(name.to_owned()));
                }
                in_prefix = false;
                Segment::Param(name.into())
            } else if raw.contains(['{', '}']) {
                return Err(TemplateError::PartialPlaceholder(raw.to_owned()));
            } else {
                if in_prefix {
                    literal_prefix_len += raw.len() + 1;
                }
                Segment::Literal(raw.into())
            };
            segments.push(segment);
        }
        Ok(Self {
            segments: segments.into(),
            // The trailing '/' counted for the last literal segment is not part of the template.
            literal_prefix_len: literal_prefix_len.min(template.len()),
        })
    }

    /// Length of the literal text before the first placeholder: how specific the template is
    /// when ranked against path prefixes.
    pub fn literal_prefix_len(&self) -> usize {
        self.literal_prefix_len
    }

    /// Whether `path` (without query) matches, segment for segment.
    pub fn matches(&self, path: &str) -> bool {
        self.captures(path, |_, _| {})
    }

    /// Matches `path`, calling `capture(name, value)` for each placeholder on success
    /// (and possibly for some before a failure is found).
    pub fn captures<'p>(&self, path: &'p str, mut capture: impl FnMut(&str, &'p str)) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
        for segment in self.segments.iter() {
            let Some(part) = parts.next() else {
                return false;
            };
            match segment {
                Segment::Literal(literal) if **literal == *part => {}
                Segment::Literal(_) => return false,
                Segment::Param(_) if part.is_empty() => return false,
                Segment::Param(name) => capture(name, part),
            }
        }
        parts.next().is_none()
    }

    /// The placeholder names, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(p) => Some(&**p),
            Segment::Literal(_) => None,
        })
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in self.segments.iter() {
            match segment {
                Segment::Literal(l) => write!(f, "/{l}")?,
                Segment::Param(p) => write!(f, "/{{{p}}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let t = PathTemplate::parse("/users/{id}/posts/{post}").unwrap();
        assert_eq!(t.params().collect::<Vec<_>>(), ["id", "post"]);
        assert_eq!(t.literal_prefix_len(), "/users/".len());
        assert!(t.matches("/users/42/posts/7"));
        assert!(!t.matches("/users/42/posts"));
        assert!(!t.matches("/users/42/posts/7/x"));
        assert!(!t.matches("/users//posts/7"));
        assert!(!t.matches("/people/42/posts/7"));
        let mut got = Vec::new();
        assert!(t.captures("/users/42/posts/7", |n, v| got.push((n.to_owned(), v))));
        assert_eq!(got, [("id".to_owned(), "42"), ("post".to_owned(), "7")]);
        assert_eq!(t.to_string(), "/users/{id}/posts/{post}");
    }

    #[test]
    fn literal_only_template() {
        let t = PathTemplate::parse("/health").unwrap();
        assert_eq!(t.literal_prefix_len(), "/health".len());
        assert!(t.matches("/health"));
        assert!(!t.matches("/health/x"));
    }

    #[test]
    fn rejects_bad_templates() {
        assert_eq!(
            PathTemplate::parse("users"),
            Err(TemplateError::NotAbsolute)
        );
        assert!(matches!(
            PathTemplate::parse("/users/x{id}"),
            Err(TemplateError::PartialPlaceholder(_))
        ));
        assert!(matches!(
            PathTemplate::parse("/users/{i-d}"),
            Err(TemplateError::BadParamName(_))
        ));
        assert!(matches!(
            PathTemplate::parse("/{id}/{id}"),
            Err(TemplateError::DuplicateParam(_))
        ));
    }
}

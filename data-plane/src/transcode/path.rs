//! Matching a request path against one `google.api.http` template: literal segments exactly,
//! `*` one segment, `**` the rest; a `:verb` against the last segment's suffix. Variables
//! capture their segments joined by `/`, percent-decoded (a `**` variable keeps `%2F` as is:
//! the decoded slash would mean another segment).

use gateway_proto::http_rule::{HttpTemplate, Segment};

/// How specific a template is: literal segments count most, a `**` least.
pub fn specificity(template: &HttpTemplate) -> (usize, bool, usize) {
    let literals = template
        .segments
        .iter()
        .filter(|s| matches!(s, Segment::Literal(_)))
        .count();
    let no_rest = !template.segments.contains(&Segment::Rest);
    (literals, no_rest, template.segments.len())
}

/// The variables' values if `path` matches `template`.
pub fn capture(template: &HttpTemplate, path: &str) -> Option<Vec<(String, String)>> {
    let path = path.strip_prefix('/')?;
    let path = match &template.verb {
        Some(verb) => path.strip_suffix(verb.as_str())?.strip_suffix(':')?,
        None => path,
    };
    let segments: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    // Where each template segment starts in the path (a `**` takes the rest).
    let mut spans = Vec::with_capacity(template.segments.len());
    let mut at = 0;
    for segment in &template.segments {
        match segment {
            Segment::Literal(literal) => {
                if segments.get(at) != Some(&literal.as_str()) {
                    return None;
                }
                spans.push((at, at + 1));
                at += 1;
            }
            Segment::Single => {
                if segments.get(at).is_none_or(|s| s.is_empty()) {
                    return None;
                }
                spans.push((at, at + 1));
                at += 1;
            }
            Segment::Rest => {
                spans.push((at, segments.len()));
                at = segments.len();
            }
        }
    }
    if at != segments.len() {
        return None;
    }
    let mut captures = Vec::with_capacity(template.variables.len());
    for variable in &template.variables {
        let from = spans.get(variable.start)?.0;
        let to = variable
            .end
            .checked_sub(1)
            .and_then(|last| spans.get(last))?
            .1;
        let rest = template.segments[variable.start..variable.end].contains(&Segment::Rest);
        let raw = segments.get(from..to)?.join("/");
        captures.push((variable.field_path.join("."), decode(&raw, rest)?));
    }
    Some(captures)
}

/// Percent-decodes a captured value (leaving `%2F` encoded in a `**` capture); `None` for a
/// bad escape or a result that is not UTF-8.
fn decode(raw: &str, keep_slash: bool) -> Option<String> {
    String::from_utf8(super::percent_decode(raw.as_bytes(), keep_slash)?).ok()
}

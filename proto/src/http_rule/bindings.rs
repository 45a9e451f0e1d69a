//! The HTTP bindings of a gRPC method: its `google.api.http` rule and the rule's
//! `additional_bindings`, each checked against the method's messages (every path variable a
//! singular scalar field, `body` `*` or a field of the request, `response_body` a field of the
//! response).

use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor, Value,
};

use super::HttpTemplate;

/// One way a method is reached over HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// `GET`, `POST`, … or a custom rule's kind.
    pub method: String,
    pub template: HttpTemplate,
    /// `*` (the whole request), a request field, or none (no body).
    pub body: Option<String>,
    /// The response field that is the body, if not the whole response.
    pub response_body: Option<String>,
}

/// The binding of a method without an HTTP rule, for filters that allow them:
/// `POST /pkg.Service/Method` with the whole request as the body.
pub fn unannotated(method: &MethodDescriptor) -> Binding {
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let segments = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| super::Segment::Literal(s.to_owned()))
        .collect();
    Binding {
        method: "POST".into(),
        template: HttpTemplate {
            segments,
            verb: None,
            variables: Vec::new(),
        },
        body: Some("*".into()),
        response_body: None,
    }
}

/// The bindings of `method`: none when it has no `google.api.http` rule.
pub fn bindings(method: &MethodDescriptor) -> Result<Vec<Binding>, String> {
    let pool = method.parent_pool();
    let Some(extension) = pool.get_extension_by_name("google.api.http") else {
        return Ok(Vec::new());
    };
    let options = method.options();
    if !options.has_extension(&extension) {
        return Ok(Vec::new());
    }
    let Value::Message(rule) = options.get_extension(&extension).into_owned() else {
        return Ok(Vec::new());
    };
    let mut found = vec![binding(method, &rule)?];
    if let Some(Value::List(more)) = rule
        .get_field_by_name("additional_bindings")
        .map(|v| v.into_owned())
    {
        for value in more {
            if let Value::Message(extra) = value {
                if extra
                    .get_field_by_name("additional_bindings")
                    .is_some_and(|v| matches!(&*v, Value::List(l) if !l.is_empty()))
                {
                    return Err(
                        "additional_bindings must not have additional_bindings of their own".into(),
                    );
                }
                found.push(binding(method, &extra)?);
            }
        }
    }
    Ok(found)
}

fn binding(method: &MethodDescriptor, rule: &DynamicMessage) -> Result<Binding, String> {
    let text = |name: &str| match rule.get_field_by_name(name).as_deref() {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let pattern = ["get", "put", "post", "delete", "patch"]
        .into_iter()
        .find_map(|verb| text(verb).map(|path| (verb.to_ascii_uppercase(), path)))
        .or_else(|| match rule.get_field_by_name("custom").as_deref() {
            Some(Value::Message(custom)) => {
                let kind = match custom.get_field_by_name("kind").as_deref() {
                    Some(Value::String(k)) if !k.is_empty() => k.clone(),
                    _ => return None,
                };
                match custom.get_field_by_name("path").as_deref() {
                    Some(Value::String(p)) => Some((kind, p.clone())),
                    _ => None,
                }
            }
            _ => None,
        });
    let Some((verb, path)) = pattern else {
        return Err(
            "the HTTP rule names no method and path (get, put, post, delete, patch or custom)"
                .into(),
        );
    };
    let template = HttpTemplate::parse(&path).map_err(|e| format!("{verb} {path:?}: {e}"))?;
    let input = method.input();
    for variable in &template.variables {
        let field =
            field_at(&input, &variable.field_path).map_err(|e| format!("{verb} {path:?}: {e}"))?;
        if field.is_list() || field.is_map() || matches!(field.kind(), Kind::Message(_)) {
            return Err(format!(
                "{verb} {path:?}: {} must be a singular scalar field to be bound from the path",
                variable.field_path.join(".")
            ));
        }
    }
    let body = text("body");
    if let Some(body) = body.as_deref()
        && body != "*"
        && input.get_field_by_name(body).is_none()
    {
        return Err(format!(
            "body {body:?} is not a field of {}",
            input.full_name()
        ));
    }
    let response_body = text("response_body");
    if let Some(field) = response_body.as_deref() {
        let output = method.output();
        if output.get_field_by_name(field).is_none() {
            return Err(format!(
                "response_body {field:?} is not a field of {}",
                output.full_name()
            ));
        }
    }
    Ok(Binding {
        method: verb,
        template,
        body,
        response_body,
    })
}

/// The field at a dotted path through nested messages.
fn field_at(message: &MessageDescriptor, path: &[String]) -> Result<FieldDescriptor, String> {
    let mut message = message.clone();
    let mut found = None;
    for (i, name) in path.iter().enumerate() {
        let field = message.get_field_by_name(name).ok_or_else(|| {
            format!(
                "{} is not a field of {}",
                path[..=i].join("."),
                message.full_name()
            )
        })?;
        if i + 1 < path.len() {
            match field.kind() {
                Kind::Message(inner) if !field.is_list() => message = inner,
                _ => return Err(format!("{} is not a message field", path[..=i].join("."))),
            }
        }
        found = Some(field);
    }
    found.ok_or_else(|| "an empty field path".to_owned())
}

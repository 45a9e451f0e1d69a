//! Resource files: multi-document YAML (or JSON), each document `{kind, name, spec}` with the
//! spec in the proto3 JSON mapping of its message. Parsing names the document and the field of
//! every problem; rendering gives back documents that parse to the same resources.

use std::fmt;

use prost::Message as _;
use prost_reflect::{DeserializeOptions, DynamicMessage, SerializeOptions};
use serde_json::{Map, Value};

use crate::{
    ResourceKind, descriptor,
    v1::{self, resource::Spec},
};

/// A problem in one document of a resource file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentError {
    /// 1-based position of the resource in the file (0: the file as a whole).
    pub document: usize,
    /// `kind/name` when the document got that far, for the message.
    pub resource: Option<String>,
    /// Field path inside the document, e.g. `spec.rules[0].matches[0].path.type`.
    pub field: String,
    pub message: String,
}

/// Every problem found in a resource file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct DocumentErrors(pub Vec<DocumentError>);

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.document == 0 {
            return write!(f, "malformed YAML: {}", self.message);
        }
        write!(f, "document {}", self.document)?;
        if let Some(resource) = &self.resource {
            write!(f, " ({resource})")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl fmt::Display for DocumentErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Limits for one resource file. The parser's defaults (1,024 documents, 250,000 nodes) are
/// below what a large installation keeps in one file (10,000 routes is ~300,000 nodes); these
/// still bound what a hostile file can make the parser do.
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 1_000_000;
    budget.max_nodes = 50_000_000;
    budget.max_events = 100_000_000;
    budget.max_total_scalar_bytes = 1 << 30;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Parses every resource of a YAML or JSON file. A document may also be a list of resources
/// (as `gatewayctl get -o json` prints them).
pub fn parse_documents(text: &str) -> Result<Vec<v1::Resource>, DocumentErrors> {
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, yaml_options())
        .map_err(|e| {
            DocumentErrors(vec![DocumentError {
                document: 0,
                resource: None,
                field: String::new(),
                message: e.to_string(),
            }])
        })?;
    let items = documents.into_iter().flat_map(|doc| match doc {
        Value::Array(items) => items,
        other => vec![other],
    });
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for (index, item) in items.enumerate() {
        match parse_document(index + 1, item) {
            Ok(resource) => resources.push(resource),
            Err(error) => errors.push(*error),
        }
    }
    if errors.is_empty() {
        Ok(resources)
    } else {
        Err(DocumentErrors(errors))
    }
}

fn parse_document(document: usize, value: Value) -> Result<v1::Resource, Box<DocumentError>> {
    let error = |resource: Option<String>, field: &str, message: String| {
        Box::new(DocumentError {
            document,
            resource,
            field: field.to_owned(),
            message,
        })
    };
    let Value::Object(mut fields) = value else {
        return Err(error(
            None,
            "",
            "must be a mapping with kind, name and spec".into(),
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "kind" | "name" | "spec" | "version"))
    {
        return Err(error(
            None,
            unknown,
            "unknown field (a resource has kind, name, spec and optionally version)".into(),
        ));
    }
    let kind = match fields.remove("kind") {
        Some(Value::String(kind)) => ResourceKind::parse(&kind).ok_or_else(|| {
            let known: Vec<_> = ResourceKind::ALL.iter().map(|k| k.as_str()).collect();
            error(
                None,
                "kind",
                format!("unknown kind {kind:?} (known: {})", known.join(", ")),
            )
        })?,
        Some(_) => return Err(error(None, "kind", "must be a string".into())),
        None => return Err(error(None, "kind", "is required".into())),
    };
    let name = match fields.remove("name") {
        Some(Value::String(name)) => name,
        Some(_) => return Err(error(None, "name", "must be a string".into())),
        None => return Err(error(None, "name", "is required".into())),
    };
    let label = Some(format!("{kind}/{name}"));
    let version = match fields.remove("version") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(-1),
        Some(Value::String(s)) => s.parse().unwrap_or(-1),
        Some(_) => -1,
    };
    if version < 0 {
        return Err(error(
            label,
            "version",
            "must be a non-negative integer".into(),
        ));
    }
    let spec_value = fields.remove("spec").unwrap_or(Value::Null);
    if spec_value.is_null() {
        return Err(error(label, "spec", "is required".into()));
    }
    let spec = parse_spec(kind, spec_value).map_err(|(field, message)| {
        let field = if field.is_empty() || field == "." {
            "spec".to_owned()
        } else {
            format!("spec.{field}")
        };
        error(label.clone(), &field, message)
    })?;
    Ok(v1::Resource {
        name,
        version,
        spec: Some(spec),
    })
}

/// Deserializes a spec through the proto3 JSON mapping, tracking the path of the first error.
fn parse_spec(kind: ResourceKind, value: Value) -> Result<Spec, (String, String)> {
    let descriptor = descriptor::message(kind.spec_message());
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(value, &mut track);
    let message = DynamicMessage::deserialize_with_options(
        descriptor,
        deserializer,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|e| {
        let message = e.to_string();
        let mut path = track.path().to_string();
        // An unknown key fails at its parent: name the key itself.
        if let Some(key) = message
            .strip_prefix("unrecognized field name '")
            .and_then(|rest| rest.split_once('\''))
            .map(|(key, _)| key)
        {
            path = if path.is_empty() || path == "." {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            };
        }
        (path, message)
    })?;
    let transcoded = match kind {
        ResourceKind::Consumer => message.transcode_to().map(Spec::Consumer),
        ResourceKind::Certificate => message.transcode_to().map(Spec::Certificate),
        ResourceKind::ProtoSet => message.transcode_to().map(Spec::ProtoSet),
        ResourceKind::Upstream => message.transcode_to().map(Spec::Upstream),
        ResourceKind::Policy => message.transcode_to().map(Spec::Policy),
        ResourceKind::Route => message.transcode_to().map(Spec::Route),
    };
    transcoded.map_err(|e| (String::new(), e.to_string()))
}

/// The document of one resource: `{kind, name, version, spec}` in the proto3 JSON mapping.
pub fn to_document(resource: &v1::Resource) -> Value {
    let mut document = Map::new();
    let (kind, spec) = match &resource.spec {
        Some(Spec::Consumer(spec)) => (ResourceKind::Consumer, spec.encode_to_vec()),
        Some(Spec::Certificate(spec)) => (ResourceKind::Certificate, spec.encode_to_vec()),
        Some(Spec::ProtoSet(spec)) => (ResourceKind::ProtoSet, spec.encode_to_vec()),
        Some(Spec::Upstream(spec)) => (ResourceKind::Upstream, spec.encode_to_vec()),
        Some(Spec::Policy(spec)) => (ResourceKind::Policy, spec.encode_to_vec()),
        Some(Spec::Route(spec)) => (ResourceKind::Route, spec.encode_to_vec()),
        None => {
            document.insert("name".into(), resource.name.clone().into());
            return Value::Object(document);
        }
    };
    document.insert("kind".into(), kind.as_str().into());
    document.insert("name".into(), resource.name.clone().into());
    if resource.version != 0 {
        document.insert("version".into(), resource.version.into());
    }
    document.insert("spec".into(), spec_to_json(kind, &spec));
    Value::Object(document)
}

fn spec_to_json(kind: ResourceKind, encoded: &[u8]) -> Value {
    let descriptor = descriptor::message(kind.spec_message());
    // Both sides of this conversion are our own generated types and descriptors: a failure
    // here is a defect in the build, not in the input.
    let message = DynamicMessage::decode(descriptor, encoded).expect("spec encoded by prost");
    message
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .expect("a dynamic message always serializes to JSON")
}

/// Multi-document YAML of the resources, which [`parse_documents`] reads back.
pub fn to_yaml(resources: &[v1::Resource]) -> String {
    let documents: Vec<Value> = resources.iter().map(to_document).collect();
    serde_saphyr::to_string_multiple(&documents).unwrap_or_else(|e| format!("# {e}\n"))
}

#[cfg(test)]
mod tests;

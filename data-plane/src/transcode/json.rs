//! The request message from JSON, the query and the path; the response as JSON. All of it by the
//! proto3 JSON mapping (prost-reflect's): lowerCamelCase or `json_name` keys out, proto names
//! accepted in, 64-bit integers as strings, enums by name, bytes as base64, the well-known
//! types. Query and path values are strings: they become JSON strings (which the mapping
//! accepts for every scalar) or booleans, so one parser checks every type.

use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    SerializeOptions,
};
use serde_json::{Map, Value};

use super::Matched;

/// Why a request cannot become a gRPC message: the client's fault, answered 400 before any
/// backend call.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// How JSON is read and written.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Unknown JSON fields and query parameters are ignored rather than refused.
    pub ignore_unknown_fields: bool,
    /// Fields at their default value are written too.
    pub emit_defaults: bool,
}

/// The encoded request message of a matched binding: the body (all of it for `body: "*"`, the
/// named field for `body: "field"`), then the query's parameters (not with `body: "*"`, which
/// takes every field the path does not), then the path's variables, which win.
pub fn request(
    matched: &Matched<'_>,
    query: Option<&str>,
    body: &[u8],
    options: Options,
) -> Result<DynamicMessage, BadRequest> {
    let input = matched.method.input();
    let deserialize = DeserializeOptions::new().deny_unknown_fields(!options.ignore_unknown_fields);
    if matched.shape.direct_body
        && matched.captures.is_empty()
        && !body.iter().all(u8::is_ascii_whitespace)
    {
        // The whole request is the body: read straight into the message, no JSON tree.
        let mut reader = serde_json::Deserializer::from_slice(body);
        let message = DynamicMessage::deserialize_with_options(input, &mut reader, &deserialize)
            .and_then(|message| reader.end().map(|()| message))
            .map_err(|e| {
                BadRequest(format!(
                    "the request does not fit the method's message: {e}"
                ))
            })?;
        return Ok(message);
    }
    let mut object = match matched.binding.body.as_deref() {
        Some("*") => match parse_body(body)? {
            Value::Object(object) => object,
            Value::Null => Map::new(),
            _ => return Err(BadRequest("the body must be a JSON object".into())),
        },
        Some(field) => {
            let mut object = Map::new();
            let value = parse_body(body)?;
            if !value.is_null() {
                object.insert(field.to_owned(), value);
            }
            object
        }
        None if body.iter().all(u8::is_ascii_whitespace) => Map::new(),
        None => return Err(BadRequest("this method takes no request body".into())),
    };
    if matched.binding.body.as_deref() != Some("*")
        && let Some(query) = query
    {
        for (name, value) in form_pairs(query)? {
            set(&mut object, &input, &name, value, true, options)?;
        }
    }
    for (name, value) in &matched.captures {
        set(&mut object, &input, name, value.clone(), false, options)?;
    }
    let json = Value::Object(object);
    check_oneofs(&input, &json)?;
    DynamicMessage::deserialize_with_options(input, json, &deserialize).map_err(|e| {
        BadRequest(format!(
            "the request does not fit the method's message: {e}"
        ))
    })
}

/// The encoded messages of a client-streaming call's body: a JSON array of messages, or one
/// message a line (NDJSON).
pub fn stream_of_requests(
    input: &MessageDescriptor,
    body: &[u8],
    options: Options,
) -> Result<Vec<DynamicMessage>, BadRequest> {
    let text = std::str::from_utf8(body).map_err(|_| BadRequest("the body is not UTF-8".into()))?;
    let values: Vec<Value> = if text.trim_start().starts_with('[') {
        match serde_json::from_str(text) {
            Ok(Value::Array(items)) => items,
            Ok(_) => {
                return Err(BadRequest(
                    "the body must be a JSON array of messages".into(),
                ));
            }
            Err(e) => return Err(BadRequest(format!("the body is not JSON: {e}"))),
        }
    } else {
        return text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .enumerate()
            .map(|(i, line)| line_request(input, line.as_bytes(), i, options))
            .collect();
    };
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| value_request(input, value, i, options))
        .collect()
}

/// The message of one NDJSON line of a client stream, the `index`th (from 0).
pub fn line_request(
    input: &MessageDescriptor,
    line: &[u8],
    index: usize,
    options: Options,
) -> Result<DynamicMessage, BadRequest> {
    let value = serde_json::from_slice(line)
        .map_err(|e| BadRequest(format!("line {} is not JSON: {e}", index + 1)))?;
    value_request(input, value, index, options)
}

fn value_request(
    input: &MessageDescriptor,
    value: Value,
    index: usize,
    options: Options,
) -> Result<DynamicMessage, BadRequest> {
    let deserialize = DeserializeOptions::new().deny_unknown_fields(!options.ignore_unknown_fields);
    check_oneofs(input, &value)?;
    DynamicMessage::deserialize_with_options(input.clone(), value, &deserialize)
        .map_err(|e| BadRequest(format!("message {index} does not fit: {e}")))
}

/// The response as JSON: the whole message, or its `response_body` field.
pub fn response(
    output: MessageDescriptor,
    encoded: &[u8],
    response_body: Option<&str>,
    options: Options,
) -> Result<Vec<u8>, String> {
    let message = DynamicMessage::decode(output, encoded)
        .map_err(|e| format!("the upstream's message does not decode: {e}"))?;
    let serialize = SerializeOptions::new().skip_default_fields(!options.emit_defaults);
    let json = match response_body {
        // Straight into the body: no JSON tree in between.
        None => {
            let mut body = Vec::with_capacity(encoded.len() + encoded.len() / 2 + 16);
            message
                .serialize_with_options(&mut serde_json::Serializer::new(&mut body), &serialize)
                .map_err(|e| e.to_string())?;
            return Ok(body);
        }
        Some(field) => {
            let all = message
                .serialize_with_options(
                    serde_json::value::Serializer,
                    &SerializeOptions::new().skip_default_fields(false),
                )
                .map_err(|e| e.to_string())?;
            let key = message
                .descriptor()
                .get_field_by_name(field)
                .map(|f| f.json_name().to_owned())
                .unwrap_or_else(|| field.to_owned());
            all.get(&key).cloned().unwrap_or(Value::Null)
        }
    };
    serde_json::to_vec(&json).map_err(|e| e.to_string())
}

fn parse_body(body: &[u8]) -> Result<Value, BadRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| BadRequest(format!("the body is not JSON: {e}")))
}

/// `a=1&b.c=x+y&b.c=z` as decoded pairs.
fn form_pairs(query: &str) -> Result<Vec<(String, String)>, BadRequest> {
    let decode = |text: &str| {
        let text = text.replace('+', " ");
        percent_decode(&text)
            .ok_or_else(|| BadRequest(format!("bad escape in the query: {text:?}")))
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

fn percent_decode(text: &str) -> Option<String> {
    String::from_utf8(super::percent_decode(text.as_bytes(), false)?).ok()
}

/// Sets the field at a dotted path (proto or JSON names) in the JSON object, as the field's
/// type reads it from a string. A repeated field from the query gets one element per
/// occurrence.
fn set(
    object: &mut Map<String, Value>,
    message: &MessageDescriptor,
    path: &str,
    value: String,
    from_query: bool,
    options: Options,
) -> Result<(), BadRequest> {
    let mut names = path.split('.').peekable();
    let mut message = message.clone();
    let mut object = object;
    while let Some(name) = names.next() {
        let Some(field) = field(&message, name) else {
            if options.ignore_unknown_fields {
                return Ok(());
            }
            return Err(BadRequest(format!(
                "{path:?} is not a field of {}",
                message.full_name()
            )));
        };
        let key = field.json_name().to_owned();
        if names.peek().is_none() {
            let scalar = scalar(&field, value);
            if field.is_list() && from_query {
                let entry = object
                    .entry(key)
                    .or_insert_with(|| Value::Array(Vec::new()));
                match entry {
                    Value::Array(items) => items.push(scalar),
                    other => *other = Value::Array(vec![scalar]),
                }
            } else {
                object.insert(key, scalar);
            }
            return Ok(());
        }
        let Kind::Message(inner) = field.kind() else {
            return Err(BadRequest(format!(
                "{path:?}: {name} is not a message field"
            )));
        };
        if field.is_list() || field.is_map() {
            return Err(BadRequest(format!(
                "{path:?}: {name} cannot be set by parts"
            )));
        }
        let entry = object
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(inner_object) = entry else {
            return Err(BadRequest(format!("{path:?}: {name} is not an object")));
        };
        object = inner_object;
        message = inner;
    }
    Ok(())
}

/// A field by its proto name or its JSON name.
fn field(message: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    message
        .get_field_by_name(name)
        .or_else(|| message.get_field_by_json_name(name))
}

/// A string from the path or the query as JSON for this field: booleans as booleans (the
/// mapping takes no string for them), everything else as a string.
fn scalar(field: &FieldDescriptor, value: String) -> Value {
    match (field.kind(), value.as_str()) {
        (Kind::Bool, "true") => Value::Bool(true),
        (Kind::Bool, "false") => Value::Bool(false),
        _ => Value::String(value),
    }
}

/// Two members of one oneof set: refused (the mapping would keep the last silently).
fn check_oneofs(message: &MessageDescriptor, json: &Value) -> Result<(), BadRequest> {
    // The well-known types have JSON forms of their own (a Value's object is a Struct).
    if message.full_name().starts_with("google.protobuf.") {
        return Ok(());
    }
    let Value::Object(object) = json else {
        return Ok(());
    };
    for oneof in message.oneofs() {
        let set: Vec<String> = oneof
            .fields()
            .filter(|f| {
                object
                    .get(f.json_name())
                    .or_else(|| object.get(f.name()))
                    .is_some_and(|v| !v.is_null())
            })
            .map(|f| f.name().to_owned())
            .collect();
        if set.len() > 1 {
            return Err(BadRequest(format!(
                "{} and {} are members of one oneof ({}): set one",
                set[0],
                set[1],
                oneof.name()
            )));
        }
    }
    for field in message.fields() {
        if let Kind::Message(inner) = field.kind()
            && !field.is_map()
            && let Some(value) = object
                .get(field.json_name())
                .or_else(|| object.get(field.name()))
        {
            match value {
                Value::Array(items) if field.is_list() => {
                    for item in items {
                        check_oneofs(&inner, item)?;
                    }
                }
                value => check_oneofs(&inner, value)?,
            }
        }
    }
    Ok(())
}

//! Request-body JSON Schemas: compiled the same way by validation and by the data plane, so a
//! schema that validation accepts compiles. Remote `$ref`s are never fetched (the crate is
//! built without them): a schema is self-contained.

/// The largest schema accepted, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;

/// Compiles a schema given as JSON text (checked against its draft's meta-schema).
pub fn compile(text: &str) -> Result<jsonschema::Validator, String> {
    if text.len() > MAX_SCHEMA_BYTES {
        return Err(format!("is over {} KiB", MAX_SCHEMA_BYTES / 1024));
    }
    let schema: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
    jsonschema::validator_for(&schema).map_err(|e| format!("is not a valid JSON Schema: {e}"))
}

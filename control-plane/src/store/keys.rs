//! The key layout below a store prefix, shared by both stores: `<kind plural>/<name>` per
//! resource and the marker `_meta/revision`. Anything else (`_dataplanes/…`, the service
//! registry's `registry/<service>/<id>`, unknown kinds) is not configuration.

use gateway_proto::{ResourceKind, v1::Resource};
use prost::Message as _;

use super::StoreError;

/// The marker key, relative to the prefix. Its mod revision is the config version.
pub(crate) const MARKER: &str = "_meta/revision";

/// The data-plane registry folder, relative to the prefix.
pub(crate) const DATAPLANES: &str = "_dataplanes/";

/// What a key below the prefix holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Key<'a> {
    Marker,
    Resource(ResourceKind, &'a str),
    Other,
}

/// Classifies a key relative to the prefix (without the leading `/`).
pub(crate) fn parse(relative: &str) -> Key<'_> {
    if relative == MARKER {
        return Key::Marker;
    }
    let Some((plural, name)) = relative.split_once('/') else {
        return Key::Other;
    };
    if name.is_empty() || name.contains('/') {
        return Key::Other;
    }
    match ResourceKind::ALL.into_iter().find(|k| k.plural() == plural) {
        Some(kind) => Key::Resource(kind, name),
        None => Key::Other,
    }
}

/// The relative key of a resource, or an error when it carries no spec.
pub(crate) fn of_resource(resource: &Resource) -> Result<(ResourceKind, String), StoreError> {
    let kind = ResourceKind::of(resource).ok_or_else(|| {
        StoreError::InvalidOp(format!("resource {:?} has no spec", resource.name))
    })?;
    if resource.name.is_empty() || resource.name.contains('/') {
        return Err(StoreError::InvalidOp(format!(
            "{kind} name {:?} cannot be a store key",
            resource.name
        )));
    }
    Ok((kind, gateway_proto::resource_key(kind, &resource.name)))
}

/// The stored value of a resource: its protobuf encoding with `version` cleared.
pub(crate) fn encode(resource: &Resource) -> Vec<u8> {
    let mut stored = resource.clone();
    stored.version = 0;
    stored.encode_to_vec()
}

/// Decodes a stored resource, checking it against its key; `version` is set to `mod_revision`.
pub(crate) fn decode(
    kind: ResourceKind,
    name: &str,
    value: &[u8],
    mod_revision: i64,
) -> Result<Resource, String> {
    let mut resource = Resource::decode(value).map_err(|e| format!("undecodable value: {e}"))?;
    if ResourceKind::of(&resource) != Some(kind) {
        return Err(format!("the value is not a {kind}"));
    }
    if resource.name != name {
        return Err(format!("the value is named {:?}", resource.name));
    }
    resource.version = mod_revision;
    Ok(resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_keys() {
        assert_eq!(parse("_meta/revision"), Key::Marker);
        assert_eq!(
            parse("routes/users-api"),
            Key::Resource(ResourceKind::Route, "users-api")
        );
        assert_eq!(
            parse("upstreams/users"),
            Key::Resource(ResourceKind::Upstream, "users")
        );
        assert_eq!(parse("_dataplanes/dp-1"), Key::Other);
        // The service registry is not configuration: the config's watch skips it.
        assert_eq!(parse("registry/users/127.0.0.1:9001"), Key::Other);
        assert_eq!(parse("widgets/x"), Key::Other);
        assert_eq!(parse("routes/"), Key::Other);
        assert_eq!(parse("routes/a/b"), Key::Other);
        assert_eq!(parse("routes"), Key::Other);
    }
}

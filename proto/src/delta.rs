//! Deltas between snapshots, the discovery stream's incremental updates: chosen by the control
//! plane from the keys that changed, applied by the data plane to the snapshot it holds. Both
//! sides sort resources the same way, here, so that a snapshot built from deltas is the one a
//! full listing would give.
//!
//! Also the `packed` form of a discovery message: a `ControlPlaneMessage` encoded and
//! gzip-compressed once by the control plane, for every data plane that asked for it.

use std::{cmp::Ordering, io::Read as _};

use prost::Message as _;

use crate::{
    ResourceKind,
    v1::{ControlPlaneMessage, Delta, Resource, ResourceKey, Snapshot},
};

/// Why a delta cannot be applied. Each means the data plane and the control plane disagree on
/// what the data plane holds: the answer is a full snapshot (`Resync`), not a NACK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("the delta applies to version {base}, the data plane holds {held}")]
    Base { base: i64, held: i64 },
    #[error("the delta names {kind}/{name} twice")]
    Twice { kind: &'static str, name: String },
    #[error("the delta carries a resource without a kind ({0:?})")]
    NoKind(String),
}

/// Why a packed message cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("not gzip")]
    Gzip(#[source] std::io::Error),
    #[error("over {0} bytes once decompressed")]
    TooLarge(usize),
    #[error("not a ControlPlaneMessage")]
    Decode(#[source] prost::DecodeError),
}

/// The order of resources in a snapshot: by kind (dependency order), then by name.
pub fn sort(resources: &mut [Resource]) {
    resources.sort_by(|a, b| key_of(a).cmp(&key_of(b)));
}

fn key_of(resource: &Resource) -> (Option<ResourceKind>, &str) {
    (ResourceKind::of(resource), resource.name.as_str())
}

fn find(resources: &[Resource], kind: ResourceKind, name: &str) -> Result<usize, usize> {
    resources.binary_search_by(|r| key_of(r).cmp(&(Some(kind), name)))
}

/// The delta from `base_version` to `current` (sorted), given the keys that changed between
/// them: the ones `current` has are sent whole, the others as removed.
pub fn select<'k>(
    current: &Snapshot,
    base_version: i64,
    changed: impl IntoIterator<Item = (ResourceKind, &'k str)>,
) -> Delta {
    let mut keys: Vec<(ResourceKind, &str)> = changed.into_iter().collect();
    keys.sort_unstable();
    keys.dedup();
    let mut delta = Delta {
        version: current.version,
        base_version,
        ..Delta::default()
    };
    for (kind, name) in keys {
        match find(&current.resources, kind, name) {
            Ok(at) => delta.resources.push(current.resources[at].clone()),
            Err(_) => delta.removed.push(ResourceKey {
                kind: kind.to_proto() as i32,
                name: name.to_owned(),
            }),
        }
    }
    delta
}

/// What [`apply`] changed, to put it back when the result is refused.
#[derive(Debug)]
#[must_use = "an applied delta is undone by reverting it"]
pub struct Undo {
    version: i64,
    /// In the order applied: the key, and the resource it held before (none: it was added).
    steps: Vec<(ResourceKind, String, Option<Resource>)>,
}

impl Undo {
    /// Restores `held` to what it was before the delta.
    pub fn revert(self, held: &mut Snapshot) {
        for (kind, name, before) in self.steps.into_iter().rev() {
            match (find(&held.resources, kind, &name), before) {
                (Ok(at), Some(before)) => held.resources[at] = before,
                (Ok(at), None) => {
                    held.resources.remove(at);
                }
                (Err(at), Some(before)) => held.resources.insert(at, before),
                (Err(_), None) => {}
            }
        }
        held.version = self.version;
    }
}

/// Applies `delta` to `held` (sorted, as every snapshot is). On an error `held` is unchanged.
pub fn apply(held: &mut Snapshot, delta: Delta) -> Result<Undo, DeltaError> {
    if delta.base_version != held.version {
        return Err(DeltaError::Base {
            base: delta.base_version,
            held: held.version,
        });
    }
    check_keys(&delta)?;
    let mut undo = Undo {
        version: held.version,
        steps: Vec::with_capacity(delta.resources.len() + delta.removed.len()),
    };
    for resource in delta.resources {
        let Some(kind) = ResourceKind::of(&resource) else {
            continue; // refused by check_keys
        };
        let name = resource.name.clone();
        let before = match find(&held.resources, kind, &name) {
            Ok(at) => Some(std::mem::replace(&mut held.resources[at], resource)),
            Err(at) => {
                held.resources.insert(at, resource);
                None
            }
        };
        undo.steps.push((kind, name, before));
    }
    for key in delta.removed {
        let Some(kind) = ResourceKind::from_proto(key.kind) else {
            continue; // refused by check_keys
        };
        if let Ok(at) = find(&held.resources, kind, &key.name) {
            let before = held.resources.remove(at);
            undo.steps.push((kind, key.name, Some(before)));
        }
    }
    held.version = delta.version;
    Ok(undo)
}

/// Every key once, every resource with a kind. A removed key that is not held is fine: the
/// control plane lists every key that changed since the base, and one created and removed
/// again since then was never held.
fn check_keys(delta: &Delta) -> Result<(), DeltaError> {
    let mut keys = Vec::with_capacity(delta.resources.len() + delta.removed.len());
    for resource in &delta.resources {
        let kind =
            ResourceKind::of(resource).ok_or_else(|| DeltaError::NoKind(resource.name.clone()))?;
        keys.push((kind, resource.name.as_str()));
    }
    for key in &delta.removed {
        let kind = ResourceKind::from_proto(key.kind)
            .ok_or_else(|| DeltaError::NoKind(key.name.clone()))?;
        keys.push((kind, key.name.as_str()));
    }
    keys.sort_unstable();
    if let Some(pair) = keys
        .windows(2)
        .find(|pair| pair[0].cmp(&pair[1]) == Ordering::Equal)
    {
        return Err(DeltaError::Twice {
            kind: pair[0].0.as_str(),
            name: pair[0].1.to_owned(),
        });
    }
    Ok(())
}

/// `message` encoded and gzip-compressed: the `packed` body of another `ControlPlaneMessage`.
pub fn pack(message: &ControlPlaneMessage) -> Vec<u8> {
    use std::io::Write as _;
    let encoded = message.encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(encoded.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(&encoded);
    gz.finish().unwrap_or_default()
}

/// The message inside a `packed` body, at most `limit` bytes once decompressed.
pub fn unpack(packed: &[u8], limit: usize) -> Result<ControlPlaneMessage, UnpackError> {
    let mut encoded = Vec::new();
    flate2::read::GzDecoder::new(packed)
        .take(limit as u64 + 1)
        .read_to_end(&mut encoded)
        .map_err(UnpackError::Gzip)?;
    if encoded.len() > limit {
        return Err(UnpackError::TooLarge(limit));
    }
    ControlPlaneMessage::decode(encoded.as_slice()).map_err(UnpackError::Decode)
}

/// A key of a delta's `removed` list.
pub fn key(kind: ResourceKind, name: &str) -> ResourceKey {
    ResourceKey {
        kind: kind.to_proto() as i32,
        name: name.to_owned(),
    }
}

#[cfg(test)]
mod tests;

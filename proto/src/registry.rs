//! The service registry's shared model: the key layout below a store prefix, the value an
//! instance writes there, and the checks on a registration. The control plane reads the
//! registry with it, `gatewayctl register` checks its flags with it, and any other program (in
//! any language) can register by writing what it describes:
//!
//! - key `<prefix>/registry/<service>/<id>` (prefix: the control plane's `--etcd-prefix`,
//!   default `/gateway/v1`), attached to a lease of the instance's TTL that the instance keeps
//!   alive;
//! - value JSON `{"address": "HOST:PORT", "weight": 1}` (`weight` optional, default 1, 0
//!   drains; other members are ignored).
//!
//! A value that does not parse, or names a bad address, is the writer's mistake: readers skip
//! it (with a warning) and never let it break anything else.

use std::time::Duration;

use serde::Deserialize;

use crate::{names, v1, validate::MAX_WEIGHT};

/// The registry's folder below a store prefix.
pub const FOLDER: &str = "registry/";
/// The shortest lease: etcd's own minimum is about 1.5 s with its default timings (it raises
/// shorter ones), and renewing faster than every few hundred milliseconds buys nothing.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// The longest lease: a dead instance lingers at most this long.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// The longest instance id.
pub const MAX_ID_LEN: usize = 253;

/// What an instance writes at its key.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct InstanceValue {
    /// `HOST:PORT`, as an Upstream's endpoint address.
    pub address: String,
    /// Relative share of traffic (0 drains).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// Why a registration or a registry value cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A field holds what the registry does not take.
    #[error("{field}: {reason}")]
    Invalid {
        /// `service`, `id`, `address`, `weight` or `ttl`.
        field: &'static str,
        /// Why, as a sentence fragment.
        reason: String,
    },
    /// A stored value is not the registry's JSON.
    #[error("the value is not JSON {{\"address\": \"HOST:PORT\", \"weight\": N}}: {0}")]
    Json(#[source] serde_json::Error),
}

fn invalid(field: &'static str, reason: String) -> RegistryError {
    RegistryError::Invalid { field, reason }
}

// === impl InstanceValue ===

impl InstanceValue {
    /// Reads and checks a stored value.
    pub fn decode(bytes: &[u8]) -> Result<Self, RegistryError> {
        let value: Self = serde_json::from_slice(bytes).map_err(RegistryError::Json)?;
        value.check()?;
        Ok(value)
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::json!({ "address": self.address, "weight": self.weight })
            .to_string()
            .into_bytes()
    }

    /// The address is `HOST:PORT` and the weight within an endpoint's range.
    pub fn check(&self) -> Result<(), RegistryError> {
        names::check_address(&self.address).map_err(|reason| invalid("address", reason))?;
        if self.weight > MAX_WEIGHT {
            return Err(invalid(
                "weight",
                format!("{} is above {MAX_WEIGHT}", self.weight),
            ));
        }
        Ok(())
    }

    /// As an Upstream's endpoint.
    pub fn endpoint(&self) -> v1::Endpoint {
        v1::Endpoint {
            address: self.address.clone(),
            weight: Some(self.weight),
        }
    }
}

/// The key of an instance, relative to the store prefix: `registry/<service>/<id>`.
pub fn key(service: &str, id: &str) -> String {
    format!("{FOLDER}{service}/{id}")
}

/// The service and id of a key relative to the store prefix, when it is an instance's key.
pub fn parse_key(relative: &str) -> Option<(&str, &str)> {
    let (service, id) = relative.strip_prefix(FOLDER)?.split_once('/')?;
    (!service.is_empty() && !id.is_empty() && !id.contains('/')).then_some((service, id))
}

/// A service name is a resource name: it is what an Upstream's `discovery.service` names.
pub fn check_service(service: &str) -> Result<(), RegistryError> {
    names::check_resource_name(service).map_err(|reason| invalid("service", reason))
}

/// An id is one key segment, safe in logs and tables.
pub fn check_id(id: &str) -> Result<(), RegistryError> {
    if id.is_empty() {
        return Err(invalid("id", "must not be empty".into()));
    }
    if id.len() > MAX_ID_LEN {
        return Err(invalid(
            "id",
            format!("must be at most {MAX_ID_LEN} characters"),
        ));
    }
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':');
    if !id.bytes().all(ok) {
        return Err(invalid(
            "id",
            format!("{id:?} may hold only letters, digits, '-', '_', '.' and ':'"),
        ));
    }
    Ok(())
}

/// A lease's time to live is within [`MIN_TTL`] and [`MAX_TTL`].
pub fn check_ttl(ttl: Duration) -> Result<(), RegistryError> {
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(invalid("ttl", format!("{ttl:?} is not between 1s and 1h")));
    }
    Ok(())
}

/// A checked registration: what to store, and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub service: String,
    pub id: String,
    pub value: InstanceValue,
    pub ttl: Duration,
}

/// Checks every field of a registration.
pub fn check_registration(registration: &v1::Registration) -> Result<Checked, RegistryError> {
    check_service(&registration.service)?;
    check_id(&registration.id)?;
    let value = InstanceValue {
        address: registration.address.clone(),
        weight: registration.weight.unwrap_or(1),
    };
    value.check()?;
    let ttl = registration
        .ttl
        .as_ref()
        .and_then(crate::duration::from_proto)
        .ok_or_else(|| invalid("ttl", "must be set (1s to 1h)".into()))?;
    check_ttl(ttl)?;
    Ok(Checked {
        service: registration.service.clone(),
        id: registration.id.clone(),
        value,
        ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_default_the_weight() {
        let value = InstanceValue::decode(br#"{"address": "10.0.0.7:8080"}"#).unwrap();
        assert_eq!(value.weight, 1);
        assert_eq!(InstanceValue::decode(&value.encode()).unwrap(), value);
        // Other members are someone else's: ignored.
        let value =
            InstanceValue::decode(br#"{"address": "api.internal:80", "weight": 0, "zone": "a"}"#)
                .unwrap();
        assert_eq!(
            (value.address.as_str(), value.weight),
            ("api.internal:80", 0)
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_field() {
        for (bytes, needle) in [
            (&b"not json"[..], "is not JSON"),
            (br#"{"weight": 1}"#, "is not JSON"),
            (br#"{"address": "nope"}"#, "address: "),
            (br#"{"address": "127.0.0.1:0"}"#, "address: "),
            (
                br#"{"address": "127.0.0.1:1", "weight": 10001}"#,
                "weight: ",
            ),
            (
                br#"{"address": "127.0.0.1:1", "weight": -1}"#,
                "is not JSON",
            ),
        ] {
            let error = InstanceValue::decode(bytes).unwrap_err().to_string();
            assert!(error.contains(needle), "{error}");
        }
    }

    #[test]
    fn keys() {
        assert_eq!(key("users", "a-1"), "registry/users/a-1");
        assert_eq!(parse_key("registry/users/a-1"), Some(("users", "a-1")));
        assert_eq!(parse_key("registry/users/"), None);
        assert_eq!(parse_key("registry/users"), None);
        assert_eq!(parse_key("registry/users/a/b"), None);
        assert_eq!(parse_key("routes/users"), None);
    }

    #[test]
    fn registrations_are_checked_field_by_field() {
        let good = v1::Registration {
            service: "users".into(),
            id: "host-1:9001".into(),
            address: "127.0.0.1:9001".into(),
            weight: None,
            ttl: Some(prost_types::Duration {
                seconds: 10,
                nanos: 0,
            }),
        };
        let checked = check_registration(&good).unwrap();
        assert_eq!(checked.ttl, Duration::from_secs(10));
        assert_eq!(checked.value.weight, 1);
        let field = |r: v1::Registration| match check_registration(&r) {
            Err(RegistryError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(v1::Registration {
                service: "Users".into(),
                ..good.clone()
            }),
            "service"
        );
        assert_eq!(
            field(v1::Registration {
                id: "a/b".into(),
                ..good.clone()
            }),
            "id"
        );
        assert_eq!(
            field(v1::Registration {
                address: "localhost".into(),
                ..good.clone()
            }),
            "address"
        );
        assert_eq!(
            field(v1::Registration {
                weight: Some(20_000),
                ..good.clone()
            }),
            "weight"
        );
        for ttl in [None, Some((0, 500_000_000)), Some((3601, 0))] {
            assert_eq!(
                field(v1::Registration {
                    ttl: ttl.map(|(seconds, nanos)| prost_types::Duration { seconds, nanos }),
                    ..good.clone()
                }),
                "ttl"
            );
        }
    }
}

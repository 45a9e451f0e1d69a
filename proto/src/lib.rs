//! The gateway's one config model, shared by the control plane, the data plane and `gatewayctl`.
//!
//! - [`v1`]: the generated protobuf types and the `Admin` and `Discovery` services.
//! - [`document`]: resource files (multi-document YAML or JSON, the proto3 JSON mapping of
//!   [`v1::Resource`]) to resources and back.
//! - [`validate`]: whole-graph validation that names every problem's resource and field path. The
//!   control plane runs it before writing, the data plane before swapping, `gatewayctl validate`
//!   offline: the same bytes get the same verdict everywhere.
//! - [`delta`]: the discovery stream's incremental updates, chosen by the control plane and
//!   applied by the data plane.
//! - [`template`]: path templates (`/users/{id}`), parsed once, matched without allocating;
//!   [`http_rule`]: the path templates of `google.api.http` rules, for transcoding.
//! - [`duration`]: the one duration grammar of every program's flags, and the range of a
//!   configured duration; [`net`]: IP networks (`10.0.0.0/8`); [`token`]: where a program
//!   takes its bearer token from.
//! - [`jwt`]: the verification keys of `jwt` providers; [`api_key`]: Consumers' API keys,
//!   kept as hashes.
//! - [`registry`]: the service registry's key layout and values, and the checks on a
//!   registration.
//!
//! This crate does no IO: no sockets, no files, no runtime.

/// Generated protobuf types and gRPC services of package `gateway.v1`.
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    missing_debug_implementations
)]
pub mod v1 {
    tonic::include_proto!("gateway.v1");
}

pub mod api_key;
pub mod calendar;
pub mod delta;
mod descriptor;
pub mod document;
pub mod duration;
pub mod http_rule;
pub mod json_schema;
pub mod jwt;
mod kind;
pub mod names;
pub mod net;
pub mod registry;
pub mod secret;
pub mod template;
pub mod token;
pub mod validate;

pub use kind::ResourceKind;
pub use validate::{FieldError, RegexCache, ValidationErrors, check, validate, validate_with};

/// The store key of a resource below the store prefix: `<kind plural>/<name>`.
pub fn resource_key(kind: ResourceKind, name: &str) -> String {
    format!("{}/{}", kind.plural(), name)
}

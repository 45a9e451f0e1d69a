//! The gateway's control plane.
//!
//! It keeps the configuration in a [`store`] (etcd, or an embedded redb file), validates every
//! write with `gateway-proto` (the only validator; nothing here re-implements it), mirrors the
//! store in memory with a [`reflector`], serves the [`admin`] API, and streams each new
//! snapshot to the connected data planes through [`discovery`], with the service registry's
//! instances that the [`services`] mirror keeps. [`Server`] wires it together.
//!
//! It does not own the config model (`gateway-proto`), flag parsing (`main.rs`), nor anything
//! of the data plane.

pub mod admin;
mod admin_http;
pub mod auth;
mod backoff;
pub mod config;
pub mod discovery;
pub mod metrics;
pub mod reflector;
mod server;
pub mod services;
pub mod shutdown;
pub mod store;

pub use admin::{AdminError, AdminService};
pub use config::{Config, ConfigError, ServerTls, StoreConfig, Token};
pub use discovery::{DiscoveryConfig, DiscoveryService};
pub use reflector::Reflector;
pub use server::{MAX_MESSAGE_SIZE, Server, ServerError};
pub use services::ServiceMirror;
pub use store::{EmbeddedStore, EtcdStore, Store, StoreError};

//! The end-to-end tests: one test binary, real processes (see the `integration_tests`
//! harness). Each test starts its own etcd (or embedded store), control planes, data planes
//! and backends on free ports, in temp dirs, so tests run in parallel without interfering.
//!
//! The gateway's binaries must be built first: `cargo build --workspace --bins`.

/// Keys, tokens and documents of the identity and JWKS tests.
#[path = "e2e/identity/keys.rs"]
mod keys;
#[path = "e2e/support.rs"]
mod support;

#[path = "e2e/auth.rs"]
mod auth;
#[path = "e2e/cache.rs"]
mod cache;
#[path = "e2e/cluster.rs"]
mod cluster;
#[path = "e2e/cluster_limits.rs"]
mod cluster_limits;
#[path = "e2e/discovery.rs"]
mod discovery;
#[path = "e2e/dns.rs"]
mod dns;
#[path = "e2e/external_auth.rs"]
mod external_auth;
#[path = "e2e/grpc.rs"]
mod grpc;
#[path = "e2e/identity.rs"]
mod identity;
#[path = "e2e/jwks.rs"]
mod jwks;
#[path = "e2e/mtls.rs"]
mod mtls;
#[path = "e2e/protoset.rs"]
mod protoset;
#[path = "e2e/request_validation.rs"]
mod request_validation;
#[path = "e2e/resilience.rs"]
mod resilience;
#[path = "e2e/standalone.rs"]
mod standalone;
#[path = "e2e/store.rs"]
mod store;
#[path = "e2e/tls.rs"]
mod tls;
#[path = "e2e/transcode.rs"]
mod transcode;
#[path = "e2e/validation.rs"]
mod validation;
#[path = "e2e/websocket.rs"]
mod websocket;

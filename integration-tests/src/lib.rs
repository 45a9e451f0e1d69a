//! End-to-end test harness: starts real processes (etcd, control planes, data planes, the
//! `demo-backend` echo server) on free ports, reads their real addresses back from the
//! `listening ...` line each prints on stdout, and kills them when their handle drops.
//!
//! Every handle keeps its child's stdout and stderr in a file and prints the tail of it when
//! dropped during a panic, so a failing test shows the logs of the processes it started.
//!
//! - [`bins`]: where the workspace's binaries are (`GATEWAY_BIN_DIR`, or beside the test).
//! - [`process`]: a child process with captured output, SIGTERM, kill and restart.
//! - [`etcd`]: a throw-away etcd (`ETCD_BIN` or `etcd` on `PATH`) that can stop and restart.
//! - [`control_plane`], [`data_plane`], [`backend`]: the gateway's programs and the echo server.
//! - [`dns`]: a nameserver in this process (UDP and TCP) whose answers a test sets, or fails.
//! - [`grpc_backend`]: a tonic `echo.v1.Echo` service in this process, over h2c or TLS.
//! - [`gatewayctl`]: runs the CLI and collects its exit code and output; holds a
//!   `gatewayctl register` as a child process.
//! - [`http`]: a small HTTP client for requests through a data plane.
//! - [`proxy`]: a TCP proxy whose connections can be cut, to break a watch on etcd.
//! - [`eventually`](mod@eventually): polling with a patience from `GATEWAY_TEST_PATIENCE_SECS`.
//!
//! It does not own the programs' behaviour: tests assert the contracts of `DESIGN.md`.

pub mod backend;
pub mod bins;
pub mod control_plane;
pub mod data_plane;
pub mod dns;
pub mod etcd;
pub mod eventually;
pub mod gatewayctl;
pub mod grpc_backend;
pub mod http;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod util;

pub use backend::DemoBackend;
pub use control_plane::{ControlPlane, ControlPlaneOpts, Store};
pub use data_plane::{DataPlane, DataPlaneOpts};
pub use dns::DnsServer;
pub use etcd::Etcd;
pub use eventually::{eventually, holds_for, patience, try_eventually};
pub use gatewayctl::{
    CtlOutput, Gatewayctl, Registered, applied_version, gatewayctl, resource_list,
};
pub use grpc_backend::GrpcBackend;
pub use http::{HttpResponse, KeepAlive, get, request};
pub use proxy::TcpProxy;
pub use redis::RedisServer;
pub use util::{free_port, unique_prefix, write_file};

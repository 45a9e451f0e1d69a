//! The gateway's data plane: an HTTP/1.1 + h2c reverse proxy that serves one compiled table,
//! swapped whole when the configuration changes. Layers, bottom up (no module imports one
//! above it):
//!
//! - [`config`], [`limits`], [`normalize`]: start-up settings, fixed limits, the path
//!   normaliser.
//! - [`pool`]: idle upstream connections per endpoint, for every front end; [`jwks`]: key
//!   sets fetched from identity providers in the background.
//! - [`table`]: a snapshot compiled into the immutable [`Table`] (router, rules with their
//!   filters and policies, upstreams); [`side`]: what outlives swaps (pools, split and
//!   round-robin positions, regexes, rate-limit buckets, remote key sets).
//! - [`state`]: the table behind one `ArcSwap`, the side tables, the counters, the settings.
//! - [`pipeline`]: the request phases, written once (normalise, match, policies, filters, pick
//!   an endpoint, the outcome record), and the one error type.
//! - Front ends, over any client stream (`io`: TCP, TLS): `h1` (our HTTP/1.x loop, and the
//!   HTTP/1.1 codec both front ends send upstream with) and `h2` (our HTTP/2 server
//!   connection); [`server`]: the listener, connection limits.
//! - [`subscriber`] (control planes) and [`standalone`] (a file): where tables come from;
//!   `recompile`: what both do when a DNS answer (or the registry) changes under a table;
//!   [`cache`]: the last good snapshot on disk.
//! - `admin`: `/live`, `/ready`, `/config`, `/metrics`; [`metrics`]: the counters.
//! - [`gateway`]: start-up, run, drain.
//!
//! Not here: flag parsing and tracing set-up (`main.rs`), TLS (next).

mod admin;
pub mod cache;
pub mod config;
pub mod connect;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
mod h1;
mod h2;
mod h2_client;
pub mod health;
mod io;
pub mod jwks;
pub mod limits;
pub mod metrics;
pub mod normalize;
pub mod pipeline;
pub mod pool;
mod recompile;
pub mod redis_sync;
pub mod server;
pub mod side;
pub mod standalone;
pub mod state;
pub mod subscriber;
pub mod table;
#[cfg(test)]
mod test_backend;
pub mod transcode;

pub use config::{Config, ControlPlaneConfig, SourceConfig, TrustedPeers};
pub use gateway::{Gateway, StartError};
pub use pool::EndpointPool;
pub use state::State;
pub use table::{CompileError, Source, Table};

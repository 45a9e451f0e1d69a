//! The gateway's data plane: an HTTP/1.1 + h2c reverse proxy that serves one compiled table,
//! swapped whole when the configuration changes.
//!
//! - [`config`]: what `main.rs` hands over (listeners, source, trusted peers, drain timeout).
//! - [`table`]: a snapshot compiled into the immutable [`Table`] (router, backends, upstreams).
//! - [`side`]: state keyed by upstream name that outlives swaps (round-robin, client pools).
//! - [`proxy`]: the request pipeline and its one error type; [`server`]: the listener.
//! - [`subscriber`] (control planes) and [`standalone`] (a file): where tables come from;
//!   [`cache`]: the last good snapshot on disk.
//! - `admin`: `/live`, `/ready`, `/config`, `/metrics`; [`metrics`]: the counters.
//! - [`gateway`]: start-up, run, drain.
//!
//! Not here: flag parsing and tracing set-up (`main.rs`), TLS (not yet), policies (later).

mod admin;
pub mod cache;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
mod h1;
mod h2;
pub mod limits;
pub mod metrics;
pub mod normalize;
pub mod pipeline;
pub mod pool;
pub mod server;
pub mod side;
pub mod standalone;
pub mod state;
pub mod subscriber;
pub mod table;

pub use config::{Config, ControlPlaneConfig, SourceConfig, TrustedPeers};
pub use gateway::{Gateway, StartError};
pub use pool::EndpointPool;
pub use state::State;
pub use table::{CompileError, Source, Table};

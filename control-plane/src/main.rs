//! `gateway-control-plane`: flags → config → tracing → bind → print the listening line → serve
//! → drain on SIGTERM/SIGINT.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use gateway_control_plane::{Config, DiscoveryConfig, Server, StoreConfig, Token};

/// EX_USAGE: the configuration is invalid.
const EXIT_USAGE: u8 = 64;

/// The gateway control plane: stores and validates the configuration, streams it to data planes.
#[derive(Debug, Parser)]
#[command(version)]
struct Flags {
    /// gRPC address for the admin and discovery APIs.
    #[arg(long, default_value = "127.0.0.1:18000")]
    listen: SocketAddr,
    /// HTTP address for /metrics, /live and /ready.
    #[arg(long, default_value = "127.0.0.1:18001")]
    admin_listen: SocketAddr,
    /// Use etcd at these endpoints (comma separated) instead of the embedded store.
    #[arg(long, value_delimiter = ',', value_name = "URL[,URL...]")]
    etcd_endpoints: Vec<String>,
    /// Key prefix in etcd, so that several gateways or tests share one etcd.
    #[arg(long, default_value = "/gateway/v1")]
    etcd_prefix: String,
    /// Directory of the embedded store (used without --etcd-endpoints).
    #[arg(long, default_value = "./gateway-data")]
    data_dir: PathBuf,
    /// File holding the admin API token (default: $GATEWAY_ADMIN_TOKEN).
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// File holding the data-plane token (default: $GATEWAY_DATAPLANE_TOKEN).
    #[arg(long, value_name = "FILE")]
    dataplane_token_file: Option<PathBuf>,
    /// Log format on stderr (filter from GATEWAY_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// TLS certificate chain (PEM) for the gRPC listener (admin and discovery); with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the gRPC listener.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA (PEM) that client certificates must chain to: mutual TLS for admin and data planes.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Keys that encrypt private keys at rest (AES-256-GCM), one per line as 64 hex characters;
    /// the first encrypts, all decrypt (rotation: put the new key first).
    #[arg(long, value_name = "FILE")]
    secret_key_file: Option<PathBuf>,
    /// Time allowed for in-flight requests and streams on shutdown, e.g. 10s, 500ms.
    #[arg(long, default_value = "10s", value_parser = gateway_proto::duration::parse_duration)]
    drain_timeout: Duration,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

impl Flags {
    fn into_config(self) -> Result<Config, gateway_control_plane::ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        let admin_token = Token::from_sources(
            self.admin_token_file.as_deref(),
            env("GATEWAY_ADMIN_TOKEN").as_deref(),
        )?;
        let dataplane_token = Token::from_sources(
            self.dataplane_token_file.as_deref(),
            env("GATEWAY_DATAPLANE_TOKEN").as_deref(),
        )?;
        let store = if self.etcd_endpoints.is_empty() {
            StoreConfig::Embedded { dir: self.data_dir }
        } else {
            StoreConfig::Etcd {
                endpoints: self.etcd_endpoints,
                prefix: self.etcd_prefix,
            }
        };
        let config = Config {
            listen: self.listen,
            admin_listen: self.admin_listen,
            store,
            admin_token,
            dataplane_token,
            drain_timeout: self.drain_timeout,
            discovery: DiscoveryConfig::default(),
            secret_key_file: self.secret_key_file,
            tls: match (self.tls_cert, self.tls_key) {
                (Some(cert), Some(key)) => Some(gateway_control_plane::ServerTls {
                    cert,
                    key,
                    client_ca: self.client_ca,
                }),
                _ => None,
            },
        };
        config.check()?;
        Ok(config)
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Registers the SIGTERM/SIGINT handlers now (so no early signal is lost) and resolves on the
/// first signal.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops");
                let _ = ctrl_c.await;
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let signal = shutdown_signal();
    let server = Server::bind(config).await.context("cannot start")?;
    println!(
        "listening grpc={} admin={}",
        server.grpc_addr(),
        server.admin_addr()
    );
    server.run(signal).await.context("control plane failed")
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    let log_format = flags.log_format;
    let config = match flags.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("gateway-control-plane: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_tracing(log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("gateway-control-plane: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("gateway-control-plane: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory as _;
        Flags::command().debug_assert();
        let flags = Flags::parse_from([
            "gateway-control-plane",
            "--etcd-endpoints",
            "http://a:2379,http://b:2379",
        ]);
        assert_eq!(flags.etcd_endpoints, ["http://a:2379", "http://b:2379"]);
    }
}

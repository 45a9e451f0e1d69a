//! `gateway-data-plane`: flags → config → tracing → runtime → bind → print the listening line
//! → serve until SIGTERM/SIGINT → drain.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use gateway_data_plane::{
    Config, ControlPlaneConfig, Gateway, SourceConfig, TrustedPeers,
    config::{Settings, UnderscoreHeaders},
};
use gateway_proto::duration::parse_duration;

/// The gateway's data plane: an HTTP/1.1 + h2c reverse proxy.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Plain HTTP/1.1 + h2c listener.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// TLS listener: HTTP/1.1 and HTTP/2 (ALPN), certificates chosen by SNI from the
    /// `Certificate` resources.
    #[arg(long)]
    tls_listen: Option<SocketAddr>,
    /// Admin listener for /live, /ready, /config and /metrics.
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin_listen: SocketAddr,
    /// Control plane URLs, tried in turn (e.g. http://127.0.0.1:18000).
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "config",
        required_unless_present = "config"
    )]
    control_plane: Vec<String>,
    /// File holding the data-plane token for the discovery stream.
    #[arg(long)]
    dataplane_token_file: Option<PathBuf>,
    /// The data-plane token (the file wins when both are given).
    #[arg(long, env = "GATEWAY_DATAPLANE_TOKEN", hide_env_values = true)]
    dataplane_token: Option<String>,
    /// Standalone mode: serve this resource file and reload it when it changes.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This data plane's id (default: hostname-pid).
    #[arg(long)]
    id: Option<String>,
    /// Directory of the last good snapshot.
    #[arg(long, default_value = "./gateway-cache")]
    cache_dir: PathBuf,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Peers whose X-Forwarded-* and x-request-id headers are kept (IP or CIDR, comma-separated).
    #[arg(long, value_delimiter = ',')]
    trusted_peers: Vec<String>,
    /// Time allowed for in-flight requests after SIGTERM/SIGINT.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Request header names with an underscore: dropped before anything sees them, refused
    /// with 400, or passed on.
    #[arg(long, value_enum, default_value_t = Underscores::Drop)]
    headers_with_underscores: Underscores,
    /// Client connections open at once; more are answered 503 `overloaded` and closed
    /// (0: no limit).
    #[arg(long, default_value_t = 0)]
    max_connections: usize,
    /// The CA (PEM) that `https://` control planes' certificates chain to.
    #[arg(long, value_name = "FILE")]
    control_plane_ca: Option<PathBuf>,
    /// A client certificate chain (PEM) for control planes that require mutual TLS.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Keys that encrypt the certificates' private keys in the disk cache (AES-256-GCM), one
    /// per line as 64 hex characters; the first encrypts, all decrypt. The control planes'
    /// file may be reused. Without it the cache holds them in the clear (mode 0600).
    #[arg(long, value_name = "FILE")]
    secret_key_file: Option<PathBuf>,
    /// Requests in flight at once; more get 503 `overloaded` with Retry-After (0: no limit).
    #[arg(long, default_value_t = 0)]
    max_requests: usize,
    /// Redis for Cluster rate limits (`redis://host:port/db`); without it each data plane
    /// enforces its share of them alone.
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// How often Cluster rate limits are synced with Redis: the bound on how much the data
    /// planes together can overshoot.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    redis_sync_interval: Duration,
    /// Data planes sharing Cluster rate limits, until Redis counts them: each enforces
    /// 1/N of a limit while Redis cannot be reached.
    #[arg(long, default_value_t = 1)]
    cluster_size: u64,
    /// How often upstream endpoints' DNS names are resolved again (sooner when their records'
    /// TTL is shorter, but not more than once a second); every A and AAAA address becomes an
    /// endpoint, and a failed lookup keeps the last good answer. `0s` or `off`: names are
    /// resolved at each connect instead.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_refresh)]
    dns_refresh: Refresh,
    /// The nameserver to ask for endpoints' names (UDP and TCP; `IP` or `IP:PORT`, port 53 by
    /// default) instead of the system's (/etc/resolv.conf).
    #[arg(long, value_name = "ADDR", value_parser = parse_nameserver)]
    dns_server: Option<SocketAddr>,
    /// Log format on stderr (filter from GATEWAY_LOG, default `info,rustls=error`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `--dns-refresh`: a duration, or none.
#[derive(Clone, Copy, Debug)]
struct Refresh(Option<Duration>);

fn parse_refresh(text: &str) -> Result<Refresh, String> {
    if text == "off" {
        return Ok(Refresh(None));
    }
    let every = parse_duration(text)?;
    if !every.is_zero() && every < Duration::from_millis(100) {
        return Err("at least 100ms (or 0s/off to turn re-resolution off)".to_owned());
    }
    Ok(Refresh(Some(every).filter(|d| !d.is_zero())))
}

fn parse_nameserver(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("{text:?} is not IP or IP:PORT"))
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Underscores {
    Drop,
    Reject,
    Allow,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(args.log_format);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 0 {
        bail!("--workers must be at least 1");
    }
    if let Some(url) = &args.redis_url {
        redis::Client::open(url.as_str()).with_context(|| format!("--redis-url {url:?}"))?;
    }
    if args.redis_sync_interval.is_zero() || args.cluster_size == 0 {
        bail!("--redis-sync-interval and --cluster-size must be above 0");
    }
    let config = config(args)?;
    // One worker: a current-thread runtime (no work-stealing bookkeeping, no cross-thread
    // wake-ups), which costs less CPU per request; more: the multi-thread scheduler.
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    let runtime = builder
        .thread_name("gateway-worker")
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let result = runtime.block_on(async move {
        let gateway = Gateway::bind(config).await?;
        let http = gateway.http_addr()?;
        let admin = gateway.admin_addr()?;
        match gateway.tls_addr().transpose()? {
            Some(tls) => {
                println!("listening http={http} admin={admin} tls={tls}");
                tracing::info!(%http, %admin, %tls, workers, "listening");
            }
            None => {
                println!("listening http={http} admin={admin}");
                tracing::info!(%http, %admin, workers, "listening");
            }
        }
        gateway.run(shutdown_signal()).await;
        Ok(())
    });
    // Do not wait on a file poll or a compile still running on a blocking thread.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

fn config(args: Args) -> anyhow::Result<Config> {
    let trusted_peers = TrustedPeers::parse(args.trusted_peers.iter().map(String::as_str))
        .context("--trusted-peers")?;
    let source = match args.config {
        Some(path) => SourceConfig::File(path),
        None => {
            let text = args
                .dataplane_token_file
                .as_ref()
                .map(|path| {
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))
                })
                .transpose()?;
            let token = gateway_proto::token::choose_token(
                text.as_deref(),
                args.dataplane_token.as_deref(),
            )
            .context("--dataplane-token-file / GATEWAY_DATAPLANE_TOKEN")?;
            let read = |path: &PathBuf| {
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
            };
            if args
                .control_plane
                .iter()
                .any(|url| url.starts_with("https://"))
                && args.control_plane_ca.is_none()
            {
                bail!(
                    "an https:// control plane needs --control-plane-ca (the CA its certificate chains to)"
                );
            }
            let tls = gateway_data_plane::config::ControlPlaneTls {
                ca: args.control_plane_ca.as_ref().map(read).transpose()?,
                identity: match (&args.client_cert, &args.client_key) {
                    (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                    _ => None,
                },
            };
            SourceConfig::ControlPlane(ControlPlaneConfig {
                urls: args.control_plane,
                token,
                id: args.id.unwrap_or_else(default_id),
                cache_dir: args.cache_dir,
                tls,
            })
        }
    };
    let cache_keys = match &args.secret_key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--secret-key-file {}", path.display()))?;
            let keys = gateway_proto::secret::SecretKeys::parse(&text)
                .with_context(|| format!("--secret-key-file {}", path.display()))?;
            Some(std::sync::Arc::new(keys))
        }
        None => None,
    };
    Ok(Config {
        listen: args.listen,
        tls_listen: args.tls_listen,
        admin_listen: args.admin_listen,
        source,
        settings: Settings {
            trusted_peers,
            underscore_headers: match args.headers_with_underscores {
                Underscores::Drop => UnderscoreHeaders::Drop,
                Underscores::Reject => UnderscoreHeaders::Reject,
                Underscores::Allow => UnderscoreHeaders::Allow,
            },
            max_requests: args.max_requests,
            max_connections: args.max_connections,
            cache_keys,
            dns: gateway_data_plane::config::DnsSettings {
                refresh: args.dns_refresh.0,
                server: args.dns_server,
            },
        },
        drain_timeout: args.drain_timeout,
        redis: args
            .redis_url
            .map(|url| gateway_data_plane::redis_sync::RedisSync {
                url,
                interval: args.redis_sync_interval,
            }),
        cluster_size: args.cluster_size,
    })
}

fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "data-plane".to_owned());
    format!("{host}-{}", std::process::id())
}

fn init_tracing(format: LogFormat) {
    // rustls warns about what peers send (an IP address as SNI, say): any client could have
    // every handshake write a log line. Failed handshakes are logged by us, at debug.
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the data plane");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

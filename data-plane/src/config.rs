//! What the data plane is told at start-up: listeners, where its configuration comes from, and
//! the few knobs of the request path. Built by `main.rs` from flags; the library never parses
//! flags itself.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use gateway_proto::net::{BadCidr, Cidr};

/// Everything the data plane needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Plain HTTP/1.1 + h2c listener.
    pub listen: SocketAddr,
    /// TLS listener (HTTP/1.1 and HTTP/2 by ALPN), serving the `Certificate` resources.
    pub tls_listen: Option<SocketAddr>,
    /// Admin HTTP listener (`/live`, `/ready`, `/config`, `/metrics`).
    pub admin_listen: SocketAddr,
    /// Where the routing configuration comes from.
    pub source: SourceConfig,
    /// The request path's settings (trusted peers, underscores, overload limits).
    pub settings: Settings,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub drain_timeout: Duration,
    /// Where Cluster rate limits are shared (`--redis-url`), and how often.
    pub redis: Option<RedisSync>,
    /// The data planes sharing Cluster rate limits, until Redis has counted them: each one's
    /// share of a limit while Redis cannot be reached.
    pub cluster_size: u64,
}

/// Where Cluster rate limits are shared, and how often they are synced.
#[derive(Clone, Debug)]
pub struct RedisSync {
    pub url: String,
    pub interval: Duration,
}

/// The origin of the routing configuration.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    /// Subscribe to control planes, caching the last good snapshot on disk.
    ControlPlane(ControlPlaneConfig),
    /// Standalone: serve one resource file and reload it when it changes.
    File(PathBuf),
}

/// How to reach the control planes.
#[derive(Clone, Debug)]
pub struct ControlPlaneConfig {
    /// Control plane URLs (`http://host:port`), tried in turn.
    pub urls: Vec<String>,
    /// The data-plane token, sent as `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// This data plane's id, reported in `Hello`.
    pub id: String,
    /// Directory of the last good snapshot.
    pub cache_dir: PathBuf,
    /// TLS to `https://` control planes.
    pub tls: ControlPlaneTls,
}

/// How a data plane checks `https://` control planes, and proves itself to them (PEM).
#[derive(Clone, Debug, Default)]
pub struct ControlPlaneTls {
    /// The CA the control planes' certificates chain to (`--control-plane-ca`); none: the
    /// system's roots.
    pub ca: Option<Vec<u8>>,
    /// A client certificate chain and key, for control planes that require mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// What to do with a request header whose name has an underscore (`x_user`). Some backends
/// read `_` as `-` (CGI-style servers do), so `Transfer_Encoding` next to `Content-Length` can
/// frame a body differently there than here: a request smuggled past the gateway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnderscoreHeaders {
    /// Drop the header before anything sees it (nginx's default).
    #[default]
    Drop,
    /// Refuse the request with 400.
    Reject,
    /// Pass it on.
    Allow,
}

/// Request-path settings from the command line.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Peers whose `X-Forwarded-*` and `x-request-id` headers are kept.
    pub trusted_peers: TrustedPeers,
    pub underscore_headers: UnderscoreHeaders,
    /// Requests in flight at once; more get 503 `overloaded` (0: no limit).
    pub max_requests: usize,
    /// Client connections open at once; more are answered 503 and closed (0: no limit).
    pub max_connections: usize,
    /// Keys that seal the certificates' private keys in the disk cache (`--secret-key-file`);
    /// none: the cache holds them in the clear, in a file only its owner can read.
    pub cache_keys: Option<std::sync::Arc<gateway_proto::secret::SecretKeys>>,
    /// How endpoints' DNS names are re-resolved (off by default: each connect resolves).
    pub dns: DnsSettings,
}

/// How the DNS names of upstream endpoints are re-resolved in the background.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsSettings {
    /// How often a name is asked again (sooner when its records' TTL is shorter); `None`:
    /// never, and every connect resolves the name through the system instead.
    pub refresh: Option<Duration>,
    /// The nameserver to ask (UDP, and TCP for long answers) instead of the system's
    /// (`/etc/resolv.conf`).
    pub server: Option<SocketAddr>,
}

/// The peers whose forwarding headers are believed: a set of IP networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedPeers(Vec<Cidr>);

// === impl TrustedPeers ===

impl TrustedPeers {
    /// Parses `IP` or `IP/prefix` items (empty items are skipped).
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, BadCidr> {
        items
            .into_iter()
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is inside one of the networks (IPv4-mapped IPv6 peers count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_peers() {
        let peers = TrustedPeers::parse(["10.0.0.0/8", "::1", "192.168.1.7"]).unwrap();
        assert!(peers.contains("10.1.2.3".parse().unwrap()));
        assert!(!peers.contains("11.1.2.3".parse().unwrap()));
        assert!(peers.contains("::1".parse().unwrap()));
        assert!(peers.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(peers.contains("192.168.1.7".parse().unwrap()));
        assert!(!peers.contains("192.168.1.8".parse().unwrap()));
        let all = TrustedPeers::parse(["0.0.0.0/0"]).unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        assert!(TrustedPeers::parse(["10.0.0.0/33"]).is_err());
        assert!(TrustedPeers::parse(["nope"]).is_err());
        assert!(TrustedPeers::default().is_empty());
    }
}

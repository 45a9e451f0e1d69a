//! What the data plane is told at start-up: listeners, where its configuration comes from, and
//! the few knobs of the request path. Built by `main.rs` from flags; the library never parses
//! flags itself.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

/// Everything the data plane needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Plain HTTP/1.1 + h2c listener.
    pub listen: SocketAddr,
    /// Admin HTTP listener (`/live`, `/ready`, `/config`, `/metrics`).
    pub admin_listen: SocketAddr,
    /// Where the routing configuration comes from.
    pub source: SourceConfig,
    /// Peers whose `X-Forwarded-*` and `x-request-id` headers are kept.
    pub trusted_peers: TrustedPeers,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub drain_timeout: Duration,
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
}

/// A set of IP networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedPeers(Vec<(IpAddr, u8)>);

/// A network that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{value:?} is not an IP address or CIDR network (e.g. 10.0.0.0/8)")]
pub struct BadNetwork {
    value: String,
}

// === impl TrustedPeers ===

impl TrustedPeers {
    /// Parses `IP` or `IP/prefix` items.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, BadNetwork> {
        let mut networks = Vec::new();
        for item in items {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let bad = || BadNetwork {
                value: item.to_owned(),
            };
            let (ip, len) = match item.split_once('/') {
                Some((ip, len)) => {
                    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
                    let len: u8 = len.parse().map_err(|_| bad())?;
                    (ip, len)
                }
                None => {
                    let ip: IpAddr = item.parse().map_err(|_| bad())?;
                    (ip, if ip.is_ipv4() { 32 } else { 128 })
                }
            };
            let max = if ip.is_ipv4() { 32 } else { 128 };
            if len > max {
                return Err(bad());
            }
            networks.push((ip, len));
        }
        Ok(Self(networks))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is inside one of the networks (IPv4-mapped IPv6 peers count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|&(net, len)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        })
    }
}

/// Parses a duration such as `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration (e.g. 10s, 500ms)"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("{value:?}: unknown unit (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{value:?}: {e}"))
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

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 days").is_err());
    }
}

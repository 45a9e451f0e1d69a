//! The lookups: hickory's resolver, asking the system's nameservers (`/etc/resolv.conf`, with
//! its search domains and options, as getaddrinfo would) or the one `--dns-server` names, over
//! UDP and TCP. Its own cache is off: the side table keeps the last good answer, and each
//! refresh must reach the nameserver to see a change.
//!
//! `localhost` (and its subdomains, RFC 6761) and names in `/etc/hosts` (read once, at
//! start-up) are static: they are not re-resolved but left to connect-time resolution, which
//! reads the hosts file at every connect and tries each address in turn. Expanding `localhost`
//! into `127.0.0.1` and `::1` would send half the requests to an address that most local
//! backends do not listen on.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use hickory_resolver::{
    Hosts, TokioResolver,
    config::{LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts},
    net::runtime::TokioRuntimeProvider,
    proto::{
        op::Query,
        rr::{Name, RecordType},
    },
};

/// A lookup's answer never waits longer than this per try, however long the refresh.
const MAX_TIMEOUT: Duration = Duration::from_secs(5);
/// Nor less, however short the refresh.
const MIN_TIMEOUT: Duration = Duration::from_millis(500);

/// The resolver of one data plane.
pub(super) struct Resolver {
    resolver: TokioResolver,
    hosts: Hosts,
    /// The whole lookup (A and AAAA, every nameserver) gives up after this.
    deadline: Duration,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver asking `server`, or the system's nameservers; a try times out after the
    /// refresh (within 0.5 to 5 s), and a failed lookup is tried again at the next refresh
    /// rather than at once.
    pub(super) fn new(server: Option<SocketAddr>, refresh: Duration) -> Result<Self, String> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match server {
            Some(server) => {
                let mut nameserver = NameServerConfig::udp_and_tcp(server.ip());
                for connection in &mut nameserver.connections {
                    connection.port = server.port();
                }
                let config = ResolverConfig::from_name_servers(vec![nameserver]);
                TokioResolver::builder_with_config(config, provider)
            }
            None => TokioResolver::builder(provider)
                .map_err(|e| format!("cannot read the system's resolver configuration: {e}"))?,
        };
        let timeout = refresh.clamp(MIN_TIMEOUT, MAX_TIMEOUT);
        let options: &mut ResolverOpts = builder.options_mut();
        options.timeout = timeout;
        options.attempts = 1;
        options.cache_size = 0;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        // Hosts-file names never get this far (they are static); asking DNS for a name the
        // hosts file lost since start-up is what getaddrinfo would do too.
        options.use_hosts_file = ResolveHosts::Never;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        let hosts = Hosts::from_system().unwrap_or_else(|error| {
            tracing::debug!(%error, "no hosts file");
            Hosts::default()
        });
        Ok(Self {
            resolver,
            hosts,
            // A and AAAA go out together; UDP, then TCP for a truncated answer.
            deadline: timeout * 2 + Duration::from_secs(1),
        })
    }

    /// Whether `host` is left to connect-time resolution: `localhost` and the hosts file's
    /// names.
    pub(super) fn is_static(&self, host: &str) -> bool {
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        if lower == "localhost" || lower.ends_with(".localhost") {
            return true;
        }
        let Ok(name) = Name::from_ascii(host) else {
            return false;
        };
        let name = name.to_lowercase();
        [RecordType::A, RecordType::AAAA].into_iter().any(|kind| {
            self.hosts
                .lookup_static_host(&Query::query(name.clone(), kind))
                .is_some()
        })
    }

    /// Every A and AAAA address of `host`, with `port`, and how long the records may be kept
    /// (their smallest TTL).
    pub(super) async fn lookup(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(Vec<SocketAddr>, Option<Duration>), String> {
        let lookup = tokio::time::timeout(self.deadline, self.resolver.lookup_ip(host))
            .await
            .map_err(|_| format!("no answer within {:?}", self.deadline))?
            .map_err(|e| e.to_string())?;
        let ttl = lookup.valid_until().checked_duration_since(Instant::now());
        let addresses = lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        Ok((addresses, ttl))
    }
}

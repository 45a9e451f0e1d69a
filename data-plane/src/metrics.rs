//! Counters for `/metrics`: relaxed atomics, one add per request on the hot path, rendered as
//! Prometheus text only when scraped.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::table::{Source, Table};

/// A failure reaching an upstream, by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// Refused, reset or closed (502).
    Unavailable,
    /// No response headers in time, or no connection in time (504).
    Timeout,
    /// Every endpoint drained (503).
    NoHealthy,
}

/// The data plane's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Responses by status class: index 1 is 1xx ... 5 is 5xx, 0 anything else.
    responses: [AtomicU64; 6],
    upstream_failures: [AtomicU64; 3],
    swaps: AtomicU64,
    rejected: AtomicU64,
}

// === impl Metrics ===

impl Metrics {
    /// A response by its status code (counted from the outcome record).
    #[inline]
    pub fn response_status(&self, status: u16) {
        let class = usize::from(status / 100);
        let index = if class < 6 { class } else { 0 };
        self.responses[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn upstream_failure(&self, failure: UpstreamFailure) {
        self.upstream_failures[failure as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn swapped(&self) {
        self.swaps.fetch_add(1, Ordering::Relaxed);
    }

    /// A configuration was refused (a NACK, or a bad edit of the file).
    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Relaxed)
    }

    pub fn rejections(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self, table: Option<&Table>) -> String {
        let mut out = String::with_capacity(1024);
        out.push_str("# HELP gateway_requests_total Responses sent, by status class.\n");
        out.push_str("# TYPE gateway_requests_total counter\n");
        for (i, class) in ["other", "1xx", "2xx", "3xx", "4xx", "5xx"]
            .iter()
            .enumerate()
        {
            let n = self.responses[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "gateway_requests_total{{class=\"{class}\"}} {n}");
        }
        out.push_str(
            "# HELP gateway_upstream_errors_total Failed attempts to reach an upstream.\n",
        );
        out.push_str("# TYPE gateway_upstream_errors_total counter\n");
        for (i, kind) in ["unavailable", "timeout", "no_healthy"].iter().enumerate() {
            let n = self.upstream_failures[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "gateway_upstream_errors_total{{kind=\"{kind}\"}} {n}");
        }
        let (version, source, routes, upstreams) = match table {
            Some(t) => (
                t.version(),
                source_name(t.source()),
                t.routes(),
                t.upstreams().count(),
            ),
            None => (0, "none", 0, 0),
        };
        let _ = write!(
            out,
            "# HELP gateway_config_version The version of the configuration being served.\n\
             # TYPE gateway_config_version gauge\n\
             gateway_config_version{{source=\"{source}\"}} {version}\n\
             # HELP gateway_config_routes Routes in the configuration being served.\n\
             # TYPE gateway_config_routes gauge\n\
             gateway_config_routes {routes}\n\
             # HELP gateway_config_upstreams Upstreams in the configuration being served.\n\
             # TYPE gateway_config_upstreams gauge\n\
             gateway_config_upstreams {upstreams}\n\
             # HELP gateway_config_swaps_total Configurations swapped in.\n\
             # TYPE gateway_config_swaps_total counter\n\
             gateway_config_swaps_total {}\n\
             # HELP gateway_config_nacks_total Configurations refused (NACKs and bad file edits).\n\
             # TYPE gateway_config_nacks_total counter\n\
             gateway_config_nacks_total {}\n",
            self.swaps(),
            self.rejections(),
        );
        out
    }
}

/// The Cluster rate limits' link to Redis.
pub fn render_cluster(link: &crate::side::shared_limits::ClusterLink, out: &mut String) {
    let _ = write!(
        out,
        "# HELP gateway_redis_up Whether Redis answered the last sync of Cluster rate limits.\n\
         # TYPE gateway_redis_up gauge\n\
         gateway_redis_up {}\n\
         # HELP gateway_redis_sync_failures_total Syncs of Cluster rate limits Redis did not answer.\n\
         # TYPE gateway_redis_sync_failures_total counter\n\
         gateway_redis_sync_failures_total {}\n\
         # HELP gateway_redis_calls_total Script calls made to Redis by the syncs.\n\
         # TYPE gateway_redis_calls_total counter\n\
         gateway_redis_calls_total {}\n\
         # HELP gateway_cluster_data_planes Data planes sharing Cluster rate limits, as last counted.\n\
         # TYPE gateway_cluster_data_planes gauge\n\
         gateway_cluster_data_planes {}\n",
        u8::from(link.is_up()),
        link.failed_syncs.load(Ordering::Relaxed),
        link.calls.load(Ordering::Relaxed),
        link.data_planes(),
    );
}

/// The lookups of endpoints' DNS names.
pub fn render_dns(dns: &crate::side::dns::Dns, out: &mut String) {
    let (successes, failures) = dns.resolutions();
    let _ = write!(
        out,
        "# HELP gateway_dns_resolutions_total Lookups of endpoints' DNS names, by result (a failure keeps the last good answer).\n\
         # TYPE gateway_dns_resolutions_total counter\n\
         gateway_dns_resolutions_total{{result=\"success\"}} {successes}\n\
         gateway_dns_resolutions_total{{result=\"failure\"}} {failures}\n\
         # HELP gateway_dns_names Endpoints' DNS names being re-resolved.\n\
         # TYPE gateway_dns_names gauge\n\
         gateway_dns_names {}\n",
        dns.watched(),
    );
}

/// The name of a source in `/config` and `/metrics`.
pub fn source_name(source: Source) -> &'static str {
    match source {
        Source::ControlPlane => "control-plane",
        Source::Cache => "cache",
        Source::File => "file",
    }
}

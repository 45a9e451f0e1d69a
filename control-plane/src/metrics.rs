//! The control plane's metrics, rendered in the Prometheus text format on `/metrics`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

/// Counters and gauges, updated by the services and read by the admin HTTP server.
#[derive(Debug, Default)]
pub struct Metrics {
    config_version: AtomicI64,
    connected_dataplanes: AtomicI64,
    relists: AtomicU64,
    snapshot_builds: AtomicU64,
    snapshot_build_nanos: AtomicU64,
    snapshots_sent: AtomicU64,
    acks: AtomicU64,
    nacks: AtomicU64,
    registered_instances: AtomicI64,
    skipped_instances: AtomicU64,
    admin_requests: Mutex<BTreeMap<(&'static str, String), u64>>,
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub(crate) fn set_config_version(&self, version: i64) {
        self.config_version.store(version, Relaxed);
    }

    pub(crate) fn relisted(&self) {
        self.relists.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot_built(&self, took: Duration) {
        self.snapshot_builds.fetch_add(1, Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.snapshot_build_nanos.fetch_add(nanos, Relaxed);
    }

    pub(crate) fn dataplane_connected(&self) {
        self.connected_dataplanes.fetch_add(1, Relaxed);
    }

    pub(crate) fn dataplane_disconnected(&self) {
        self.connected_dataplanes.fetch_sub(1, Relaxed);
    }

    pub(crate) fn snapshot_sent(&self) {
        self.snapshots_sent.fetch_add(1, Relaxed);
    }

    pub(crate) fn answered(&self, ack: bool) {
        if ack { &self.acks } else { &self.nacks }.fetch_add(1, Relaxed);
    }

    pub(crate) fn set_registered_instances(&self, count: usize) {
        self.registered_instances
            .store(i64::try_from(count).unwrap_or(i64::MAX), Relaxed);
    }

    pub(crate) fn instance_skipped(&self) {
        self.skipped_instances.fetch_add(1, Relaxed);
    }

    pub(crate) fn admin_request(&self, method: &'static str, code: tonic::Code) {
        let mut requests = self
            .admin_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *requests.entry((method, format!("{code:?}"))).or_default() += 1;
    }

    pub(crate) fn auth_failure(&self, service: &'static str) {
        let mut failures = self.auth_failures.lock().unwrap_or_else(|p| p.into_inner());
        *failures.entry(service).or_default() += 1;
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut one = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        one(
            "gateway_cp_config_version",
            "gauge",
            "The config version of the newest snapshot.",
            self.config_version.load(Relaxed).to_string(),
        );
        one(
            "gateway_cp_connected_dataplanes",
            "gauge",
            "Data planes with an open discovery stream to this control plane.",
            self.connected_dataplanes.load(Relaxed).to_string(),
        );
        one(
            "gateway_cp_relists_total",
            "counter",
            "Times the reflector listed the store again after a broken or compacted watch.",
            self.relists.load(Relaxed).to_string(),
        );
        one(
            "gateway_cp_snapshots_sent_total",
            "counter",
            "Snapshots sent to data planes.",
            self.snapshots_sent.load(Relaxed).to_string(),
        );
        one(
            "gateway_cp_acks_total",
            "counter",
            "Snapshots acknowledged by data planes.",
            self.acks.load(Relaxed).to_string(),
        );
        one(
            "gateway_cp_nacks_total",
            "counter",
            "Snapshots refused by data planes.",
            self.nacks.load(Relaxed).to_string(),
        );
        one(
            "gateway_cp_registered_instances",
            "gauge",
            "Service instances in the registry that data planes are sent.",
            self.registered_instances.load(Relaxed).to_string(),
        );
        one(
            "gateway_cp_registry_values_skipped_total",
            "counter",
            "Registry entries skipped for a value that is not the registry's JSON or a bad address.",
            self.skipped_instances.load(Relaxed).to_string(),
        );
        let seconds = Duration::from_nanos(self.snapshot_build_nanos.load(Relaxed)).as_secs_f64();
        let _ = writeln!(
            out,
            "# HELP gateway_cp_snapshot_build_seconds Time spent building snapshots.\n\
             # TYPE gateway_cp_snapshot_build_seconds summary\n\
             gateway_cp_snapshot_build_seconds_sum {seconds}\n\
             gateway_cp_snapshot_build_seconds_count {}",
            self.snapshot_builds.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP gateway_cp_admin_requests_total Admin API requests by method and status code.\n\
             # TYPE gateway_cp_admin_requests_total counter"
        );
        let requests = self
            .admin_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for ((method, code), count) in requests.iter() {
            let _ = writeln!(
                out,
                "gateway_cp_admin_requests_total{{method=\"{method}\",code=\"{code}\"}} {count}"
            );
        }
        drop(requests);
        let _ = writeln!(
            out,
            "# HELP gateway_cp_auth_failures_total Requests refused for a missing or wrong token.\n\
             # TYPE gateway_cp_auth_failures_total counter"
        );
        let failures = self.auth_failures.lock().unwrap_or_else(|p| p.into_inner());
        for (service, count) in failures.iter() {
            let _ = writeln!(
                out,
                "gateway_cp_auth_failures_total{{service=\"{service}\"}} {count}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_format() {
        let metrics = Metrics::default();
        metrics.set_config_version(42);
        metrics.admin_request("Apply", tonic::Code::Ok);
        metrics.admin_request("Apply", tonic::Code::Ok);
        metrics.auth_failure("admin");
        let text = metrics.render();
        assert!(text.contains("gateway_cp_config_version 42\n"), "{text}");
        assert!(
            text.contains("gateway_cp_admin_requests_total{method=\"Apply\",code=\"Ok\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("gateway_cp_auth_failures_total{service=\"admin\"} 1\n"));
        assert!(text.contains("# TYPE gateway_cp_relists_total counter\n"));
    }
}

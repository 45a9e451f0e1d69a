//! Resource documents and checks shared by the tests.

use std::net::SocketAddr;

use integration_tests::{
    ControlPlane, ControlPlaneOpts, DataPlane, DataPlaneOpts, Etcd, Gatewayctl, HttpResponse,
    eventually, unique_prefix,
};

/// An Upstream document.
pub(crate) fn upstream(name: &str, endpoints: &[SocketAddr]) -> String {
    upstream_with(name, endpoints, "")
}

/// An Upstream document with extra spec lines (already indented by two spaces).
pub(crate) fn upstream_with(name: &str, endpoints: &[SocketAddr], extra_spec: &str) -> String {
    let mut doc = format!("kind: Upstream\nname: {name}\nspec:\n  endpoints:\n");
    for endpoint in endpoints {
        doc.push_str(&format!("    - address: {endpoint}\n"));
    }
    doc.push_str(extra_spec);
    doc
}

/// A Route document: `PathPrefix prefix` to `upstream`.
pub(crate) fn route(name: &str, prefix: &str, upstream: &str) -> String {
    format!(
        "kind: Route\nname: {name}\nspec:\n  rules:\n    - matches:\n        - path: {{ type: PathPrefix, value: {prefix} }}\n      backendRefs:\n        - name: {upstream}\n"
    )
}

/// Documents joined into one multi-document YAML file.
pub(crate) fn docs<S: AsRef<str>>(parts: &[S]) -> String {
    parts
        .iter()
        .map(|p| p.as_ref().trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n---\n")
        + "\n"
}

/// Checks that `response` is demo-backend `backend`'s echo of a request for `path`.
pub(crate) fn check_echo(response: &HttpResponse, backend: &str, path: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        response.status == 200,
        "status {}: {}",
        response.status,
        response.text()
    );
    let json = response.json()?;
    anyhow::ensure!(
        json["backend"] == backend && json["path"] == path,
        "expected backend {backend:?} echoing {path:?}, got {json}"
    );
    Ok(())
}

/// Waits until `GET path` through `dp` is answered by `backend`.
pub(crate) async fn wait_served(dp: &DataPlane, path: &str, backend: &str) {
    let what = format!("{path} through data plane {} to reach {backend}", dp.id());
    eventually(&what, || async {
        let response = dp.get(path).await?;
        check_echo(&response, backend, path.split('?').next().unwrap_or(path))
    })
    .await;
}

/// Waits until `GET path` through `dp` answers `status`.
pub(crate) async fn wait_status(dp: &DataPlane, path: &str, status: u16) -> HttpResponse {
    dp.wait_status(path, status).await
}

/// An integer that proto3 JSON may have written as a number or a string.
pub(crate) fn json_i64(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Waits until `ctl`'s `dataplanes` lists every id in `ids`.
pub(crate) async fn wait_connected(ctl: &Gatewayctl, ids: &[&str]) {
    eventually(&format!("data planes {ids:?} to be registered"), || async {
        let listing = ctl.dataplanes().await;
        let listed: Vec<&str> = listing["dataPlanes"]
            .as_array()
            .map(|planes| planes.iter().filter_map(|p| p["id"].as_str()).collect())
            .unwrap_or_default();
        for id in ids {
            anyhow::ensure!(listed.contains(id), "{id} not in {listing}");
        }
        Ok(())
    })
    .await;
}

/// The `dataplanes` entry of data plane `id`.
pub(crate) async fn dataplane_entry(ctl: &Gatewayctl, id: &str) -> Option<serde_json::Value> {
    let listing = ctl.dataplanes().await;
    listing["dataPlanes"]
        .as_array()?
        .iter()
        .find(|p| p["id"] == id)
        .cloned()
}

/// etcd, one control plane on it (own prefix) and `n` data planes fed by it.
pub(crate) struct Cluster {
    pub(crate) dps: Vec<DataPlane>,
    pub(crate) cp: ControlPlane,
    pub(crate) etcd: Etcd,
}

impl Cluster {
    pub(crate) async fn start(n: usize) -> Cluster {
        let etcd = Etcd::start().await;
        let cp =
            ControlPlane::start(ControlPlaneOpts::etcd(etcd.endpoint(), unique_prefix())).await;
        let mut dps = Vec::new();
        for _ in 0..n {
            dps.push(DataPlane::start(DataPlaneOpts::control_planes([cp.url()])).await);
        }
        Cluster { dps, cp, etcd }
    }
}

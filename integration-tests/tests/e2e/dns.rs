//! DNS names in Upstream endpoints, re-resolved by the data plane (`--dns-server` pointed at
//! the harness's nameserver, `--dns-refresh` short): every address of a name's answer is an
//! endpoint; a changed answer moves the traffic within a couple of refreshes, in standalone
//! mode and from a control plane (even with the control plane gone); a failing nameserver
//! (SERVFAIL, then silence) leaves the traffic on the last good answer; `/config` shows each
//! name's addresses. Two demo backends share one port on 127.0.0.1 and 127.0.0.2.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
};

use integration_tests::{
    ControlPlane, ControlPlaneOpts, DataPlane, DataPlaneOpts, DemoBackend, DnsServer, eventually,
    get, write_file,
};

use crate::support::{docs, route};

const NAME: &str = "api.test";
/// Half a second: the refresh a test may set (`--dns-refresh` takes 100 ms and up).
const REFRESH: &str = "500ms";
const FIRST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const SECOND: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Two demo backends on the same port, at 127.0.0.1 and 127.0.0.2.
async fn pair(names: [&str; 2]) -> (DemoBackend, DemoBackend) {
    let mut last = None;
    for _ in 0..5 {
        let first = DemoBackend::start_at(names[0], (FIRST, 0).into())
            .await
            .unwrap_or_else(|e| panic!("demo-backend did not start: {e:#}"));
        match DemoBackend::start_at(names[1], (SECOND, first.addr().port()).into()).await {
            Ok(second) => return (first, second),
            // The port is taken on 127.0.0.2: another one.
            Err(error) => last = Some(error),
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2: {last:?}");
}

/// An Upstream whose one endpoint is `api.test:<port>`, and a route to it.
fn config(port: u16) -> String {
    docs(&[
        format!("kind: Upstream\nname: api\nspec:\n  endpoints:\n    - address: {NAME}:{port}\n"),
        route("api", "/api", "api"),
    ])
}

/// A data plane that asks `dns` for names, every half second.
fn with_dns(opts: DataPlaneOpts, dns: &DnsServer) -> DataPlaneOpts {
    opts.arg("--dns-server")
        .arg(dns.addr().to_string())
        .arg("--dns-refresh")
        .arg(REFRESH)
}

/// Who answers `/api/x` over `n` requests: backend names, or the status and body.
async fn answers(dp: &DataPlane, n: usize) -> anyhow::Result<BTreeSet<String>> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let response = dp.get("/api/x").await?;
        let from = response
            .json()
            .ok()
            .and_then(|json| json["backend"].as_str().map(str::to_owned));
        seen.insert(from.unwrap_or_else(|| format!("{} {}", response.status, response.text())));
    }
    Ok(seen)
}

/// Waits until the data plane serves the first answer of `api.test:<port>` (`/config`): before
/// it, requests would resolve the name at connect time through the system's resolver, which
/// does not know it.
async fn wait_first_answer(dp: &DataPlane, port: u16) {
    eventually("the first DNS answer to be served", || async {
        let json = dp.config().await?.json()?;
        let entry = &json["dns"][format!("{NAME}:{port}")];
        let answered = entry["addresses"].as_array().is_some_and(|a| !a.is_empty());
        anyhow::ensure!(answered && entry["served"] == true, "/config: {json}");
        Ok(())
    })
    .await;
}

/// Waits until 8 requests in a row are answered by exactly `expected` (round robin
/// alternates, so 8 from one backend means no other is left).
async fn wait_answered_by(dp: &DataPlane, expected: &[&str]) {
    let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    eventually(
        &format!("/api/x to be answered by {expected:?}"),
        || async {
            let seen = answers(dp, 8).await?;
            anyhow::ensure!(seen == expected, "answered by {seen:?}");
            Ok(())
        },
    )
    .await;
}

/// Checks that 8 requests in a row are answered by `backend` alone.
async fn assert_answered_by(dp: &DataPlane, backend: &str) {
    let seen = answers(dp, 8).await.unwrap();
    assert_eq!(seen, BTreeSet::from([backend.to_owned()]));
}

/// The `/config` entry of `api.test:<port>`.
async fn name_entry(dp: &DataPlane, port: u16) -> serde_json::Value {
    let json = dp.config().await.unwrap().json().unwrap();
    json["dns"][format!("{NAME}:{port}")].clone()
}

/// The data plane's count of failed lookups (`gateway_dns_resolutions_total`).
async fn failed_lookups(dp: &DataPlane) -> anyhow::Result<u64> {
    let metrics = get(&dp.admin_url("/metrics"), &[]).await?.text();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("gateway_dns_resolutions_total{result=\"failure\"} "))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no failure count in\n{metrics}"))
}

fn addresses(port: u16, ips: &[IpAddr]) -> serde_json::Value {
    ips.iter().map(|ip| format!("{ip}:{port}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_names_follow_their_answers_and_keep_the_last_through_failures() {
    let dns = DnsServer::start().await;
    dns.set(NAME, &[SECOND, FIRST]);
    let (a, b) = pair(["dns-a", "dns-b"]).await;
    let port = a.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    write_file(&file, config(port));
    let dp = DataPlane::start(with_dns(DataPlaneOpts::standalone(&file), &dns)).await;
    wait_first_answer(&dp, port).await;

    // Both addresses are endpoints.
    wait_answered_by(&dp, &[a.name(), b.name()]).await;
    let version = dp.config_version().await.unwrap();
    let entry = name_entry(&dp, port).await;
    assert_eq!(
        entry["addresses"],
        addresses(port, &[FIRST, SECOND]),
        "{entry}"
    );
    assert!(
        entry["resolved_at"].is_string() && entry["failing_since"].is_null(),
        "{entry}"
    );

    // The answer changes: within a couple of refreshes every request goes to 127.0.0.2.
    dns.set(NAME, &[SECOND]);
    wait_answered_by(&dp, &[b.name()]).await;
    assert_eq!(
        dp.config_version().await.unwrap(),
        version,
        "the version stays"
    );
    assert_eq!(
        name_entry(&dp, port).await["addresses"],
        addresses(port, &[SECOND])
    );

    // SERVFAIL, then silence: two failed refreshes each, and the last good answer serves.
    let mark = dp.process().stderr_mark();
    for mode in [
        integration_tests::dns::Mode::ServFail,
        integration_tests::dns::Mode::Silent,
    ] {
        let (before, queries) = (failed_lookups(&dp).await.unwrap(), dns.queries(NAME));
        dns.set_mode(mode);
        eventually(&format!("two refreshes to fail ({mode:?})"), || async {
            let failed = failed_lookups(&dp).await?;
            anyhow::ensure!(failed >= before + 2, "{} failed", failed - before);
            Ok(())
        })
        .await;
        assert!(dns.queries(NAME) > queries, "the nameserver was asked");
        let entry = name_entry(&dp, port).await;
        assert!(entry["failing_since"].is_string(), "{entry}");
        assert_answered_by(&dp, b.name()).await;
        let entry = name_entry(&dp, port).await;
        assert_eq!(entry["addresses"], addresses(port, &[SECOND]), "{entry}");
        assert!(entry["error"].is_string(), "{entry}");
    }
    let log = dp.process().stderr_since(mark);
    let warnings = log
        .matches("DNS lookup failed; keeping the last good answer")
        .count();
    assert_eq!(warnings, 1, "one warning for the whole outage:\n{log}");

    // Answers again, and a new one: the traffic follows.
    dns.set(NAME, &[FIRST]);
    dns.set_mode(integration_tests::dns::Mode::Answer);
    wait_answered_by(&dp, &[a.name()]).await;
    assert!(name_entry(&dp, port).await["failing_since"].is_null());
    assert_eq!(dp.config_version().await.unwrap(), version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_planes_upstream_follows_its_name_with_the_control_plane_gone() {
    let dns = DnsServer::start().await;
    dns.set(NAME, &[FIRST, SECOND]);
    let (a, b) = pair(["dns-cp-a", "dns-cp-b"]).await;
    let port = a.addr().port();
    let mut cp = ControlPlane::start(ControlPlaneOpts::embedded()).await;
    let dp = DataPlane::start(with_dns(DataPlaneOpts::control_planes([cp.url()]), &dns)).await;
    cp.ctl()
        .apply_yaml(&config(port), &["--wait"])
        .await
        .success();
    wait_first_answer(&dp, port).await;
    wait_answered_by(&dp, &[a.name(), b.name()]).await;
    let version = dp.config_version().await.unwrap();

    // No control plane, no stream: a changed answer is still swapped in.
    cp.kill().await;
    dns.set(NAME, &[SECOND]);
    wait_answered_by(&dp, &[b.name()]).await;
    let json = dp.config().await.unwrap().json().unwrap();
    assert_eq!(json["source"], "control-plane", "{json}");
    assert_eq!(dp.config_version().await.unwrap(), version);
    assert_eq!(
        json["dns"][format!("{NAME}:{port}")]["addresses"],
        addresses(port, &[SECOND])
    );
}

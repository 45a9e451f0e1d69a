//! Service discovery through the registry: instances registered with `gatewayctl register` (or
//! written straight into etcd with a lease, as a program in any language would) become the
//! endpoints of Upstreams with `discovery: { service }` on every data plane; a clean stop
//! removes one at once, a holder killed without deregistering is gone within its TTL plus one
//! second, and a service with no instance answers 503 `no_healthy_upstream`.

use std::{collections::BTreeSet, time::Duration};

use etcd_client::PutOptions;
use integration_tests::{
    ControlPlane, ControlPlaneOpts, DataPlane, DataPlaneOpts, DemoBackend, Etcd, eventually,
    patience, unique_prefix, write_file,
};
use tokio::time::Instant;

use crate::support::{docs, route, wait_connected};

/// The instances' TTL in the etcd test (etcd's shortest lease with its default timings).
const TTL: Duration = Duration::from_secs(2);

/// An Upstream whose endpoints are `service`'s instances.
fn discovered(name: &str, service: &str) -> String {
    format!("kind: Upstream\nname: {name}\nspec:\n  discovery: {{ service: {service} }}\n")
}

/// Who answers `path` on `dp` over `n` requests in a row: backend names, or the gateway's
/// error code for its own answers.
async fn answers(dp: &DataPlane, path: &str, n: usize) -> anyhow::Result<BTreeSet<String>> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let response = dp.get(path).await?;
        let json = response.json()?;
        let from = json["backend"]
            .as_str()
            .or_else(|| json["error"]["code"].as_str())
            .map_or_else(
                || format!("{} {}", response.status, response.text()),
                str::to_owned,
            );
        seen.insert(from);
    }
    Ok(seen)
}

/// Polls every data plane until `n` requests in a row are answered by exactly `expected`
/// (round robin alternates, so four in a row from one backend means no other is left); returns
/// how long it took.
async fn wait_answers(dps: &[DataPlane], path: &str, expected: &[&str], n: usize) -> Duration {
    let started = Instant::now();
    let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    let mut last = Vec::new();
    loop {
        last.clear();
        let mut all = true;
        for dp in dps {
            let seen = answers(dp, path, n).await;
            all &= seen.as_ref().is_ok_and(|s| *s == expected);
            last.push((dp.id().to_owned(), seen.map_err(|e| format!("{e:#}"))));
        }
        if all {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < patience(),
            "waited {:?} for {path} to be answered by {expected:?} on every data plane; last: {last:?}",
            patience()
        );
        // Polling, not waiting for time to pass: the next round asks again.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The instances `gatewayctl services -o json` lists, as `id address` lines.
async fn listed(cp: &ControlPlane) -> Vec<String> {
    let json = cp
        .ctl()
        .run(&["services", "-o", "json"])
        .await
        .success()
        .json();
    json["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            format!(
                "{} {}",
                i["id"].as_str().unwrap_or(""),
                i["address"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_instances_reach_every_data_plane_and_go_as_their_holders_do() {
    let (a, b, c) = tokio::join!(
        DemoBackend::start("users-a"),
        DemoBackend::start("users-b"),
        DemoBackend::start("users-c"),
    );
    let etcd = Etcd::start().await;
    let prefix = unique_prefix();
    let cp = ControlPlane::start(ControlPlaneOpts::etcd(etcd.endpoint(), &prefix)).await;
    let dps = [
        DataPlane::start(DataPlaneOpts::control_planes([cp.url()])).await,
        DataPlane::start(DataPlaneOpts::control_planes([cp.url()])).await,
    ];
    let ctl = cp.ctl();
    ctl.apply_yaml(
        &docs(&[
            discovered("users", "users"),
            route("users", "/users", "users"),
            discovered("nobody", "nobody"),
            route("nobody", "/nobody", "nobody"),
        ]),
        &["--wait"],
    )
    .await
    .success();
    // No instance yet, and a service that never has one: 503 no_healthy_upstream.
    wait_answers(&dps, "/users", &["no_healthy_upstream"], 1).await;
    for dp in &dps {
        let response = dp.get("/nobody").await.unwrap();
        assert_eq!(response.status, 503, "{}", response.text());
        assert_eq!(
            response.json().unwrap()["error"]["code"],
            "no_healthy_upstream"
        );
    }

    // Two instances registered by gatewayctl: both data planes reach both.
    let ttl = format!("{}s", TTL.as_secs());
    let mut holder_a = ctl
        .register("users", &a.addr().to_string(), &ttl, &[])
        .await;
    let mut holder_b = ctl
        .register("users", &b.addr().to_string(), &ttl, &["--id", "users-b"])
        .await;
    assert!(
        holder_a
            .key()
            .starts_with(&format!("{prefix}/registry/users/")),
        "{}",
        holder_a.key()
    );
    assert_eq!(holder_b.key(), format!("{prefix}/registry/users/users-b"));
    wait_answers(&dps, "/users", &["users-a", "users-b"], 4).await;
    assert_eq!(
        listed(&cp).await,
        [
            format!("{0} {0}", a.addr()),
            format!("users-b {}", b.addr())
        ]
    );
    // None of this is configuration: the version did not move.
    let version = dps[0].config_version().await.unwrap();

    // SIGTERM: deregistered at once (well before its lease could run out), exit 0.
    let stopped = Instant::now();
    let status = holder_a.stop().await;
    assert!(
        status.success(),
        "gatewayctl register exited {status}\n{}",
        holder_a.process().log_tail()
    );
    assert!(holder_a.process().stdout().contains("deregistered "));
    let gone = stopped.elapsed() + wait_answers(&dps, "/users", &["users-b"], 4).await;
    println!("an instance stopped with SIGTERM was gone from both data planes after {gone:?}");
    assert!(
        gone < TTL,
        "a clean stop took {gone:?}: that is the lease running out, not a deregistration"
    );

    // An instance written straight into etcd with a lease of its own, as any language can,
    // and a value that is not the registry's JSON (skipped, nothing else disturbed).
    let mut client = etcd.client().await;
    let lease = client
        .lease_grant(TTL.as_secs() as i64, None)
        .await
        .unwrap()
        .id();
    let value = format!("{{\"address\": \"{}\", \"weight\": 1}}", c.addr());
    client
        .put(
            format!("{prefix}/registry/users/direct-c"),
            value,
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    client
        .put(format!("{prefix}/registry/users/garbage"), "not json", None)
        .await
        .unwrap();
    let (mut keeper, mut renewed) = client.lease_keep_alive(lease).await.unwrap();
    let keep_c = tokio::spawn(async move {
        loop {
            if keeper.keep_alive().await.is_err() || renewed.message().await.is_err() {
                return;
            }
            tokio::time::sleep(TTL / 4).await;
        }
    });
    wait_answers(&dps, "/users", &["users-b", "users-c"], 4).await;
    assert!(
        cp.process().stderr().contains("skipping a registry entry"),
        "the control plane warns about the unreadable value"
    );

    // SIGKILL: nothing deregisters; the lease runs out within the TTL, and the data planes
    // follow within a second more.
    holder_b.kill().await;
    let killed = Instant::now();
    wait_answers(&dps, "/users", &["users-c"], 4).await;
    let gone = killed.elapsed();
    println!(
        "an instance whose holder was killed was gone from both data planes {gone:?} after the kill (TTL {TTL:?})"
    );
    assert!(
        gone <= TTL + Duration::from_secs(1),
        "gone after {gone:?}, more than TTL + 1 s"
    );

    // The direct registrant deregisters by revoking its lease.
    keep_c.abort();
    client.lease_revoke(lease).await.unwrap();
    wait_answers(&dps, "/users", &["no_healthy_upstream"], 1).await;
    assert_eq!(
        dps[0].config_version().await.unwrap(),
        version,
        "registry changes are not config"
    );
    assert_eq!(dps[1].config_version().await.unwrap(), version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_registers_and_deregisters() {
    let a = DemoBackend::start("solo-a").await;
    let cp = ControlPlane::start(ControlPlaneOpts::embedded()).await;
    let dps = [DataPlane::start(DataPlaneOpts::control_planes([cp.url()])).await];
    let ctl = cp.ctl();
    ctl.apply_yaml(
        &docs(&[discovered("solo", "solo"), route("solo", "/solo", "solo")]),
        &["--wait"],
    )
    .await
    .success();
    wait_answers(&dps, "/solo", &["no_healthy_upstream"], 1).await;

    // Bad flags are refused before anything is sent, naming the flag.
    let refused = ctl
        .run(&[
            "register",
            "--service",
            "solo",
            "--address",
            "nope",
            "--ttl",
            "10s",
        ])
        .await;
    refused.code(2).stderr_contains("--address");
    let refused = ctl
        .run(&[
            "register",
            "--service",
            "solo",
            "--address",
            &a.addr().to_string(),
            "--ttl",
            "0.5s",
        ])
        .await;
    refused.code(2).stderr_contains("--ttl");

    let mut holder = ctl
        .register("solo", &a.addr().to_string(), "10s", &[])
        .await;
    assert_eq!(holder.key(), format!("registry/solo/{}", a.addr()));
    wait_answers(&dps, "/solo", &["solo-a"], 2).await;
    assert_eq!(listed(&cp).await, [format!("{0} {0}", a.addr())]);
    let config = dps[0].config().await.unwrap().json().unwrap();
    assert_eq!(
        config["services"]["solo"][0],
        a.addr().to_string(),
        "{config}"
    );

    let status = holder.stop().await;
    assert!(
        status.success(),
        "exit {status}\n{}",
        holder.process().log_tail()
    );
    wait_answers(&dps, "/solo", &["no_healthy_upstream"], 1).await;
    assert!(listed(&cp).await.is_empty());

    // Killed, on the embedded store too: its in-memory lease runs out.
    let mut holder = ctl.register("solo", &a.addr().to_string(), "1s", &[]).await;
    wait_answers(&dps, "/solo", &["solo-a"], 2).await;
    holder.kill().await;
    let killed = Instant::now();
    wait_answers(&dps, "/solo", &["no_healthy_upstream"], 1).await;
    let gone = killed.elapsed();
    println!("embedded store: gone {gone:?} after the kill (TTL 1s)");
    assert!(gone <= Duration::from_secs(2), "gone after {gone:?}");
}

#[tokio::test]
async fn a_standalone_data_plane_has_no_instances() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    write_file(
        &file,
        docs(&[
            discovered("users", "users"),
            route("users", "/users", "users"),
        ]),
    );
    let dp = DataPlane::start(DataPlaneOpts::standalone(&file)).await;
    dp.wait_ready().await;
    let response = dp.get("/users").await.unwrap();
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(
        response.json().unwrap()["error"]["code"],
        "no_healthy_upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_registers_again_after_a_control_plane_restart() {
    let a = DemoBackend::start("again-a").await;
    // The embedded store keeps the registry in memory: a restart loses it.
    let mut cp = ControlPlane::start(ControlPlaneOpts::embedded()).await;
    let dps = [DataPlane::start(DataPlaneOpts::control_planes([cp.url()])).await];
    let ctl = cp.ctl();
    ctl.apply_yaml(
        &docs(&[
            discovered("again", "again"),
            route("again", "/again", "again"),
        ]),
        &["--wait"],
    )
    .await
    .success();
    let mut holder = ctl
        .register("again", &a.addr().to_string(), "2s", &[])
        .await;
    wait_answers(&dps, "/again", &["again-a"], 2).await;

    let status = cp.terminate().await;
    assert!(status.success(), "control plane exit {status}");
    cp.restart().await;
    // Nobody registers anything on the new process: the holder does it again.
    let expected = [format!("{0} {0}", a.addr())];
    eventually("the holder to register again", || async {
        let now = listed(&cp).await;
        anyhow::ensure!(now == expected, "listed: {now:?}");
        Ok(())
    })
    .await;
    let stderr = holder.process().stderr();
    assert!(stderr.contains("registering again"), "{stderr}");
    // The data plane, reconnected, is sent the new process's registry.
    wait_connected(&ctl, &[dps[0].id()]).await;
    wait_answers(&dps, "/again", &["again-a"], 2).await;
    assert!(holder.is_running(), "the holder still holds");
    let status = holder.stop().await;
    assert!(status.success(), "exit {status}");
    wait_answers(&dps, "/again", &["no_healthy_upstream"], 1).await;
}

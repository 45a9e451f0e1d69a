//! Control planes on etcd feeding data planes: apply, restart, compaction, failover.

use integration_tests::{
    ControlPlane, ControlPlaneOpts, DataPlane, DataPlaneOpts, DemoBackend, Etcd, TcpProxy,
    applied_version, eventually, resource_list, unique_prefix,
};

use crate::support::{
    Cluster, check_echo, dataplane_entry, docs, json_i64, route, upstream, wait_connected,
    wait_served, wait_status,
};

/// (a) `apply --wait` returns 0 once both data planes serve the route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_applied_with_gatewayctl_is_served_by_two_data_planes() {
    let backend = DemoBackend::start("echo-a").await;
    let cluster = Cluster::start(2).await;
    let ctl = cluster.cp.ctl();
    let ids: Vec<&str> = cluster.dps.iter().map(DataPlane::id).collect();
    // Both are connected before the apply, so `--wait` has to wait for both.
    wait_connected(&ctl, &ids).await;

    let yaml = docs(&[
        upstream("echo", &[backend.addr()]),
        route("echo", "/echo", "echo"),
    ]);
    let output = ctl.apply_yaml(&yaml, &["--wait"]).await;
    output.success();
    let version = applied_version(&output).expect("apply prints `applied version N`");

    for dp in &cluster.dps {
        // No polling: `--wait` returned, so both have swapped the new table in.
        let response = dp
            .get("/echo/hello?x=1")
            .await
            .expect("GET through the data plane");
        check_echo(&response, "echo-a", "/echo/hello").unwrap();
        assert_eq!(response.json().unwrap()["query"], "x=1");
        assert_eq!(dp.ready_status().await.unwrap(), 200, "{} /ready", dp.id());
        assert_eq!(
            dp.config_version().await.unwrap(),
            Some(version),
            "{} /config version",
            dp.id()
        );
        let entry = dataplane_entry(&ctl, dp.id()).await.expect("registered");
        assert_eq!(json_i64(&entry["ackedVersion"]), Some(version), "{entry}");
        // A path no route matches is not sent to the backend.
        let miss = dp.get("/nothing").await.unwrap();
        assert_eq!(miss.status, 404, "{}", miss.text());
    }
}

/// (d) After a control-plane restart the data planes resync and serve a later change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_planes_resync_after_a_control_plane_restart() {
    let backend = DemoBackend::start("echo-d").await;
    let mut cluster = Cluster::start(2).await;
    let ctl = cluster.cp.ctl();
    ctl.apply_yaml(
        &docs(&[
            upstream("echo", &[backend.addr()]),
            route("one", "/one", "echo"),
        ]),
        &[],
    )
    .await
    .success();
    for dp in &cluster.dps {
        wait_served(dp, "/one/x", "echo-d").await;
    }

    let status = cluster.cp.terminate().await;
    assert!(status.success(), "control plane exit on SIGTERM: {status}");
    // Without a control plane, the data planes keep the table they have.
    for dp in &cluster.dps {
        let response = dp.get("/one/x").await.unwrap();
        check_echo(&response, "echo-d", "/one/x").unwrap();
    }

    cluster.cp.restart().await;
    ctl.apply_yaml(&route("two", "/two", "echo"), &[])
        .await
        .success();
    for dp in &cluster.dps {
        wait_served(dp, "/two/x", "echo-d").await;
        wait_served(dp, "/one/x", "echo-d").await;
    }
    let ids: Vec<&str> = cluster.dps.iter().map(DataPlane::id).collect();
    wait_connected(&ctl, &ids).await;
}

/// etcd going away and coming back: writes are refused (exit 1) while it is down, the data
/// planes keep serving, and writes and updates resume once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_rides_out_an_etcd_restart() {
    let backend = DemoBackend::start("echo-etcd").await;
    let mut cluster = Cluster::start(1).await;
    let ctl = cluster.cp.ctl();
    ctl.apply_yaml(
        &docs(&[
            upstream("echo", &[backend.addr()]),
            route("one", "/one", "echo"),
        ]),
        &[],
    )
    .await
    .success();
    let dp = &cluster.dps[0];
    wait_served(dp, "/one/x", "echo-etcd").await;

    cluster.etcd.stop().await;
    let two = route("two", "/two", "echo");
    let refused = ctl
        .run_with_stdin(&["--timeout", "3s", "apply", "-f", "-"], Some(&two))
        .await;
    assert_eq!(refused.code, 1, "apply with etcd down\n{refused}");
    check_echo(&dp.get("/one/x").await.unwrap(), "echo-etcd", "/one/x").unwrap();

    cluster.etcd.restart().await;
    eventually("an apply to succeed once etcd is back", || async {
        let output = ctl.apply_yaml(&two, &[]).await;
        anyhow::ensure!(output.code == 0, "{output}");
        Ok(())
    })
    .await;
    let dp = &cluster.dps[0];
    wait_served(dp, "/two/x", "echo-etcd").await;
    wait_served(dp, "/one/x", "echo-etcd").await;
}

/// (g) A control plane whose watch broke while etcd was compacted past it re-lists and ends
/// up with the same config as its peer; its data plane serves the changes it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_recovers_from_a_broken_watch_across_a_compaction() {
    let backend = DemoBackend::start("echo-g").await;
    let etcd = Etcd::start().await;
    let prefix = unique_prefix();
    let proxy = TcpProxy::start(etcd.client_addr()).await;
    // A reaches etcd only through the proxy; B directly.
    let cp_a = ControlPlane::start(ControlPlaneOpts::etcd(proxy.url(), prefix.clone())).await;
    let cp_b = ControlPlane::start(ControlPlaneOpts::etcd(etcd.endpoint(), prefix)).await;
    let dp = DataPlane::start(DataPlaneOpts::control_planes([cp_a.url()])).await;
    let (ctl_a, ctl_b) = (cp_a.ctl(), cp_b.ctl());

    ctl_b
        .apply_yaml(
            &docs(&[
                upstream("echo", &[backend.addr()]),
                route("kept", "/kept", "echo"),
                route("old", "/old", "echo"),
            ]),
            &[],
        )
        .await
        .success();
    wait_served(&dp, "/old/x", "echo-g").await;

    proxy.cut();
    // Changes A cannot see: a new route, a deleted one, several revisions.
    ctl_b
        .apply_yaml(&route("new", "/new", "echo"), &[])
        .await
        .success();
    ctl_b.run(&["delete", "route", "old"]).await.success();
    ctl_b
        .apply_yaml(&route("newer", "/newer", "echo"), &[])
        .await
        .success();
    let compacted = etcd.compact().await;
    assert!(compacted > 0);
    proxy.restore();

    eventually("A's routes to equal B's", || async {
        let (a, b) = (
            ctl_a.get_json("routes").await,
            ctl_b.get_json("routes").await,
        );
        anyhow::ensure!(a == b, "A: {a}\nB: {b}");
        let names: Vec<_> = resource_list(&b)
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .collect();
        anyhow::ensure!(names == ["kept", "new", "newer"], "B's routes: {names:?}");
        Ok(())
    })
    .await;
    assert_eq!(
        ctl_a.get_json("upstreams").await,
        ctl_b.get_json("upstreams").await
    );
    wait_served(&dp, "/new/x", "echo-g").await;
    wait_served(&dp, "/newer/x", "echo-g").await;
    wait_status(&dp, "/old/x", 404).await;
    wait_served(&dp, "/kept/x", "echo-g").await;
}

/// (h) Data planes that list two control planes keep getting updates when the one they are
/// on dies. Each control plane is killed in turn, so every data plane fails over at least once
/// whichever it picked first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_planes_fail_over_to_another_control_plane() {
    let backend = DemoBackend::start("echo-h").await;
    let etcd = Etcd::start().await;
    let prefix = unique_prefix();
    let mut cp1 =
        ControlPlane::start(ControlPlaneOpts::etcd(etcd.endpoint(), prefix.clone())).await;
    let mut cp2 = ControlPlane::start(ControlPlaneOpts::etcd(etcd.endpoint(), prefix)).await;
    let mut dps = Vec::new();
    for _ in 0..2 {
        dps.push(DataPlane::start(DataPlaneOpts::control_planes([cp1.url(), cp2.url()])).await);
    }
    cp1.ctl()
        .apply_yaml(
            &docs(&[
                upstream("echo", &[backend.addr()]),
                route("r1", "/r1", "echo"),
            ]),
            &[],
        )
        .await
        .success();
    for dp in &dps {
        wait_served(dp, "/r1/x", "echo-h").await;
    }

    cp1.kill().await;
    cp2.ctl()
        .apply_yaml(&route("r2", "/r2", "echo"), &[])
        .await
        .success();
    for dp in &dps {
        wait_served(dp, "/r2/x", "echo-h").await;
    }

    cp1.restart().await;
    cp2.kill().await;
    cp1.ctl()
        .apply_yaml(&route("r3", "/r3", "echo"), &[])
        .await
        .success();
    for dp in &dps {
        wait_served(dp, "/r3/x", "echo-h").await;
        wait_served(dp, "/r1/x", "echo-h").await;
    }
    // The survivor knows them all as connected to it.
    let ids: Vec<&str> = dps.iter().map(DataPlane::id).collect();
    wait_connected(&cp1.ctl(), &ids).await;
    for dp in &mut dps {
        assert!(dp.process_mut().is_running(), "{} died", dp.id());
    }
}

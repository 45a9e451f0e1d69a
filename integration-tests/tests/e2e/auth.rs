//! (i) Tokens: a data plane or a gatewayctl with the wrong one gets nothing.

use integration_tests::{
    ControlPlane, ControlPlaneOpts, DataPlane, DataPlaneOpts, DemoBackend, Gatewayctl, eventually,
};

use crate::support::{docs, route, upstream, wait_connected, wait_served};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_get_no_config() {
    let backend = DemoBackend::start("echo-i").await;
    let cp = ControlPlane::start(
        ControlPlaneOpts::embedded()
            .admin_token("admin-secret")
            .dataplane_token("dp-secret"),
    )
    .await;
    let good = DataPlane::start(DataPlaneOpts::control_planes([cp.url()]).token("dp-secret")).await;
    let mut bad = DataPlane::start(DataPlaneOpts::control_planes([cp.url()]).token("wrong")).await;
    let yaml = docs(&[
        upstream("echo", &[backend.addr()]),
        route("secret", "/secret", "echo"),
    ]);

    // gatewayctl with a wrong token, or none, is refused with an auth error and stores nothing.
    for ctl in [
        Gatewayctl::new(cp.url()).with_token("wrong"),
        Gatewayctl::new(cp.url()),
    ] {
        for output in [
            ctl.apply_yaml(&yaml, &[]).await,
            ctl.run(&["get", "routes"]).await,
        ] {
            assert_eq!(output.code, 1, "{output}");
            let stderr = output.stderr.to_lowercase();
            assert!(
                stderr.contains("auth") || stderr.contains("token"),
                "stderr should tell it is an auth error\n{output}"
            );
        }
    }
    let ctl = cp.ctl();
    assert_eq!(ctl.names("routes").await, Vec::<String>::new());

    // The right tokens work.
    wait_connected(&ctl, &[good.id()]).await;
    ctl.apply_yaml(&yaml, &["--wait"]).await.success();
    wait_served(&good, "/secret/x", "echo-i").await;

    // The data plane with the wrong token says why, and has nothing.
    eventually("the refused data plane to log an auth error", || async {
        let log = bad.process().stderr().to_lowercase();
        anyhow::ensure!(
            log.contains("auth") || log.contains("token"),
            "log so far:\n{log}"
        );
        Ok(())
    })
    .await;
    assert!(
        bad.process_mut().is_running(),
        "the refused data plane died"
    );
    assert_eq!(bad.ready_status().await.unwrap(), 503);
    assert_eq!(bad.config_version().await.unwrap(), None);
    let response = bad.get("/secret/x").await.unwrap();
    assert_ne!(response.status, 200, "{}", response.text());
    let listing = ctl.dataplanes().await;
    assert!(
        !listing.to_string().contains(bad.id()),
        "the refused data plane is registered: {listing}"
    );
}

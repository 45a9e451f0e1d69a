//! Standalone data planes (`--config FILE`): reload, error bodies, drain on SIGTERM.

use std::time::{Duration, Instant};

use integration_tests::{
    DataPlane, DataPlaneOpts, DemoBackend, eventually, free_port, get, patience, write_file,
};

use crate::support::{check_echo, docs, route, upstream, upstream_with, wait_served, wait_status};

/// (k) Edits of the file are served; a bad edit keeps the old config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_reload_serves_edits_and_keeps_the_old_config_on_a_bad_edit() {
    let a = DemoBackend::start("echo-ka").await;
    let b = DemoBackend::start("echo-kb").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    write_file(
        &file,
        docs(&[upstream("a", &[a.addr()]), route("app", "/app", "a")]),
    );
    let mut dp = DataPlane::start(DataPlaneOpts::standalone(&file)).await;
    wait_served(&dp, "/app/x", "echo-ka").await;
    dp.wait_ready().await;

    // An edit in place.
    write_file(
        &file,
        docs(&[
            upstream("b", &[b.addr()]),
            route("app", "/app", "b"),
            route("new", "/new", "b"),
        ]),
    );
    wait_served(&dp, "/app/x", "echo-kb").await;
    wait_served(&dp, "/new/x", "echo-kb").await;
    let good_version = dp.config_version().await.unwrap();

    // A bad edit: refused, logged with the field, the last good config kept.
    let mark = dp.process().stderr_mark();
    write_file(
        &file,
        docs(&[upstream("b", &[b.addr()]), route("app", "/app", "missing")]),
    );
    eventually("the data plane to log the refused edit", || async {
        let log = dp.process().stderr_since(mark);
        anyhow::ensure!(log.contains("backendRefs"), "log so far:\n{log}");
        Ok(())
    })
    .await;
    assert!(
        dp.process_mut().is_running(),
        "the data plane died on a bad edit"
    );
    check_echo(&dp.get("/app/x").await.unwrap(), "echo-kb", "/app/x").unwrap();
    check_echo(&dp.get("/new/x").await.unwrap(), "echo-kb", "/new/x").unwrap();
    assert_eq!(dp.config_version().await.unwrap(), good_version);

    // A good edit by replacing the file (as many editors and config maps do).
    let staged = dir.path().join("gateway.yaml.new");
    write_file(
        &staged,
        docs(&[upstream("a", &[a.addr()]), route("app", "/app", "a")]),
    );
    std::fs::rename(&staged, &file).unwrap();
    wait_served(&dp, "/app/x", "echo-ka").await;
    wait_status(&dp, "/new/x", 404).await;
}

/// Checks the JSON error body of the contract and returns it.
fn error_body(response: &integration_tests::HttpResponse, status: u16) -> serde_json::Value {
    assert_eq!(response.status, status, "{}", response.text());
    let json = response.json().unwrap();
    let error = &json["error"];
    assert_eq!(error["status"], status, "{json}");
    assert!(
        error["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{json}"
    );
    assert!(error["message"].is_string(), "{json}");
    assert!(
        error["request_id"].as_str().is_some_and(|c| !c.is_empty()),
        "{json}"
    );
    json
}

/// (l) 404 `route_not_found`, 502 when the upstream is down, 504 past the upstream timeout;
/// internal detail stays out of the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_follow_the_contract() {
    let backend = DemoBackend::start("echo-l").await;
    let dead: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    write_file(
        &file,
        docs(&[
            upstream_with("live", &[backend.addr()], "  timeout: 1s\n"),
            upstream("dead", &[dead]),
            route("live", "/live", "live"),
            route("dead", "/dead", "dead"),
        ]),
    );
    let dp = DataPlane::start(DataPlaneOpts::standalone(&file)).await;
    wait_served(&dp, "/live/x", "echo-l").await;

    let not_found = dp.get("/nowhere").await.unwrap();
    let json = error_body(&not_found, 404);
    assert_eq!(json["error"]["code"], "route_not_found", "{json}");
    assert!(
        not_found
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        not_found.headers
    );

    let bad_gateway = dp.get("/dead/x").await.unwrap();
    error_body(&bad_gateway, 502);
    let port = dead.port().to_string();
    assert!(
        !bad_gateway.text().contains(&port),
        "the upstream's address leaked into the body: {}",
        bad_gateway.text()
    );

    let started = Instant::now();
    let timeout = dp.get("/live/slow?ms=8000").await.unwrap();
    let elapsed = started.elapsed();
    error_body(&timeout, 504);
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(6),
        "a 1s upstream timeout answered after {elapsed:?}"
    );
}

/// (m) SIGTERM: the in-flight slow request completes, then the data plane exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_request_and_exits_zero() {
    let backend = DemoBackend::start("echo-m").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    write_file(
        &file,
        docs(&[
            upstream("live", &[backend.addr()]),
            route("live", "/live", "live"),
        ]),
    );
    let mut dp = DataPlane::start(DataPlaneOpts::standalone(&file)).await;
    wait_served(&dp, "/live/x", "echo-m").await;

    let url = dp.url("/live/slow?ms=2000");
    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    backend.wait_for_request("/live/slow").await;
    dp.process_mut().signal_term().unwrap();

    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    check_echo(&response, "echo-m", "/live/slow").unwrap();
    let status = dp.process_mut().wait_exit(patience()).await.unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

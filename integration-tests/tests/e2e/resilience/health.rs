//! Passive ejection, active checks and panic mode on a round-robin upstream of three.

use std::time::{Duration, Instant};

use integration_tests::{DemoBackend, eventually, holds_for};

use super::{ACTIVE, Gateway, Load, Sample, backend::TestBackend, streak, tally};
use crate::support::{docs, route, upstream_with};

/// The `users` upstream (round robin, `health` lines under `healthCheck:`) behind `/users`.
fn config(endpoints: &[std::net::SocketAddr], health: &str) -> String {
    let spec = format!("  loadBalancer: {{ type: RoundRobin }}\n  healthCheck:\n{health}");
    docs(&[
        upstream_with("users", endpoints, &spec),
        route("users", "/users", "users"),
    ])
}

/// Three demo backends behind passive (3 errors in a row) and active checks, with load
/// running and spread over all three.
struct Killable {
    backends: Vec<DemoBackend>,
    gw: Gateway,
    load: Load,
}

impl Killable {
    async fn start(prefix: &str, base_ejection: &str) -> Killable {
        let mut backends = Vec::new();
        for n in ["a", "b", "c"] {
            backends.push(DemoBackend::start(&format!("{prefix}-{n}")).await);
        }
        let addrs: Vec<_> = backends.iter().map(DemoBackend::addr).collect();
        let passive = format!(
            "    passive: {{ consecutiveErrors: 3, baseEjectionTime: {base_ejection}, maxEjectionPercent: 50 }}\n"
        );
        let gw = Gateway::start(&config(&addrs, &format!("{ACTIVE}{passive}")), 1).await;
        let load = Load::start(gw.dp().url("/users/x"));
        let names: Vec<&str> = backends.iter().map(DemoBackend::name).collect();
        load.wait_spread("load over all three backends", 0, 30, &names)
            .await;
        Killable { backends, gw, load }
    }

    /// Kills the third backend and waits until 50 answers in a row are 200s from the others;
    /// returns what came before them.
    async fn kill_third(&mut self) -> Vec<Sample> {
        let killed = self.backends[2].name().to_owned();
        let mark = self.load.mark();
        self.backends[2].kill().await;
        let what = format!("50 answers in a row, all 200 and none from {killed}");
        let start = self
            .load
            .wait(&what, mark, |samples| {
                streak(samples, 50, |s| s.ok() && s.from != killed)
                    .ok_or_else(|| anyhow::anyhow!("since the kill: {:?}", tally(samples)))
            })
            .await;
        self.load.since(mark)[..start].to_vec()
    }

    /// Which of the data plane's health verdicts its log shows.
    fn logged(&self) -> (bool, bool) {
        let log = self.gw.dp().process().stderr();
        (
            log.contains("endpoint ejected after errors in a row"),
            log.contains("endpoint unhealthy"),
        )
    }
}

/// A killed backend costs at most `consecutiveErrors` (3) + the one request in flight, then
/// gets no traffic; once restarted the active check gives it its share again. The ejection is
/// 1 s so that it has ended by then: past it only the active check keeps the dead backend out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_is_ejected_and_traffic_returns_when_it_is_back() {
    let mut k = Killable::start("kill", "1s").await;
    let killed = k.backends[2].name().to_owned();
    let window = k.kill_third().await;
    let failed: Vec<&Sample> = window.iter().filter(|s| !s.ok()).collect();
    let (ejected, unhealthy) = k.logged();
    eprintln!(
        "after the kill, before 50 good in a row: {} answers, {} failed: {:?}; \
         logged ejected {ejected}, unhealthy {unhealthy}",
        window.len(),
        failed.len(),
        tally(&window)
    );
    assert!(
        failed.len() <= 3 + 1,
        "{} failures before the dead backend was out (consecutiveErrors 3 + 1 in flight): {:?}",
        failed.len(),
        tally(&window)
    );
    for s in &failed {
        assert!(
            (s.status, s.from.as_str()) == (502, "upstream_unavailable")
                || (s.status, s.from.as_str()) == (504, "upstream_timeout"),
            "a failure that is not the gateway's 502/504: {s:?}"
        );
    }

    // Twice the ejection: the active check alone keeps the dead backend out.
    let settled = k.load.mark();
    holds_for(
        "no failure and nothing from the dead backend",
        Duration::from_secs(2),
        || {
            let since = k.load.since(settled);
            let bad = since.iter().any(|s| !s.ok() || s.from == killed);
            async move {
                anyhow::ensure!(!bad, "since it was out: {:?}", tally(&since));
                Ok(())
            }
        },
    )
    .await;
    eprintln!("while dead: {:?}", tally(&k.load.since(settled)));

    let back = k.load.mark();
    let restarted = Instant::now();
    k.backends[2].restart().await;
    k.load
        .wait(&format!("{killed} to take traffic again"), back, |s| {
            let n = s.iter().filter(|s| s.is(&killed)).count();
            anyhow::ensure!(n >= 10, "{n} answers from it");
            Ok(())
        })
        .await;
    let after = k.load.since(back);
    eprintln!(
        "restarted: back in traffic within {:?}; since the restart {:?}",
        restarted.elapsed(),
        tally(&after)
    );
    assert!(
        after.iter().all(Sample::ok),
        "failures after the restart: {:?}",
        tally(&after)
    );
    k.load.stop().await;
}

/// The same with the ejection outlasting the test: the restarted backend passes its checks
/// every 0.2 s but gets no traffic until its ejection ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_check_pass_ends_a_passive_ejection() {
    let mut k = Killable::start("eject", "120s").await;
    let killed = k.backends[2].name().to_owned();
    let window = k.kill_third().await;
    let (ejected, unhealthy) = k.logged();
    eprintln!(
        "after the kill: {:?}; logged ejected {ejected}, unhealthy {unhealthy}",
        tally(&window)
    );
    assert!(ejected, "precondition: the passive check ejected it");
    // So that it comes back by a "healthy again" transition of its checks.
    eventually("the active check to see it down", || async {
        anyhow::ensure!(k.logged().1, "not logged unhealthy");
        Ok(())
    })
    .await;
    let back = k.load.mark();
    k.backends[2].restart().await;
    k.load
        .wait(&format!("{killed} to take traffic again"), back, |s| {
            let n = s.iter().filter(|s| s.is(&killed)).count();
            let healthy =
                k.gw.dp()
                    .process()
                    .stderr()
                    .contains("endpoint healthy again");
            anyhow::ensure!(
                n >= 1,
                "no answer from it; active check logged it healthy again: {healthy}; {:?}",
                tally(s)
            );
            Ok(())
        })
        .await;
    k.load.stop().await;
}

/// Passive checks alone count the endpoint's own 5xx: three 503s in a row eject it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_answering_5xx_is_ejected_after_three_in_a_row() {
    let mut backends = Vec::new();
    for n in ["a", "b", "c"] {
        backends.push(TestBackend::start(&format!("fail-{n}")).await);
    }
    let addrs: Vec<_> = backends.iter().map(TestBackend::addr).collect();
    let passive =
        "    passive: { consecutiveErrors: 3, baseEjectionTime: 30s, maxEjectionPercent: 50 }\n";
    let gw = Gateway::start(&config(&addrs, passive), 1).await;
    let load = Load::start(gw.dp().url("/users/x"));
    let names: Vec<&str> = backends.iter().map(TestBackend::name).collect();
    load.wait_spread("load over all three backends", 0, 30, &names)
        .await;

    let failing = &backends[2];
    let mark = load.mark();
    failing.set_failing(true);
    let what = format!(
        "50 answers in a row, all 200 and none from {}",
        failing.name()
    );
    let start = load
        .wait(&what, mark, |samples| {
            streak(samples, 50, |s| s.ok())
                .ok_or_else(|| anyhow::anyhow!("since it failed: {:?}", tally(samples)))
        })
        .await;
    let window = &load.since(mark)[..start];
    let failed: Vec<&Sample> = window.iter().filter(|s| !s.ok()).collect();
    eprintln!("answering 503: out after {:?}", tally(window));
    assert!(
        failed.len() <= 3 + 1,
        "{} failures before it was ejected: {:?}",
        failed.len(),
        tally(window)
    );
    assert!(
        failed
            .iter()
            .all(|s| (s.status, s.from.as_str()) == (503, failing.name())),
        "not its own 503s relayed: {:?}",
        tally(window)
    );
    load.stop().await;
}

/// With one of three dead, its third of the traffic should go to the other two about evenly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoints_share_is_spread_over_the_others() {
    let mut k = Killable::start("share", "30s").await;
    k.kill_third().await;
    let mark = k.load.mark();
    let samples = k
        .load
        .wait("300 answers with the third out", mark, |s| {
            anyhow::ensure!(s.len() >= 300, "{} so far", s.len());
            Ok(s.to_vec())
        })
        .await;
    let count = |b: &DemoBackend| samples.iter().filter(|s| s.is(b.name())).count();
    let (a, b) = (count(&k.backends[0]), count(&k.backends[1]));
    eprintln!("one of three dead: {:?}", tally(&samples));
    assert!(
        a.max(b) * 2 <= a.min(b) * 3,
        "the two left took {a} and {b}: not within 1.5× of each other"
    );
    k.load.stop().await;
}

/// Three test backends behind active checks alone, with load running and spread over all
/// three.
async fn checked_three(prefix: &str) -> (Vec<TestBackend>, Gateway, Load) {
    let mut backends = Vec::new();
    for n in ["a", "b", "c"] {
        backends.push(TestBackend::start(&format!("{prefix}-{n}")).await);
    }
    let addrs: Vec<_> = backends.iter().map(TestBackend::addr).collect();
    let gw = Gateway::start(&config(&addrs, ACTIVE), 1).await;
    let load = Load::start(gw.dp().url("/users/x"));
    let names: Vec<&str> = backends.iter().map(TestBackend::name).collect();
    load.wait_spread("load over all three backends", 0, 30, &names)
        .await;
    (backends, gw, load)
}

/// With active checks alone: a backend whose `/healthz` answers 503 is taken out (it still
/// answers its requests, so nothing else could), and comes back when it answers 200 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_take_a_failing_endpoint_out_and_bring_it_back() {
    let (backends, _gw, load) = checked_three("active").await;
    let names: Vec<&str> = backends.iter().map(TestBackend::name).collect();
    let sick = &backends[2];
    sick.wait_checked().await;

    let mark = load.mark();
    let checks = sick.checks();
    sick.set_healthy(false);
    let what = format!("50 answers in a row, none from {}", sick.name());
    let start = load
        .wait(&what, mark, |samples| {
            streak(samples, 50, |s| s.ok() && s.from != sick.name())
                .ok_or_else(|| anyhow::anyhow!("since /healthz failed: {:?}", tally(samples)))
        })
        .await;
    let window = load.since(mark);
    eprintln!(
        "/healthz 503: out after {start} answers ({:?}) and {} checks",
        tally(&window[..start]),
        sick.checks() - checks
    );
    assert!(window.iter().all(Sample::ok), "{:?}", tally(&window));

    let mark = load.mark();
    sick.set_healthy(true);
    load.wait_spread("load over all three again", mark, 30, &names)
        .await;
    let window = load.since(mark);
    eprintln!("/healthz 200 again: {:?}", tally(&window));
    let checks: Vec<usize> = backends.iter().map(TestBackend::checks).collect();
    eprintln!("health checks per backend: {checks:?}");
    load.stop().await;
}

/// Two of three endpoints down by their checks is fewer than half usable: panic mode sends
/// traffic to all three, the down ones included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_mode_sends_to_every_endpoint_when_most_are_down() {
    let (backends, _gw, load) = checked_three("panic").await;
    let names: Vec<&str> = backends.iter().map(TestBackend::name).collect();

    // One down: two of three usable, so it is out.
    let mark = load.mark();
    backends[0].set_healthy(false);
    load.wait_spread("load over b and c", mark, 50, &names[1..])
        .await;
    // Two down: one of three usable, so health is set aside.
    let mark = load.mark();
    backends[1].set_healthy(false);
    load.wait_spread("panic mode: load over all three", mark, 30, &names)
        .await;
    eprintln!(
        "two of three down: {:?}; checks {:?}",
        tally(&load.since(mark)),
        backends.iter().map(TestBackend::checks).collect::<Vec<_>>()
    );
    load.stop().await;
}

/// An h2c backend: `/healthz` answers 200 or 503 as `healthy` says, anything else 200 with the
/// backend's name.
async fn h2c_backend(
    name: &'static str,
    healthy: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::net::SocketAddr {
    use std::sync::atomic::Ordering;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let healthy = healthy.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    let up = healthy.load(Ordering::Relaxed);
                    async move {
                        let mut response = http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(name.as_bytes()),
                        ));
                        if req.uri().path() == "/healthz" && !up {
                            *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    addr
}

/// Active checks over HTTP/2 for an H2C upstream: a backend whose `/healthz` answers 503 is
/// taken out, and comes back when it answers 200 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_speak_http2_to_h2c_upstreams() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    let (a_up, b_up) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicBool::new(true)),
    );
    let a = h2c_backend("h2-a", a_up.clone()).await;
    let b = h2c_backend("h2-b", b_up.clone()).await;
    let spec = format!("  protocol: H2C\n  healthCheck:\n{ACTIVE}");
    let gw = Gateway::start(
        &docs(&[
            upstream_with("users", &[a, b], &spec),
            route("users", "/users", "users"),
        ]),
        1,
    )
    .await;
    let dp = gw.dp();
    let answers = |n: usize| async move {
        let mut from = Vec::new();
        for _ in 0..n {
            let response = dp.get("/users/x").await?;
            anyhow::ensure!(response.status == 200, "status {}", response.status);
            from.push(response.text());
        }
        Ok::<_, anyhow::Error>(from)
    };
    eventually("both h2c backends serving", || async {
        let from = answers(10).await?;
        anyhow::ensure!(
            from.iter().any(|f| f == "h2-a") && from.iter().any(|f| f == "h2-b"),
            "{from:?}"
        );
        Ok(())
    })
    .await;
    b_up.store(false, Ordering::Relaxed);
    eventually("h2-b out by its checks", || async {
        let from = answers(10).await?;
        anyhow::ensure!(from.iter().all(|f| f == "h2-a"), "{from:?}");
        Ok(())
    })
    .await;
    b_up.store(true, Ordering::Relaxed);
    eventually("h2-b back", || async {
        let from = answers(10).await?;
        anyhow::ensure!(from.iter().any(|f| f == "h2-b"), "{from:?}");
        Ok(())
    })
    .await;
}

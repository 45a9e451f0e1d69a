//! Retries: a killed backend's requests go to another endpoint, and a backend failing
//! everything gets at most the retry budget's share more requests, not `attempts` times more.

use integration_tests::{DemoBackend, get};

use super::{Gateway, Load, backend::TestBackend, streak, tally};
use crate::support::{docs, upstream_with};

/// A route to `users` that retries, with `retry` as its YAML flow map.
fn retrying(retry: &str) -> String {
    format!(
        "kind: Route\nname: users\nspec:\n  rules:\n    - matches: [{{ path: {{ type: PathPrefix, value: /users }} }}]\n      backendRefs: [{{ name: users }}]\n      retry: {retry}\n"
    )
}

/// Under steady load, a backend killed without warning costs no request: each try that fails
/// to connect is retried on another endpoint, and passive ejection then takes it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_costs_no_idempotent_request() {
    let mut backends = Vec::new();
    for n in ["a", "b", "c"] {
        backends.push(DemoBackend::start(&format!("retry-{n}")).await);
    }
    let addrs: Vec<_> = backends.iter().map(DemoBackend::addr).collect();
    let health = "  healthCheck:\n    passive: { consecutiveErrors: 3, baseEjectionTime: 30s }\n";
    let config = docs(&[
        upstream_with("users", &addrs, health),
        retrying("{ attempts: 2, backoff: 0.01s }"),
    ]);
    let gw = Gateway::start(&config, 1).await;
    let load = Load::start(gw.dp().url("/users/x"));
    let names: Vec<&str> = backends.iter().map(DemoBackend::name).collect();
    load.wait_spread("load over all three backends", 0, 30, &names)
        .await;
    let killed = backends[2].name().to_owned();
    let mark = load.mark();
    backends[2].kill().await;
    load.wait("100 answers after the kill", mark, |samples| {
        streak(samples, 100, |s| s.ok() && s.from != killed)
            .map(drop)
            .ok_or_else(|| anyhow::anyhow!("since the kill: {:?}", tally(samples)))
    })
    .await;
    let after = load.since(mark);
    let failed: Vec<_> = after.iter().filter(|s| !s.ok()).collect();
    eprintln!("after the kill: {:?}", tally(&after));
    assert!(
        failed.is_empty(),
        "{} of {} requests failed after the kill: {:?}",
        failed.len(),
        after.len(),
        tally(&after)
    );
    load.stop().await;
}

/// 1,000 requests from 50 clients at once to a backend answering 503 to everything, on a
/// rule retrying 503 three times: without a budget it would get 4,000; the budget (a retry
/// per five requests, or three at a time) holds it to well under twice the requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_storm_is_held_to_the_budget() {
    let failing = TestBackend::start("storm").await;
    failing.set_failing(true);
    let config = docs(&[
        upstream_with("users", &[failing.addr()], ""),
        retrying("{ attempts: 3, backoff: 0.01s, codes: [503] }"),
    ]);
    let gw = Gateway::start(&config, 1).await;
    let url = gw.dp().url("/users/x");
    let (clients, each) = (50usize, 20usize);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..each {
                let response = get(&url, &[]).await.expect("an answer");
                statuses.push(response.status);
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.extend(task.await.expect("a client task"));
    }
    let sent = clients * each;
    let reached = failing.requests();
    eprintln!(
        "{sent} client requests, {reached} reached the backend ({:.2}x); statuses: 503 x{}",
        reached as f64 / sent as f64,
        statuses.iter().filter(|&&s| s == 503).count()
    );
    assert!(
        statuses.iter().all(|&s| s == 503),
        "the backend's 503 is what clients get once retries are spent"
    );
    assert!(
        reached >= sent,
        "every request reached the backend at least once"
    );
    assert!(
        reached * 10 <= sent * 15,
        "{reached} backend requests for {sent}: more than the budget's share"
    );
}

/// Which requests are sent again, counted at a backend answering 503 to everything behind a
/// rule retrying 503 twice: a GET, and a PUT whose small body is kept (the behaviour table
/// checks that a retry carries it whole);
/// not a POST (not idempotent, and the rule does not say `nonIdempotent`), nor a PUT whose
/// body is over the 64 KiB kept for replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_retried_only_when_kept_and_idempotent() {
    use bytes::Bytes;
    use http::Method;

    let failing = TestBackend::start("kept").await;
    failing.set_failing(true);
    let config = docs(&[
        upstream_with("users", &[failing.addr()], ""),
        retrying("{ attempts: 2, backoff: 0.001s, codes: [503] }"),
    ]);
    let gw = Gateway::start(&config, 1).await;
    let url = gw.dp().url("/users/x");
    let small = Bytes::from_static(b"{\"name\": \"ada\"}");
    let large = Bytes::from(vec![b'x'; 64 * 1024 + 1]);
    for (method, body, tries) in [
        (Method::GET, Bytes::new(), 3),
        (Method::PUT, small.clone(), 3),
        (Method::POST, small, 1),
        (Method::PUT, large, 1),
    ] {
        let before = failing.requests();
        let response = integration_tests::request(method.clone(), &url, &[], body.clone())
            .await
            .expect("an answer");
        assert_eq!(response.status, 503, "{method} of {} bytes", body.len());
        assert_eq!(
            failing.requests() - before,
            tries,
            "{method} of {} bytes: tries at the backend",
            body.len()
        );
    }
}

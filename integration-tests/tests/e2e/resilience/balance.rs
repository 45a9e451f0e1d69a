//! The balancers that look at something: consistent hashing (a request's key) and least
//! request (requests in flight).

use std::collections::{BTreeMap, BTreeSet};

use integration_tests::{DataPlane, DemoBackend, eventually, get};

use super::{Gateway, Sample, backend::TestBackend, tally};
use crate::support::{docs, route, upstream_with, wait_served};

const HASHED: &str = "  loadBalancer: { type: ConsistentHash, hashOn: { header: x-user-id } }\n";

fn hashed(endpoints: &[std::net::SocketAddr]) -> String {
    docs(&[
        upstream_with("users", endpoints, HASHED),
        route("users", "/users", "users"),
    ])
}

/// The backend of each key: its 5 requests, alternating between the data planes, must all
/// land on one backend.
async fn owners(dps: &[DataPlane], keys: &[String]) -> BTreeMap<String, String> {
    let mut owners = BTreeMap::new();
    for key in keys {
        let mut seen = Vec::new();
        for i in 0..5 {
            let dp = &dps[i % dps.len()];
            let response = get(&dp.url("/users/x"), &[("x-user-id", key)])
                .await
                .unwrap();
            seen.push(Sample::of(&response));
        }
        assert!(
            seen.iter().all(|s| s.ok() && s.from == seen[0].from),
            "key {key} through both data planes: {:?}",
            tally(&seen)
        );
        owners.insert(key.clone(), seen[0].from.clone());
    }
    owners
}

fn spread(owners: &BTreeMap<String, String>) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for owner in owners.values() {
        *counts.entry(owner.as_str()).or_default() += 1;
    }
    counts
}

/// Maglev on `x-user-id` through two data planes: a key's requests all go to one backend
/// whichever data plane takes them, keys spread, requests without the key spread at random,
/// and a fourth endpoint takes about a quarter of the keys while the rest stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_keeps_a_key_on_one_endpoint_across_data_planes() {
    let mut backends = Vec::new();
    for n in ["a", "b", "c", "d"] {
        backends.push(DemoBackend::start(&format!("hash-{n}")).await);
    }
    let addrs: Vec<_> = backends.iter().map(DemoBackend::addr).collect();
    let gw = Gateway::start(&hashed(&addrs[..3]), 2).await;
    let keys: Vec<String> = (0..50).map(|k| format!("user-{k}")).collect();

    let before = owners(&gw.dps, &keys).await;
    eprintln!("50 keys over three: {:?}", spread(&before));
    assert!(
        spread(&before).len() > 1,
        "every key on one backend: {:?}",
        spread(&before)
    );
    let mut keyless = BTreeSet::new();
    for _ in 0..30 {
        keyless.insert(Sample::of(&gw.dp().get("/users/x").await.unwrap()).from);
    }
    eprintln!("30 requests without the key reached {keyless:?}");
    assert!(keyless.len() > 1, "without the key: only {keyless:?}");

    gw.rewrite(&hashed(&addrs));
    for dp in &gw.dps {
        wait_served(dp, "/users/x", backends[3].name()).await;
    }
    let after = owners(&gw.dps, &keys).await;
    let kept = keys.iter().filter(|k| before[*k] == after[*k]).count();
    let to_new = keys
        .iter()
        .filter(|k| before[*k] != after[*k] && after[*k] == backends[3].name())
        .count();
    eprintln!(
        "four endpoints: {:?}; kept {kept} of 50, moved to the new one {to_new}, elsewhere {}",
        spread(&after),
        50 - kept - to_new
    );
    assert!(
        kept >= 30,
        "only {kept} of 50 keys stayed (expected about 3/4)"
    );
    assert!(to_new > 0, "the new endpoint took no key");
}

/// LeastRequest over two endpoints with requests held at A: new requests mostly go to B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_prefers_the_idle_endpoint() {
    let (share, a, b) = least_request_share(2, 300).await;
    eprintln!("{share:.2} of new requests to the idle endpoint");
    // Load-blind balancers give 0.5; two random picks with replacement give 0.75.
    assert!(
        share >= 0.65,
        "{share:.2} to the idle endpoint ({a} to the busy one, {b} to the idle one)"
    );
}

/// The brief's bar: with two endpoints, "the less loaded of two" should be the idle one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_sends_at_least_80_percent_to_the_idle_endpoint() {
    // 400: the expected 0.75 is then 2.3 standard deviations below the bar. Two holds: once A
    // holds more than B has in flight, it takes a new one only by chance (the picks compare
    // the two), so more holds make the set-up itself a matter of luck.
    let (share, a, b) = least_request_share(2, 400).await;
    assert!(
        share >= 0.8,
        "{share:.2} to the idle endpoint ({a} to the busy one, {b} to the idle one)"
    );
}

/// Holds `holds` requests at A (B answers `/slow` at once, so the holds that land on it end),
/// then sends `fast` sequential requests; returns B's share and both counts.
async fn least_request_share(holds: usize, fast: usize) -> (f64, usize, usize) {
    let a = TestBackend::start("lr-busy").await;
    let b = TestBackend::start("lr-idle").await;
    b.set_holds(false);
    let gw = Gateway::start(
        &docs(&[
            upstream_with(
                "lr",
                &[a.addr(), b.addr()],
                "  loadBalancer: { type: LeastRequest }\n",
            ),
            route("lr", "/lr", "lr"),
        ]),
        1,
    )
    .await;
    let dp = gw.dp();
    wait_served_by(dp, a.name()).await;
    wait_served_by(dp, b.name()).await;

    let mut held = Vec::new();
    let mut sent = 0;
    while a.held() < holds {
        sent += 1;
        assert!(
            sent <= 50 * holds,
            "{sent} tries and {} held at A",
            a.held()
        );
        let before = a.held();
        let url = dp.url("/lr/slow");
        let request = tokio::spawn(async move { get(&url, &[]).await });
        eventually("the hold to land", || async {
            anyhow::ensure!(request.is_finished() || a.held() > before, "not yet");
            Ok(())
        })
        .await;
        if request.is_finished() {
            let sample = Sample::of(&request.await.unwrap().unwrap());
            assert!(sample.is(b.name()), "a /slow not held: {sample:?}");
        } else {
            held.push(request);
        }
    }
    eprintln!("{holds} held at A after {sent} /slow requests");

    let mut seen = Vec::new();
    for _ in 0..fast {
        seen.push(Sample::of(&dp.get("/lr/x").await.unwrap()));
    }
    let counts = tally(&seen);
    eprintln!("with {holds} held at A, {fast} new requests: {counts:?}");
    assert!(seen.iter().all(Sample::ok), "{counts:?}");
    let to_a = seen.iter().filter(|s| s.is(a.name())).count();
    let to_b = seen.iter().filter(|s| s.is(b.name())).count();

    a.release();
    for request in held {
        let sample = Sample::of(&request.await.unwrap().unwrap());
        assert!(sample.is(a.name()), "a held request: {sample:?}");
    }
    (to_b as f64 / fast as f64, to_a, to_b)
}

async fn wait_served_by(dp: &DataPlane, backend: &str) {
    eventually(&format!("/lr/x to reach {backend}"), || async {
        let sample = Sample::of(&dp.get("/lr/x").await?);
        anyhow::ensure!(sample.is(backend), "{sample:?}");
        Ok(())
    })
    .await;
}

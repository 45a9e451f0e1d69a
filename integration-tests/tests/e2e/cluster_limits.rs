//! Cluster rate limits (`scope: Cluster`): one GCRA bucket shared by every data plane through
//! a real redis-server, and each data plane's share of it when Redis is away.
//!
//! The data planes are standalone, all reading the same config file. The load is sent as fast
//! as the machine allows over keep-alive connections, so the counts are compared with what
//! the bucket allows over the time the load took (capacity + rate × elapsed), never with a
//! fixed number that a slow machine would miss. Every count is printed, to be seen on failure.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use integration_tests::{
    DataPlane, DataPlaneOpts, DemoBackend, HttpResponse, KeepAlive, RedisServer, eventually, get,
    write_file,
};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::keys::{guarded, policy};
use crate::support::{docs, route, upstream, wait_served};

/// The limited route; its policy is named `shared`, so its Redis keys start with this.
const LIMITED: &str = "/limited/x";
const KEY_PREFIX: &str = "gateway:rl:shared:";
const MEMBERS_KEY: &str = "gateway:rl:data-planes";

// === the tests ===

/// 60 per 10 s with a burst of 240 (capacity 300, refilled 6/s), across three data planes
/// loaded at once: together they admit what one bucket allows, not three times as much.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_data_planes_share_one_limit() {
    let redis = RedisServer::start().await;
    let limit = json!({ "requests": 60, "per": "10s", "burst": 240 });
    let gw = Gateway::start("share", limit, Some(&redis), 3, 3, &[]).await;
    wait_counted(&redis, &gw.dps, 3).await;

    let load = gw.load(&gw.all(), 3, 1000).await;
    load.print("three data planes, one limit");
    load.assert_only_200_and_429();
    let secs = load.elapsed.as_secs_f64();
    let expected = 300.0 + 6.0 * secs;
    let admitted = load.admitted() as f64;
    eprintln!("expected ≈ 300 + 6 × {secs:.2} s = {expected:.1}, admitted {admitted}");
    assert!(
        (admitted - expected).abs() <= expected * 0.1,
        "three data planes sharing capacity 300 + 6/s over {secs:.2} s admitted {admitted}, \
         expected {expected:.1} ± 10 %"
    );
    assert!(
        load.limited() > 0,
        "1000 requests against capacity ~300 were all admitted"
    );

    // The shared bucket is in Redis, and every data plane talked to it.
    let keys = shared_keys(&redis).await.expect("KEYS");
    eprintln!("redis keys: {keys:?}");
    assert!(!keys.is_empty(), "no {KEY_PREFIX}* key in Redis");
    for dp in &gw.dps {
        let calls = metric(dp, "gateway_redis_calls_total").await.unwrap();
        let failures = metric(dp, "gateway_redis_sync_failures_total")
            .await
            .unwrap();
        eprintln!("{}: {calls} Redis calls, {failures} failed syncs", dp.id());
        assert!(calls > 0, "{}: no Redis calls", dp.id());
    }
}

/// Capacity 90 (30 per 60 s, burst 60; refilled 0.5/s) across three data planes. With Redis
/// killed every one keeps serving, each admitting a third of the limit alone; once Redis is
/// back they sync with it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_each_data_plane_enforces_its_share_then_sharing_resumes() {
    let mut redis = RedisServer::start().await;
    let limit = json!({ "requests": 30, "per": "60s", "burst": 60 });
    let gw = Gateway::start("outage", limit, Some(&redis), 3, 3, &[]).await;
    wait_counted(&redis, &gw.dps, 3).await;
    // A few requests while Redis is up, so that the shared bucket is seen in it.
    for dp in &gw.dps {
        let response = dp.get(LIMITED).await.unwrap();
        assert_eq!(response.status, 200, "{}: {}", dp.id(), response.text());
    }
    let before = wait_shared_keys(&redis, &gw, "before the outage").await;
    eprintln!("redis keys before the outage: {before:?}");

    redis.kill().await;
    for dp in &gw.dps {
        wait_metric(dp, "gateway_redis_up", 0).await;
        // Each takes its share of what Redis last counted, not of --cluster-size.
        let counted = metric(dp, "gateway_cluster_data_planes").await.unwrap();
        assert_eq!(
            counted,
            3,
            "{}: data planes counted while Redis is down",
            dp.id()
        );
    }

    let load = gw.load(&gw.all(), 1, 600).await;
    load.print("Redis down, each data plane alone");
    load.assert_only_200_and_429();
    // Its share refills at a third of 0.5/s.
    let refill = (0.5 / 3.0 * load.elapsed.as_secs_f64()).ceil() as usize;
    for (dp, tally) in gw.dps.iter().zip(&load.per_dp) {
        let admitted = tally.admitted;
        eprintln!(
            "{}: admitted {admitted} of {} alone (share 90 / 3 = 30, + at most {refill} refilled)",
            dp.id(),
            tally.sent()
        );
        assert!(
            (25..=40).contains(&admitted),
            "{}: with Redis down a data plane of three admits about 90 / 3 = 30, admitted {admitted}",
            dp.id()
        );
        let failures = metric(dp, "gateway_redis_sync_failures_total")
            .await
            .unwrap();
        assert!(failures > 0, "{}: no failed sync counted", dp.id());
    }

    redis.restart().await;
    for dp in &gw.dps {
        wait_metric(dp, "gateway_redis_up", 1).await;
    }
    // Redis came back empty: keys in it now are syncs made since.
    let after = wait_shared_keys(&redis, &gw, "after Redis came back").await;
    eprintln!("redis keys after the outage: {after:?}");
    wait_counted(&redis, &gw.dps, 3).await;
}

/// Without `--redis-url` a Cluster limit is enforced alone: capacity 90 (30 per 60 s, burst
/// 60) with `--cluster-size 2` admits 45 (+ 0.25/s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_limit_without_redis_is_each_data_planes_share() {
    let limit = json!({ "requests": 30, "per": "60s", "burst": 60 });
    let gw = Gateway::start("alone", limit, None, 2, 1, &[]).await;
    let dp = &gw.dps[0];
    assert_eq!(metric(dp, "gateway_redis_up").await.unwrap(), 0);
    assert_eq!(metric(dp, "gateway_cluster_data_planes").await.unwrap(), 2);

    let load = gw.load(&gw.all(), 1, 100).await;
    load.print("no Redis, --cluster-size 2");
    load.assert_only_200_and_429();
    let refill = (0.25 * load.elapsed.as_secs_f64()).ceil() as usize;
    let admitted = load.admitted();
    assert!(
        (45..=45 + refill + 1).contains(&admitted),
        "capacity 90 shared by 2 without Redis: expected 45 (+ at most {refill} refilled), \
         admitted {admitted}"
    );
    assert_eq!(metric(dp, "gateway_redis_calls_total").await.unwrap(), 0);
}

// === the bounds ===

/// Data planes admit only tokens Redis leased them, except up to `max(1, capacity / (10 ×
/// data planes))` each for a key before its first grant: together at most capacity + refill
/// + that allowance per data plane (here 3 × 10), however long the sync interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_planes_overshoot_by_at_most_their_first_allowance() {
    let redis = RedisServer::start().await;
    let limit = json!({ "requests": 60, "per": "10s", "burst": 240 });
    let args = ["--redis-sync-interval", "200ms"];
    let gw = Gateway::start("overshoot", limit, Some(&redis), 3, 3, &args).await;
    wait_counted(&redis, &gw.dps, 3).await;
    let load = gw.load(&gw.all(), 3, 1500).await;
    load.print("three data planes, 200 ms syncs");
    load.assert_only_200_and_429();
    let allowed = 300.0 + 6.0 * load.elapsed.as_secs_f64() + 3.0 * 10.0;
    assert!(
        load.admitted() as f64 <= allowed,
        "admitted {}, at most {allowed:.1} by the documented bound",
        load.admitted()
    );
}

/// `key: Route` is one bucket per route, even when routes share the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routes_with_one_route_keyed_policy_have_a_bucket_each() {
    let redis = RedisServer::start().await;
    let limit = json!({ "requests": 5, "per": "60s", "burst": 0 });
    let gw = Gateway::start("routes", limit, Some(&redis), 1, 1, &[]).await;
    wait_counted(&redis, &gw.dps, 1).await;
    let first = gw.load_path("/limited/x", &gw.all(), 1, 10).await;
    first.print("/limited");
    let second = gw.load_path("/other/x", &gw.all(), 1, 10).await;
    second.print("/other, after /limited used its bucket");
    eprintln!("redis keys: {:?}", shared_keys(&redis).await);
    assert_eq!(first.admitted(), 5, "/limited: 5 per 60 s");
    assert_eq!(second.admitted(), 5, "/other has a bucket of its own");
}

// === the gateway under test ===

/// An echo backend and `count` standalone data planes reading one file: the `echo` upstream,
/// an open route `/open`, and `/limited` and `/other` behind the Cluster policy `shared`.
struct Gateway {
    dps: Vec<DataPlane>,
    backend: DemoBackend,
    _dir: TempDir,
}

impl Gateway {
    async fn start(
        name: &str,
        limit: Value,
        redis: Option<&RedisServer>,
        cluster_size: u64,
        count: usize,
        args: &[&str],
    ) -> Gateway {
        let backend = DemoBackend::start(&format!("echo-rl-{name}")).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.yaml");
        let spec = json!({ "limits": [limit], "key": "Route", "scope": "Cluster" });
        write_file(
            &file,
            docs(&[
                upstream("echo", &[backend.addr()]),
                route("open", "/open", "echo"),
                policy("shared", json!({ "rateLimit": spec })),
                guarded("limited", "/limited", &["shared"]),
                guarded("other", "/other", &["shared"]),
            ]),
        );
        let mut dps = Vec::new();
        for _ in 0..count {
            let mut opts = DataPlaneOpts::standalone(&file)
                .arg("--cluster-size")
                .arg(cluster_size.to_string());
            for arg in args {
                opts = opts.arg(*arg);
            }
            if let Some(redis) = redis {
                opts = opts.arg("--redis-url").arg(redis.url());
            }
            let dp = DataPlane::start(opts).await;
            wait_served(&dp, "/open/ready", backend.name()).await;
            dps.push(dp);
        }
        Gateway {
            dps,
            backend,
            _dir: dir,
        }
    }

    fn all(&self) -> Vec<&DataPlane> {
        self.dps.iter().collect()
    }

    /// `total` GETs of [`LIMITED`], split evenly over `dps`, each data plane's share sent by
    /// `tasks` concurrent keep-alive connections as fast as they are answered.
    async fn load(&self, dps: &[&DataPlane], tasks: usize, total: usize) -> Load {
        self.load_path(LIMITED, dps, tasks, total).await
    }

    async fn load_path(&self, path: &str, dps: &[&DataPlane], tasks: usize, total: usize) -> Load {
        let started = Instant::now();
        let mut handles = Vec::new();
        for (i, dp) in dps.iter().enumerate() {
            let share = total / dps.len() + usize::from(i < total % dps.len());
            let budget = Arc::new(AtomicUsize::new(share));
            let url = dp.url(path);
            let mut mine = Vec::new();
            for _ in 0..tasks {
                let (budget, url) = (budget.clone(), url.clone());
                let backend = self.backend.name().to_owned();
                mine.push(tokio::spawn(send(url, backend, budget)));
            }
            handles.push(mine);
        }
        let mut per_dp = Vec::new();
        for mine in handles {
            let mut tally = Tally::default();
            for handle in mine {
                tally.add(handle.await.expect("a load task panicked"));
            }
            per_dp.push(tally);
        }
        Load {
            per_dp,
            elapsed: started.elapsed(),
        }
    }
}

/// Sends GETs of `url` over one keep-alive connection while `budget` lasts.
async fn send(url: String, backend: String, budget: Arc<AtomicUsize>) -> Tally {
    let client = KeepAlive::default();
    let mut tally = Tally::default();
    while budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        match client.get(&url).await {
            Ok(response) => tally.record(&response, &backend),
            Err(error) => tally.fail(format!("{error:#}")),
        }
    }
    tally
}

/// What one data plane answered.
#[derive(Debug, Default)]
struct Tally {
    admitted: usize,
    limited: usize,
    failed: usize,
    /// The first few failures, for the message.
    failures: Vec<String>,
}

impl Tally {
    fn sent(&self) -> usize {
        self.admitted + self.limited + self.failed
    }

    /// A 200 must be the backend's echo with a `RateLimit` header; a 429 the gateway's
    /// `rate_limited` error with `Retry-After`; nothing else is expected.
    fn record(&mut self, response: &HttpResponse, backend: &str) {
        let json: Value = response.json().unwrap_or(Value::Null);
        let text = response.text();
        let has = |name: &str| response.headers.contains_key(name);
        match response.status {
            200 if json["backend"] == backend && has("ratelimit") => self.admitted += 1,
            429 if json["error"]["code"] == "rate_limited" && has("retry-after") => {
                self.limited += 1;
            }
            status => self.fail(format!("{status} {:?}: {text}", response.headers)),
        }
    }

    fn fail(&mut self, failure: String) {
        self.failed += 1;
        if self.failures.len() < 5 {
            self.failures.push(failure);
        }
    }

    fn add(&mut self, other: Tally) {
        self.admitted += other.admitted;
        self.limited += other.limited;
        self.failed += other.failed;
        let room = 5usize.saturating_sub(self.failures.len());
        self.failures.extend(other.failures.into_iter().take(room));
    }
}

/// A load's answers, per data plane.
#[derive(Debug)]
struct Load {
    per_dp: Vec<Tally>,
    elapsed: Duration,
}

impl Load {
    fn admitted(&self) -> usize {
        self.per_dp.iter().map(|t| t.admitted).sum()
    }

    fn limited(&self) -> usize {
        self.per_dp.iter().map(|t| t.limited).sum()
    }

    fn print(&self, what: &str) {
        let per_dp: Vec<String> = self
            .per_dp
            .iter()
            .map(|t| format!("{}/{}/{}", t.admitted, t.limited, t.failed))
            .collect();
        eprintln!(
            "{what}: admitted {}, limited {} in {:.2} s; per data plane (200/429/other): {}",
            self.admitted(),
            self.limited(),
            self.elapsed.as_secs_f64(),
            per_dp.join(", ")
        );
    }

    #[track_caller]
    fn assert_only_200_and_429(&self) {
        for (i, tally) in self.per_dp.iter().enumerate() {
            assert_eq!(
                tally.failed, 0,
                "data plane {i}: answers other than 200 and 429 (or none): {:#?}",
                tally.failures
            );
        }
    }
}

// === Redis and the metrics ===

/// One value of a data plane's `/metrics`.
async fn metric(dp: &DataPlane, name: &str) -> anyhow::Result<u64> {
    let response = get(&dp.admin_url("/metrics"), &[]).await?;
    anyhow::ensure!(response.status == 200, "/metrics: {}", response.status);
    let text = response.text();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .ok_or_else(|| anyhow::anyhow!("no {name} in /metrics:\n{text}"))?
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

async fn wait_metric(dp: &DataPlane, name: &str, value: u64) {
    eventually(&format!("{} to show {name} {value}", dp.id()), || async {
        let got = metric(dp, name).await?;
        anyhow::ensure!(got == value, "{name} {got}");
        Ok(())
    })
    .await;
}

/// Waits until Redis counts `n` data planes syncing and each of `dps` says so, with Redis up.
async fn wait_counted(redis: &RedisServer, dps: &[DataPlane], n: u64) {
    eventually(&format!("Redis to count {n} data planes"), || async {
        let members = redis.command(&["ZCARD", MEMBERS_KEY]).await?;
        anyhow::ensure!(members == n.to_string(), "ZCARD {MEMBERS_KEY}: {members}");
        for dp in dps {
            let up = metric(dp, "gateway_redis_up").await?;
            let counted = metric(dp, "gateway_cluster_data_planes").await?;
            anyhow::ensure!(
                up == 1 && counted == n,
                "{}: gateway_redis_up {up}, gateway_cluster_data_planes {counted}",
                dp.id()
            );
        }
        Ok(())
    })
    .await;
}

/// The keys of the `shared` policy's buckets in Redis.
async fn shared_keys(redis: &RedisServer) -> anyhow::Result<Vec<String>> {
    let pattern = format!("{KEY_PREFIX}*");
    let keys = redis.command(&["KEYS", &pattern]).await?;
    Ok(keys
        .lines()
        .filter(|k| !k.is_empty() && *k != MEMBERS_KEY)
        .map(str::to_owned)
        .collect())
}

/// Sends a request through each data plane until the `shared` bucket is in Redis (a key lives
/// about as long as its bucket is not full again, so it is looked for right after traffic).
async fn wait_shared_keys(redis: &RedisServer, gw: &Gateway, what: &str) -> Vec<String> {
    eventually(&format!("the shared bucket in Redis {what}"), || async {
        for dp in &gw.dps {
            let status = dp.get(LIMITED).await?.status;
            anyhow::ensure!(
                status == 200 || status == 429,
                "{}: GET {LIMITED} answered {status}",
                dp.id()
            );
        }
        let keys = shared_keys(redis).await?;
        anyhow::ensure!(!keys.is_empty(), "no {KEY_PREFIX}* key");
        Ok(keys)
    })
    .await
}

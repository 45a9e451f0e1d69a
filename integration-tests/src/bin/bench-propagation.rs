//! Propagation benchmark: how long after `gatewayctl apply` returns does every data plane serve
//! the change?
//!
//! Starts a real etcd, one control plane, N data planes and a demo backend (the release
//! binaries when built with `--release`), then applies C changes one after the other, each a
//! new route `/bench/<i>`. For each change it polls every data plane for the new path (every
//! 0.5 ms, one keep-alive connection each) and records when the last one answered 200.
//!
//! `bench-propagation [--data-planes N] [--changes C] [--base-routes R] [--embedded]
//! [--simulated-streams N [--streams-per-connection K] [--idle-secs S]]`: with `--base-routes`,
//! R routes are applied first, so that every change ships (and every data plane compiles) a
//! config of that size. `--embedded` uses the control plane's embedded store instead of etcd.
//!
//! `--simulated-streams N` (N >= 1; a fleet simulator, in `bench-propagation/simulated.rs`)
//! starts no data plane and no backend. This process opens N discovery streams to the control
//! plane itself, each acting as data plane `sim-<i>`: Hello with version 0 and the delta and
//! packed features, then it decodes (and unpacks) every message, answers each snapshot or delta
//! with an Ack at once, sends a heartbeat every 5 s, and keeps only the version, never the
//! configuration. The streams authenticate with a data-plane token that the benchmark gives the
//! control plane (`authorization: Bearer ...`, as the data plane sends it). They share gRPC
//! channels: K streams per HTTP/2 connection (default 100), so ceil(N/K) TCP connections.
//! `--streams-per-connection 1` gives every stream a connection of its own, as real data planes
//! have; then `ulimit -n` must allow N plus a few dozen descriptors (this process and the control
//! plane each hold one per connection). `--idle-secs S` keeps the streams idle S seconds after
//! the first snapshot (more than 15 s checks that heartbeats keep them open).
//!
//! It reports the initial full-snapshot fan-out (from opening the streams to the last stream
//! decoding, and ACKing, its first snapshot); for each change, from `apply` returning (and, an
//! upper bound, from starting it) to the last stream decoding the new version and to the last
//! stream queuing its Ack; the bytes received per stream (the encoded `ControlPlaneMessage`: the
//! packed bytes and their protobuf tag and length, without gRPC or HTTP/2 framing; and its size
//! unpacked) for the first snapshot and the median change; and the control plane's RSS and CPU time (`/proc/<pid>`) before the streams
//! open, once all are in sync, and after the changes, in total, per stream and per change. The
//! simulator shares the machine's cores with the control plane: its own decoding (reported as
//! its CPU time) competes with the control plane, and dominates the first fan-out of a large
//! configuration on a small machine.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use integration_tests::{
    ControlPlane, ControlPlaneOpts, CtlOutput, DataPlane, DataPlaneOpts, DemoBackend, Etcd,
    Gatewayctl, applied_version, unique_prefix,
};

#[path = "bench-propagation/observe.rs"]
mod observe;
#[path = "bench-propagation/simulated.rs"]
mod simulated;

struct Args {
    data_planes: usize,
    changes: usize,
    base_routes: usize,
    embedded: bool,
    simulated_streams: Option<usize>,
    streams_per_connection: usize,
    idle: Duration,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        data_planes: 10,
        changes: 100,
        base_routes: 0,
        embedded: false,
        simulated_streams: None,
        streams_per_connection: 100,
        idle: Duration::ZERO,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--data-planes" => args.data_planes = it.next().context("--data-planes N")?.parse()?,
            "--changes" => args.changes = it.next().context("--changes C")?.parse()?,
            "--base-routes" => args.base_routes = it.next().context("--base-routes R")?.parse()?,
            "--embedded" => args.embedded = true,
            "--simulated-streams" => {
                let n: usize = it.next().context("--simulated-streams N")?.parse()?;
                if n == 0 {
                    bail!("--simulated-streams: N must be at least 1");
                }
                args.simulated_streams = Some(n);
            }
            "--streams-per-connection" => {
                let k: usize = it.next().context("--streams-per-connection K")?.parse()?;
                if k == 0 {
                    bail!("--streams-per-connection: K must be at least 1");
                }
                args.streams_per_connection = k;
            }
            "--idle-secs" => {
                let secs: u64 = it.next().context("--idle-secs S")?.parse()?;
                args.idle = Duration::from_secs(secs);
            }
            other => bail!(
                "unknown argument {other:?} (--data-planes N --changes C --base-routes R --embedded \
                 --simulated-streams N --streams-per-connection K --idle-secs S)"
            ),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let etcd = if args.embedded {
        None
    } else {
        Some(Etcd::start().await)
    };
    let mut opts = match &etcd {
        Some(etcd) => ControlPlaneOpts::etcd(etcd.endpoint(), unique_prefix()),
        None => ControlPlaneOpts::embedded(),
    };
    if args.simulated_streams.is_some() {
        opts = opts.dataplane_token(simulated::TOKEN);
    }
    let cp = ControlPlane::start(opts).await;
    let ctl = cp.ctl();
    if let Some(streams) = args.simulated_streams {
        // Simulated data planes serve no traffic: the upstream needs no backend behind it.
        let output = apply_base(&ctl, "127.0.0.1:9", args.base_routes).await;
        let version = applied_version(&output)
            .with_context(|| format!("no `applied version N` in\n{output}"))?;
        let opts = simulated::Opts {
            streams,
            per_connection: args.streams_per_connection,
            changes: args.changes,
            base_routes: args.base_routes,
            store: if args.embedded { "embedded" } else { "etcd" },
            idle: args.idle,
        };
        return simulated::run(&cp, &ctl, version, &opts).await;
    }
    let backend = DemoBackend::start("bench").await;
    apply_base(&ctl, &backend.addr().to_string(), args.base_routes).await;

    let mut data_planes = Vec::new();
    for _ in 0..args.data_planes {
        data_planes.push(DataPlane::start(DataPlaneOpts::control_planes([cp.url()])).await);
    }
    for dp in &data_planes {
        dp.wait_ready().await;
    }
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(4)
        .build_http();

    let mut samples = Vec::with_capacity(args.changes);
    for i in 0..args.changes {
        ctl.apply_yaml(&change_yaml(i), &[]).await.success();
        let applied = Instant::now();
        let mut waits = tokio::task::JoinSet::new();
        for dp in &data_planes {
            let url: hyper::Uri = dp.url(&format!("/bench/{i}")).parse()?;
            let client = client.clone();
            waits.spawn(async move { wait_for_200(&client, url, applied).await });
        }
        let mut slowest = Duration::ZERO;
        while let Some(done) = waits.join_next().await {
            slowest = slowest.max(done??);
        }
        samples.push(slowest);
    }

    samples.sort();
    let pct = |p: f64| percentile(&samples, p);
    println!(
        "store={} data_planes={} base_routes={} changes={}: apply returned -> all serving: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        if args.embedded { "embedded" } else { "etcd" },
        args.data_planes,
        args.base_routes,
        args.changes,
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(pct(1.0)),
    );
    Ok(())
}

/// Applies the upstream `bench` (endpoint `backend`), then `base_routes` routes in one apply;
/// the output of the last apply.
async fn apply_base(ctl: &Gatewayctl, backend: &str, base_routes: usize) -> CtlOutput {
    let upstream =
        format!("kind: Upstream\nname: bench\nspec:\n  endpoints:\n    - address: {backend}\n");
    let mut output = ctl.apply_yaml(&upstream, &[]).await;
    output.success();
    if base_routes > 0 {
        let base: String = (0..base_routes)
            .map(|i| {
                format!(
                    "kind: Route\nname: base-{i}\nspec:\n  rules:\n    - matches:\n        - path: {{ type: PathPrefix, value: /base/{i} }}\n      backendRefs:\n        - name: bench\n---\n"
                )
            })
            .collect();
        output = ctl.apply_yaml(&base, &[]).await;
        output.success();
    }
    output
}

/// Change `i`: a new route `bench-<i>` for `/bench/<i>`.
fn change_yaml(i: usize) -> String {
    format!(
        "kind: Route\nname: bench-{i}\nspec:\n  rules:\n    - matches:\n        - path: {{ type: Exact, value: /bench/{i} }}\n      backendRefs:\n        - name: bench\n"
    )
}

/// The `p` quantile (0..=1, nearest rank) of sorted `samples`; zero when there are none.
fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Polls `url` until it answers 200; the time since `since`.
async fn wait_for_200<C>(
    client: &Client<C, Empty<Bytes>>,
    url: hyper::Uri,
    since: Instant,
) -> anyhow::Result<Duration>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let deadline = since + Duration::from_secs(30);
    loop {
        let response = client.get(url.clone()).await?;
        let status = response.status();
        // Drain the body so that the connection goes back to the pool.
        response.into_body().collect().await?;
        if status == 200 {
            return Ok(since.elapsed());
        }
        if Instant::now() > deadline {
            bail!("{url} still answers {status} after 30 s");
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

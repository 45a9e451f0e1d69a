//! Propagation benchmark: how long after `gatewayctl apply` returns does every data plane serve
//! the change?
//!
//! Starts a real etcd, one control plane, N data planes and a demo backend (the release
//! binaries when built with `--release`), then applies C changes one after the other, each a
//! new route `/bench/<i>`. For each change it polls every data plane for the new path (every
//! 0.5 ms, one keep-alive connection each) and records when the last one answered 200.
//!
//! `bench-propagation [--data-planes N] [--changes C] [--base-routes R] [--embedded]`: with
//! `--base-routes`, R routes are applied first, so that every change ships (and every data plane
//! compiles) a config of that size.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use integration_tests::{
    ControlPlane, ControlPlaneOpts, DataPlane, DataPlaneOpts, DemoBackend, Etcd, unique_prefix,
};

struct Args {
    data_planes: usize,
    changes: usize,
    base_routes: usize,
    embedded: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        data_planes: 10,
        changes: 100,
        base_routes: 0,
        embedded: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--data-planes" => args.data_planes = it.next().context("--data-planes N")?.parse()?,
            "--changes" => args.changes = it.next().context("--changes C")?.parse()?,
            "--base-routes" => args.base_routes = it.next().context("--base-routes R")?.parse()?,
            "--embedded" => args.embedded = true,
            other => bail!(
                "unknown argument {other:?} (--data-planes N --changes C --base-routes R --embedded)"
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
    let opts = match &etcd {
        Some(etcd) => ControlPlaneOpts::etcd(etcd.endpoint(), unique_prefix()),
        None => ControlPlaneOpts::embedded(),
    };
    let cp = ControlPlane::start(opts).await;
    let backend = DemoBackend::start("bench").await;
    let ctl = cp.ctl();
    let upstream = format!(
        "kind: Upstream\nname: bench\nspec:\n  endpoints:\n    - address: {}\n",
        backend.addr()
    );
    ctl.apply_yaml(&upstream, &[]).await.success();
    if args.base_routes > 0 {
        let base: String = (0..args.base_routes)
            .map(|i| {
                format!(
                    "kind: Route\nname: base-{i}\nspec:\n  rules:\n    - matches:\n        - path: {{ type: PathPrefix, value: /base/{i} }}\n      backendRefs:\n        - name: bench\n---\n"
                )
            })
            .collect();
        ctl.apply_yaml(&base, &[]).await.success();
    }

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
        let route = format!(
            "kind: Route\nname: bench-{i}\nspec:\n  rules:\n    - matches:\n        - path: {{ type: Exact, value: /bench/{i} }}\n      backendRefs:\n        - name: bench\n"
        );
        ctl.apply_yaml(&route, &[]).await.success();
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
    let pct =
        |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
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

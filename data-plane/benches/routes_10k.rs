//! 10,000 routes: the snapshot's size on the wire, the data plane's compile time, and memory.
//!
//! `cargo bench -p gateway-data-plane --bench routes_10k -- [--routes N] [--no-regex] [--yaml FILE]`
//!
//! The config mixes what large installations have: 100 upstreams; routes with Exact (30%),
//! PathPrefix (40%), Template (25%) and RegularExpression (5%) paths, half of them on one of
//! 50 hostnames, a fifth with a method and a header match. `--no-regex` makes the regular
//! expressions templates. `--yaml FILE` also writes it as a
//! resource file, for measuring the real binary (`bench/routes-10k.sh`).

use std::{io::Write as _, time::Instant};

use gateway_data_plane::{Source, Table, side::SideTables};
use gateway_proto::v1::{
    self, BackendRef, Endpoint, HeaderMatch, PathMatch, RouteMatch, RouteRule, RouteSpec,
    UpstreamSpec, path_match, resource::Spec,
};
use prost::Message as _;

fn main() {
    let mut routes = 10_000;
    let mut yaml_out = None;
    let mut regexes = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--routes" => {
                routes = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--routes N")
            }
            "--yaml" => yaml_out = args.next(),
            "--no-regex" => regexes = false,
            // cargo bench passes --bench.
            _ => {}
        }
    }

    let rss_start = rss_kib();
    let resources = config(routes, regexes);
    let snapshot = v1::Snapshot {
        version: 1,
        resources,
    };
    let encoded = snapshot.encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&encoded).expect("in-memory gzip");
    let gzipped = gz.finish().expect("in-memory gzip");
    if let Some(path) = yaml_out {
        std::fs::write(&path, gateway_proto::document::to_yaml(&snapshot.resources))
            .expect("write --yaml file");
        println!("wrote {path}");
    }
    let rss_snapshot = rss_kib();

    // Cold: a data plane's first snapshot, every regular expression compiled.
    let side = SideTables::default();
    let started = Instant::now();
    let mut table = Table::compile(
        snapshot.version,
        &snapshot.resources,
        Source::ControlPlane,
        &side,
    )
    .expect("generated config compiles");
    let first_compile = started.elapsed().as_secs_f64() * 1e3;
    // Warm: the next snapshots, as after a change of one route.
    let mut compile_ms = Vec::new();
    let mut validate_ms = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        gateway_proto::validate_with(&snapshot.resources, side.regexes())
            .expect("generated config is valid");
        validate_ms.push(started.elapsed().as_secs_f64() * 1e3);
        // Drop the previous table first, as a swap does once in-flight requests finish.
        drop(table);
        let started = Instant::now();
        table = Table::compile(
            snapshot.version,
            &snapshot.resources,
            Source::ControlPlane,
            &side,
        )
        .expect("generated config compiles");
        compile_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let rss_table = rss_kib();

    validate_ms.sort_by(f64::total_cmp);
    let recompiles = &mut compile_ms[..];
    recompiles.sort_by(f64::total_cmp);
    println!("routes: {} ({} compiled)", routes, table.routes());
    println!(
        "snapshot: {:.2} MiB protobuf, {:.2} MiB gzip on the wire",
        mib(encoded.len()),
        mib(gzipped.len())
    );
    println!(
        "compile (validate included): first {first_compile:.1} ms, recompile median {:.1} ms, max {:.1} ms; validate alone median {:.1} ms",
        recompiles[recompiles.len() / 2],
        recompiles[recompiles.len() - 1],
        validate_ms[validate_ms.len() / 2],
    );
    println!(
        "RSS: {:.1} MiB at start, {:.1} MiB with the snapshot, {:.1} MiB with snapshot + table",
        rss_start / 1024.0,
        rss_snapshot / 1024.0,
        rss_table / 1024.0
    );
    drop(table);
    one_route_changed(snapshot);
}

/// A delta of one changed route, as the data plane takes it: applied to the snapshot held,
/// checked against the graph, compiled into an update of the table, swapped in.
fn one_route_changed(mut snapshot: v1::Snapshot) {
    use gateway_data_plane::state::{Settings, State};
    use gateway_proto::{ResourceKind, delta, validate::Graph};

    delta::sort(&mut snapshot.resources);
    let state = State::new(Settings::default());
    let first = Table::compile(1, &snapshot.resources, Source::ControlPlane, state.side())
        .expect("generated config compiles");
    state.install(first);
    let mut graph = Graph::of(&snapshot.resources);
    let routes: Vec<String> = snapshot
        .resources
        .iter()
        .filter(|r| matches!(r.spec, Some(Spec::Route(_))))
        .map(|r| r.name.clone())
        .collect();
    let (mut apply, mut check, mut update, mut swap, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let ms = |since: Instant| since.elapsed().as_secs_f64() * 1e3;
    for i in 0..200 {
        let name = &routes[(i * 7919) % routes.len()];
        let at = snapshot
            .resources
            .iter()
            .position(|r| &r.name == name)
            .expect("the route is held");
        let mut changed = snapshot.resources[at].clone();
        if let Some(Spec::Route(spec)) = &mut changed.spec {
            // A new Exact path: a change that cannot conflict.
            spec.rules[0].matches[0].path = Some(PathMatch {
                r#type: path_match::Type::Exact as i32,
                value: format!("/changed/{i}"),
            });
        }
        let change = put_one(&snapshot, changed);
        let started = Instant::now();
        let _undo = delta::apply(&mut snapshot, change).expect("the delta applies");
        apply.push(ms(started));
        let t = Instant::now();
        let checked = graph
            .check_changed(
                &snapshot.resources,
                &[(ResourceKind::Route, name.as_str())],
                state.side().regexes(),
            )
            .expect("the change is valid");
        check.push(ms(t));
        let t = Instant::now();
        let next = state.table().expect("a table").update(
            snapshot.version,
            &[name.as_str()],
            &checked,
            &[],
            state.side(),
        );
        update.push(ms(t));
        let t = Instant::now();
        state.install(next);
        swap.push(ms(t));
        total.push(ms(started));
    }
    // An upstream's endpoints changed: the ~100 routes that use it are compiled again.
    let mut upstream_total = Vec::new();
    for i in 0..50 {
        let at = snapshot
            .resources
            .iter()
            .position(|r| {
                matches!(r.spec, Some(Spec::Upstream(_))) && r.name == format!("svc-{}", i % 100)
            })
            .expect("the upstream is held");
        let mut changed = snapshot.resources[at].clone();
        if let Some(Spec::Upstream(spec)) = &mut changed.spec {
            spec.endpoints[0].address = format!("10.200.{}.{}:8080", i / 250, i % 250);
        }
        let name = changed.name.clone();
        let change = put_one(&snapshot, changed);
        let started = Instant::now();
        let _undo = delta::apply(&mut snapshot, change).expect("the delta applies");
        let checked = graph
            .check_changed(
                &snapshot.resources,
                &[(ResourceKind::Upstream, name.as_str())],
                state.side().regexes(),
            )
            .expect("the change is valid");
        let spec = snapshot.resources.iter().find_map(|r| match &r.spec {
            Some(Spec::Upstream(spec)) if r.name == name => Some(spec),
            _ => None,
        });
        let next = state.table().expect("a table").update(
            snapshot.version,
            &[],
            &checked,
            &[(name.as_str(), spec)],
            state.side(),
        );
        state.install(next);
        upstream_total.push(ms(started));
    }
    let p = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
    };
    println!(
        "one route changed (200 deltas): total p50 {:.3} ms, p99 {:.3} ms; apply {:.3}, incremental check {:.3}, compile (table update) {:.3}, swap {:.3} ms (medians)",
        p(&mut total, 0.5),
        p(&mut total, 0.99),
        p(&mut apply, 0.5),
        p(&mut check, 0.5),
        p(&mut update, 0.5),
        p(&mut swap, 0.5),
    );
    println!(
        "one upstream changed (50 deltas, ~100 routes use each): total p50 {:.3} ms, p99 {:.3} ms",
        p(&mut upstream_total, 0.5),
        p(&mut upstream_total, 0.99),
    );
}

fn config(routes: usize, regexes: bool) -> Vec<v1::Resource> {
    let upstreams = 100;
    let mut resources: Vec<v1::Resource> = (0..upstreams)
        .map(|u| v1::Resource {
            name: format!("svc-{u}"),
            version: 0,
            spec: Some(Spec::Upstream(UpstreamSpec {
                endpoints: (0..3)
                    .map(|e| Endpoint {
                        address: format!("10.{}.{}.{e}:8080", u / 250, u % 250),
                        weight: None,
                    })
                    .collect(),
                ..Default::default()
            })),
        })
        .collect();
    for r in 0..routes {
        let (kind, value) = match r % 20 {
            0..=5 => (
                path_match::Type::Exact,
                format!("/api/v{}/exact/{r}", r % 3),
            ),
            6..=13 => (
                path_match::Type::PathPrefix,
                format!("/api/v{}/svc{r}", r % 3),
            ),
            slot if slot < 19 || !regexes => (
                path_match::Type::Template,
                format!("/api/v{}/items{r}/{{id}}/parts/{{part}}", r % 3),
            ),
            _ => (
                path_match::Type::RegularExpression,
                format!("/re{r}/[a-z]+/[0-9]+"),
            ),
        };
        let hostnames = if r % 2 == 0 {
            vec![format!("host{}.example.com", r % 50)]
        } else {
            Vec::new()
        };
        let (method, headers) = if r % 5 == 0 {
            (
                "GET".to_owned(),
                vec![HeaderMatch {
                    name: "x-tenant".into(),
                    value: format!("t{r}"),
                    ..Default::default()
                }],
            )
        } else {
            (String::new(), Vec::new())
        };
        resources.push(v1::Resource {
            name: format!("route-{r}"),
            version: 0,
            spec: Some(Spec::Route(RouteSpec {
                hostnames,
                rules: vec![RouteRule {
                    matches: vec![RouteMatch {
                        path: Some(PathMatch {
                            r#type: kind as i32,
                            value,
                        }),
                        method,
                        headers,
                        query_params: Vec::new(),
                    }],
                    backend_refs: vec![BackendRef {
                        name: format!("svc-{}", r % upstreams),
                        weight: None,
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })),
        });
    }
    resources
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Resident memory of this process, in KiB (0 where /proc is missing).
fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// The delta that puts `resource` on top of `snapshot`.
fn put_one(snapshot: &v1::Snapshot, resource: v1::Resource) -> v1::Delta {
    v1::Delta {
        version: snapshot.version + 1,
        base_version: snapshot.version,
        resources: vec![resource],
        removed: vec![],
    }
}

//! What picking an endpoint costs, per balancer, with `--endpoints` endpoints (default 1,000):
//! `Upstream::choose` as the pipeline calls it (the breaker's and the endpoint's counts taken
//! and given back), on one core. RoundRobin is measured twice: plain (nothing counted, the
//! path of an upstream without health settings) and with passive health on.
//!
//! `cargo bench -p gateway-data-plane --bench balancers -- [--endpoints N] [--iterations N]`

use std::time::Instant;

use gateway_data_plane::{
    side::SideTables,
    table::{Source, Table, balance::stable_hash},
};
use gateway_proto::v1::{self, resource::Spec};

fn main() {
    let mut iterations = 2_000_000u32;
    let mut endpoints = 1_000u32;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|n| n.parse().ok());
        match arg.as_str() {
            "--iterations" => iterations = value().expect("--iterations N"),
            "--endpoints" => endpoints = value().expect("--endpoints N"),
            _ => {}
        }
    }
    let passive = || {
        Some(Box::new(v1::HealthCheck {
            passive: Some(v1::PassiveHealthCheck::default()),
            active: None,
        }))
    };
    let kinds: [(&str, i32, Option<Box<v1::HealthCheck>>); 5] = [
        ("RoundRobin (plain)", 0, None),
        ("RoundRobin + passive", 0, passive()),
        ("LeastRequest", 1, None),
        ("Random", 2, None),
        ("ConsistentHash", 3, None),
    ];
    println!("endpoints: {endpoints}, iterations: {iterations}");
    println!("balancer                 ns per pick");
    for (name, kind, health) in kinds {
        let spec = v1::UpstreamSpec {
            endpoints: (0..endpoints)
                .map(|i| v1::Endpoint {
                    address: format!("10.{}.{}.{}:8080", i >> 16 & 255, i >> 8 & 255, i & 255),
                    weight: Some(1 + i % 3),
                })
                .collect(),
            load_balancer: Some(Box::new(v1::LoadBalancer {
                r#type: kind,
                hash_on: (kind == 3).then(|| v1::HashOn {
                    header: "x-user".into(),
                    ..Default::default()
                }),
            })),
            health_check: health,
            ..Default::default()
        };
        let resources = [v1::Resource {
            name: "u".into(),
            version: 0,
            spec: Some(Spec::Upstream(spec)),
        }];
        let side = SideTables::default();
        let table = Table::compile(1, &resources, Source::File, &side).expect("compiles");
        let upstream = table.upstream("u").expect("the upstream").clone();
        let keys: Vec<Vec<u8>> = (0..1024)
            .map(|k| format!("user-{k}").into_bytes())
            .collect();
        let started = Instant::now();
        let mut sum = 0usize;
        for i in 0..iterations {
            let key = (kind == 3).then(|| stable_hash(&keys[i as usize % keys.len()]));
            let (endpoint, dispatch) = upstream.choose(key).expect("an endpoint");
            sum = sum.wrapping_add(endpoint);
            drop(dispatch);
        }
        let ns = started.elapsed().as_nanos() as f64 / f64::from(iterations);
        println!("{name:<24} {ns:>10.1}   (checksum {sum})");
    }
}

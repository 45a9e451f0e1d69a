//! Upstreams with `discovery`: their endpoints are the side table's instances of the service,
//! and with none, every balancer, health setting and breaker refuses the pick (503) without
//! panicking or dividing by zero.

use gateway_proto::v1;

use super::*;
use crate::table::balance::Refused;

const SETTINGS: &[&str] = &[
    "",
    "  loadBalancer: { type: LeastRequest }\n",
    "  loadBalancer: { type: Random }\n",
    "  loadBalancer: { type: ConsistentHash, hashOn: { header: x-user } }\n",
    "  healthCheck: { passive: { consecutiveErrors: 1 } }\n",
    "  healthCheck: { active: { path: /healthz } }\n",
    "  circuitBreaker: { maxRequests: 10 }\n",
];

fn compile(settings: &str, side: &SideTables) -> Table {
    let yaml = format!(
        "kind: Upstream\nname: users\nspec:\n  discovery: {{ service: users }}\n{settings}---\nkind: Route\nname: r\nspec:\n  rules: [{{ backendRefs: [{{ name: users }}] }}]\n"
    );
    let resources = parse_documents(&yaml).unwrap();
    Table::compile(1, &resources, Source::ControlPlane, side).unwrap()
}

fn instances(ports: &[u16]) -> v1::Services {
    v1::Services {
        services: vec![v1::ServiceInstances {
            service: "users".into(),
            endpoints: ports
                .iter()
                .map(|p| v1::Endpoint {
                    address: format!("127.0.0.1:{p}"),
                    weight: None,
                })
                .collect(),
        }],
        complete: true,
    }
}

#[tokio::test]
async fn no_instance_refuses_every_pick_and_instances_are_picked() {
    for settings in SETTINGS {
        let side = SideTables::default();
        let table = compile(settings, &side);
        let upstream = table.upstream("users").unwrap().clone();
        assert!(upstream.endpoints().is_empty(), "{settings}");
        for key in [None, Some(42)] {
            assert_eq!(
                upstream.choose(key).map(|(i, _)| i).unwrap_err(),
                Refused::NoHealthy,
                "{settings}"
            );
        }
        assert_eq!(upstream.pick(), None);
        // Outcomes recorded for an endpoint that is gone are nothing.
        upstream.record(0, true);

        side.services().apply(instances(&[9001, 9002]));
        let table = compile(settings, &side);
        let upstream = table.upstream("users").unwrap().clone();
        let addresses: Vec<&str> = upstream.endpoints().iter().map(|e| e.address()).collect();
        assert_eq!(
            addresses,
            ["127.0.0.1:9001", "127.0.0.1:9002"],
            "{settings}"
        );
        for key in [None, Some(42)] {
            let (picked, _dispatch) = upstream.choose(key).unwrap();
            assert!(picked < 2, "{settings}");
        }
    }
}

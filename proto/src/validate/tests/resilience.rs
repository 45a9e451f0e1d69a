//! An Upstream's load balancer, health checks and circuit breaker: what is refused, with the
//! field named.

use super::{check, errors};

fn upstream(extra: &str) -> String {
    format!(
        "kind: Upstream\nname: u\nspec:\n  endpoints: [{{ address: '127.0.0.1:9001' }}]\n{extra}"
    )
}

#[test]
fn valid_settings_pass() {
    check(&upstream(
        "  loadBalancer: { type: ConsistentHash, hashOn: { sourceIP: true } }\n  healthCheck:\n    active: { path: /healthz, interval: 5s, timeout: 1s, healthyThreshold: 2, unhealthyThreshold: 3, expectedStatuses: [200, 204] }\n    passive: { consecutiveErrors: 5, baseEjectionTime: 30s, maxEjectionPercent: 50 }\n  circuitBreaker: { maxRequests: 100, maxConnections: 100 }\n",
    ))
    .unwrap();
    check(&upstream("  loadBalancer: { type: LeastRequest }\n")).unwrap();
}

#[test]
fn bad_settings_are_named() {
    let found = errors(&upstream(
        "  loadBalancer: { type: RoundRobin, hashOn: { header: x-user } }\n  healthCheck:\n    active: { path: healthz, interval: 0.05s, timeout: 1s, healthyThreshold: 0, expectedStatuses: [700] }\n    passive: { consecutiveErrors: 0, maxEjectionPercent: 101 }\n  circuitBreaker: { maxRequests: 0, maxPendingRequests: 0 }\n",
    ));
    let expect = [
        "Upstream/u: spec.loadBalancer.hashOn: applies to type: ConsistentHash only",
        "Upstream/u: spec.healthCheck.active.path: \"healthz\" is not a path",
        "Upstream/u: spec.healthCheck.active.interval: must be at least 100ms",
        "Upstream/u: spec.healthCheck.active.timeout: must not be longer than the interval",
        "Upstream/u: spec.healthCheck.active.healthyThreshold: must be between 1 and 100",
        "Upstream/u: spec.healthCheck.active.expectedStatuses[0]: 700 is not an HTTP status",
        "Upstream/u: spec.healthCheck.passive.consecutiveErrors: must be between 1 and 1000",
        "Upstream/u: spec.healthCheck.passive.maxEjectionPercent: must be between 1 and 100",
        "Upstream/u: spec.circuitBreaker.maxPendingRequests: must be above 0",
        "Upstream/u: spec.circuitBreaker.maxRequests: must be above 0",
    ];
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for (found, expect) in found.iter().zip(expect) {
        assert!(found.starts_with(expect), "{found} (expected {expect})");
    }
    assert_eq!(
        errors(&upstream("  loadBalancer: { type: ConsistentHash }\n")),
        ["Upstream/u: spec.loadBalancer.hashOn: must set exactly one of header, cookie, sourceIP"]
    );
    // Active checks speak the upstream's protocol, HTTP/2 included.
    check(&upstream(
        "  protocol: H2C\n  healthCheck: { active: { path: /h } }\n",
    ))
    .unwrap();
}

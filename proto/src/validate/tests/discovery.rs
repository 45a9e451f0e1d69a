//! Upstreams whose endpoints come from the registry: exactly one source of endpoints, a valid
//! service name, and the settings that must make sense with no endpoint at all.

use super::{check, errors};

fn upstream(spec: &str) -> String {
    format!("kind: Upstream\nname: users\nspec:\n{spec}")
}

#[test]
fn a_discovered_upstream_passes_with_any_balancer_and_checks() {
    check(&upstream("  discovery: { service: users }\n")).unwrap();
    check(&upstream(
        "  discovery: { service: users.v2 }\n  loadBalancer: { type: ConsistentHash, hashOn: { header: x-user } }\n  healthCheck:\n    active: { path: /healthz }\n    passive: { consecutiveErrors: 3 }\n  circuitBreaker: { maxRequests: 10 }\n",
    ))
    .unwrap();
    // A route may send to it like to any upstream.
    check(&format!(
        "{}---\nkind: Route\nname: r\nspec:\n  rules:\n    - backendRefs: [{{ name: users }}]\n",
        upstream("  discovery: { service: users }\n")
    ))
    .unwrap();
}

#[test]
fn exactly_one_source_of_endpoints() {
    assert_eq!(
        errors(&upstream(
            "  endpoints: [{ address: 127.0.0.1:9001 }]\n  discovery: { service: users }\n"
        )),
        [
            "Upstream/users: spec.discovery: takes the endpoints from the registry: leave spec.endpoints out"
        ]
    );
    assert_eq!(
        errors(&upstream("  timeout: 1s\n")),
        ["Upstream/users: spec.endpoints: must list at least one endpoint (or set spec.discovery)"]
    );
}

#[test]
fn the_service_is_a_valid_name() {
    for (service, reason) in [
        ("''", "must not be empty"),
        ("Users", "is not a valid name"),
        ("users/v1", "is not a valid name"),
    ] {
        let found = errors(&upstream(&format!(
            "  discovery: {{ service: {service} }}\n"
        )));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("Upstream/users: spec.discovery.service: ")
                && found[0].contains(reason),
            "{service}: {found:?}"
        );
    }
    // `discovery: {}` names no service.
    assert_eq!(
        errors(&upstream("  discovery: {}\n")),
        ["Upstream/users: spec.discovery.service: must not be empty"]
    );
}

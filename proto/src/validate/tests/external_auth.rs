//! `externalAuth` policies: the body, and the auth service's Upstream, with the field named.

use super::{check, errors};

const AUTH: &str = "kind: Upstream\nname: auth\nspec:\n  endpoints: [{ address: '127.0.0.1:9001' }]\n---\nkind: Upstream\nname: h2\nspec:\n  protocol: H2C\n  endpoints: [{ address: '127.0.0.1:9002' }]\n";

fn with_policy(body: &str) -> String {
    format!("{AUTH}---\nkind: Policy\nname: ext\nspec:\n  externalAuth: {body}\n")
}

#[test]
fn a_valid_policy_passes() {
    check(&with_policy(
        "{ backendRef: { name: auth }, path: /check, headersToAuth: [authorization, cookie], headersFromAuth: [x-user-id], timeout: 0.5s, failOpen: true, cacheTtl: 30s }",
    ))
    .unwrap();
}

#[test]
fn bad_fields_are_named() {
    let found = errors(&with_policy(
        "{ backendRef: { name: auth, weight: 2 }, path: 'check me', headersToAuth: [authorization, Authorization, host], headersFromAuth: ['bad header'], timeout: 61s, cacheTtl: 7200s }",
    ));
    let expect = [
        "Policy/ext: spec.externalAuth.backendRef.weight: has no meaning here",
        "Policy/ext: spec.externalAuth.path: \"check me\" is not a path",
        "Policy/ext: spec.externalAuth.headersToAuth[1]: \"Authorization\" is listed twice",
        "Policy/ext: spec.externalAuth.headersToAuth[2]: \"host\" is written by the gateway",
        "Policy/ext: spec.externalAuth.headersFromAuth[0]: \"bad header\" is not a valid header name",
        "Policy/ext: spec.externalAuth.timeout: must be at most 60s",
        "Policy/ext: spec.externalAuth.cacheTtl: must be at most 3600s",
    ];
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for (found, expect) in found.iter().zip(expect) {
        assert!(found.starts_with(expect), "{found} (expected {expect})");
    }
}

#[test]
fn the_auth_service_is_an_existing_http1_upstream() {
    assert_eq!(
        errors(&with_policy("{ }")),
        ["Policy/ext: spec.externalAuth.backendRef.name: must name the auth service's Upstream"]
    );
    assert_eq!(
        errors(&with_policy("{ backendRef: { name: nowhere } }")),
        ["Policy/ext: spec.externalAuth.backendRef.name: upstream \"nowhere\" does not exist"]
    );
    assert_eq!(
        errors(&with_policy("{ backendRef: { name: h2 } }")),
        [
            "Policy/ext: spec.externalAuth.backendRef.name: upstream \"h2\" speaks HTTP/2; an auth service is called over HTTP/1.1"
        ]
    );
}

#[test]
fn a_rule_asks_one_auth_service() {
    let config = format!(
        "{}---\nkind: Policy\nname: other\nspec:\n  externalAuth: {{ backendRef: {{ name: auth }} }}\n---\nkind: Route\nname: r\nspec:\n  policies: [ext]\n  rules:\n    - backendRefs: [{{ name: auth }}]\n      policies: [other]\n",
        with_policy("{ backendRef: { name: auth } }")
    );
    assert_eq!(
        errors(&config),
        [
            "Route/r: spec.rules[0].policies: applies more than one externalAuth policy (ext, other); a rule asks one auth service"
        ]
    );
}

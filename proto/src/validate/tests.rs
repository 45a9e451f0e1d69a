use super::*;
use crate::document::parse_documents;

fn check(yaml: &str) -> Result<(), ValidationErrors> {
    validate(&parse_documents(yaml).expect("test YAML parses"))
}

fn errors(yaml: &str) -> Vec<String> {
    check(yaml)
        .expect_err("expected validation errors")
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

const UPSTREAM: &str =
    "kind: Upstream\nname: users\nspec:\n  endpoints:\n    - address: 127.0.0.1:9001\n";

fn with_upstream(route: &str) -> String {
    format!("{UPSTREAM}---\n{route}")
}

#[test]
fn accepts_a_valid_graph() {
    check(&with_upstream(
        "kind: Route\nname: r\nspec:\n  hostnames: [a.example.com, '*.example.com']\n  rules:\n    - matches:\n        - path: { type: Template, value: '/users/{id}' }\n          method: GET\n          headers: [{ name: x-a, type: RegularExpression, value: 'a+' }]\n          queryParams: [{ name: q, value: '1' }]\n      backendRefs: [{ name: users, weight: 3 }]\n",
    ))
    .unwrap();
}

#[test]
fn names_a_missing_upstream() {
    assert_eq!(
        errors(&with_upstream(
            "kind: Route\nname: r\nspec:\n  rules:\n    - backendRefs: [{ name: nope }]\n"
        )),
        ["Route/r: spec.rules[0].backendRefs[0].name: upstream \"nope\" does not exist"]
    );
}

#[test]
fn names_a_bad_regex_and_template() {
    let found = errors(&with_upstream(
        "kind: Route\nname: r\nspec:\n  rules:\n    - matches:\n        - path: { type: RegularExpression, value: '/a(' }\n        - path: { type: Template, value: '/a/{b' }\n      backendRefs: [{ name: users }]\n",
    ));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with(
            "Route/r: spec.rules[0].matches[0].path.value: invalid regular expression"
        )
    );
    assert!(
        found[1].starts_with("Route/r: spec.rules[0].matches[1].path.value: invalid path template")
    );
}

#[test]
fn names_duplicates() {
    let found = errors(&format!("{UPSTREAM}---\n{UPSTREAM}"));
    assert_eq!(
        found,
        ["Upstream/users: name: duplicate: another Upstream is named \"users\""]
    );
}

#[test]
fn reports_every_problem_of_an_upstream() {
    let found = errors(
        "kind: Upstream\nname: Bad_Name\nspec:\n  endpoints:\n    - address: nope\n    - address: 127.0.0.1:1\n      weight: 20000\n  timeout: 0s\n",
    );
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(found[0].contains(": name: "));
    assert!(found[1].contains("spec.endpoints[0].address"));
    assert!(found[2].contains("spec.endpoints[1].weight"));
    assert!(found[3].contains("spec.timeout"));
}

#[test]
fn finds_conflicting_matches_across_routes() {
    let route = |name: &str, prefix: &str| {
        format!(
            "kind: Route\nname: {name}\nspec:\n  hostnames: [a.example.com]\n  rules:\n    - matches: [{{ path: {{ value: '{prefix}' }}, method: GET }}]\n      backendRefs: [{{ name: users }}]\n"
        )
    };
    let found = errors(&format!(
        "{UPSTREAM}---\n{}---\n{}",
        route("b", "/api/"),
        route("a", "/api")
    ));
    assert_eq!(
        found,
        [
            "Route/b: spec.rules[0].matches[0]: conflicts with Route/a spec.rules[0].matches[0]: the same match for a.example.com"
        ]
    );
    // A different method, host or header is not a conflict.
    check(&format!(
        "{UPSTREAM}---\n{}---\n{}",
        route("a", "/api"),
        route("b", "/api").replace("a.example.com", "b.example.com")
    ))
    .unwrap();
}

#[test]
fn rules_without_matches_conflict_as_catch_alls() {
    let route = |name: &str| {
        format!(
            "kind: Route\nname: {name}\nspec:\n  rules:\n    - backendRefs: [{{ name: users }}]\n"
        )
    };
    let found = errors(&format!("{UPSTREAM}---\n{}---\n{}", route("a"), route("b")));
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("Route/b: spec.rules[0]: conflicts with Route/a"),
        "{found:?}"
    );
}

#[test]
fn rejects_bad_route_fields() {
    let found = errors(&with_upstream(
        "kind: Route\nname: r\nspec:\n  hostnames: ['a.*.com', A.com]\n  rules:\n    - matches:\n        - path: { type: Exact, value: 'no-slash' }\n          method: get\n          headers: [{ name: 'x y', value: v }]\n      backendRefs: [{ name: users, weight: 0 }]\n    - backendRefs: []\n",
    ));
    let fields: Vec<_> = found
        .iter()
        .map(|e| e.split(": ").nth(1).unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.hostnames[0]",
            "spec.hostnames[1]",
            "spec.rules[0].matches[0].path.value",
            "spec.rules[0].matches[0].method",
            "spec.rules[0].matches[0].headers[0].name",
            "spec.rules[0].backendRefs",
            "spec.rules[1].backendRefs",
        ],
        "{found:#?}"
    );
}

mod discovery;
mod external_auth;
mod filters_and_policies;
mod identity;
mod proto_sets;
mod protocols_and_timeouts;
mod resilience;
mod transcode;

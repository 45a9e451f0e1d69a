use super::*;
use crate::v1::{path_match, resource::Spec};

const EXAMPLE: &str = r#"
kind: Upstream
name: users
spec:
  endpoints:
    - address: 127.0.0.1:9001
    - address: 127.0.0.1:9002
      weight: 2
  timeout: 2.5s
---
kind: Route
name: users-api
spec:
  hostnames: [api.example.com]
  rules:
    - matches:
        - path: { type: PathPrefix, value: /api/users }
          method: GET
          headers: [{ name: x-canary, value: "1" }]
      backendRefs:
        - name: users
"#;

#[test]
fn parses_the_design_example() {
    let resources = parse_documents(EXAMPLE).unwrap();
    assert_eq!(resources.len(), 2);
    let Some(Spec::Upstream(upstream)) = &resources[0].spec else {
        panic!("not an upstream: {:?}", resources[0]);
    };
    assert_eq!(upstream.endpoints[1].weight, Some(2));
    assert_eq!(upstream.endpoints[0].weight, None);
    assert_eq!(upstream.timeout.unwrap().nanos, 500_000_000);
    let Some(Spec::Route(route)) = &resources[1].spec else {
        panic!("not a route");
    };
    let m = &route.rules[0].matches[0];
    let path = m.path.as_ref().unwrap();
    assert_eq!(path.r#type(), path_match::Type::PathPrefix);
    assert_eq!(path.value, "/api/users");
    assert_eq!(m.headers[0].name, "x-canary");
    assert_eq!(route.rules[0].backend_refs[0].name, "users");
}

#[test]
fn round_trips_through_yaml_and_json() {
    let resources = parse_documents(EXAMPLE).unwrap();
    let yaml = to_yaml(&resources);
    assert_eq!(parse_documents(&yaml).unwrap(), resources, "{yaml}");
    let json =
        serde_json::to_string(&resources.iter().map(to_document).collect::<Vec<_>>()).unwrap();
    assert_eq!(parse_documents(&json).unwrap(), resources, "{json}");
}

fn single_error(text: &str) -> DocumentError {
    let errors = parse_documents(text).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().unwrap()
}

#[test]
fn names_the_field_of_a_bad_enum() {
    let e = single_error(
        "kind: Route\nname: r\nspec:\n  rules:\n    - matches:\n        - path: { type: Prefix, value: / }\n",
    );
    assert_eq!(e.field, "spec.rules[0].matches[0].path.type");
    assert_eq!(e.resource.as_deref(), Some("Route/r"));
    assert!(e.to_string().contains("document 1 (Route/r)"), "{e}");
}

#[test]
fn rejects_unknown_fields_and_kinds() {
    let e = single_error("kind: Upstream\nname: u\nspec:\n  endpoint: []\n");
    assert_eq!(e.field, "spec.endpoint");
    let e = single_error("kind: Widget\nname: w\nspec: {}\n");
    assert_eq!(e.field, "kind");
    assert!(e.message.contains("Widget"));
    let e = single_error("kind: Route\nname: r\nspecs: {}\n");
    assert_eq!(e.field, "specs");
    let e = single_error("kind: Route\nspec: {}\n");
    assert_eq!(e.field, "name");
}

#[test]
fn reports_malformed_yaml() {
    let e = single_error("kind: Route\nname: [unclosed\n");
    assert_eq!(e.document, 0);
    assert!(e.to_string().starts_with("malformed YAML"), "{e}");
}

#[test]
fn reports_every_bad_document() {
    let errors = parse_documents("kind: A\nname: a\nspec: {}\n---\nkind: B\nname: b\nspec: {}\n")
        .unwrap_err()
        .0;
    assert_eq!(
        errors.iter().map(|e| e.document).collect::<Vec<_>>(),
        [1, 2]
    );
}

#[test]
fn parses_files_with_many_documents() {
    let many: String = (0..3000)
        .map(|i| format!("kind: Upstream\nname: u{i}\nspec:\n  endpoints: [{{ address: 127.0.0.1:{} }}]\n---\n", 1000 + i))
        .collect();
    assert_eq!(parse_documents(&many).unwrap().len(), 3000);
}

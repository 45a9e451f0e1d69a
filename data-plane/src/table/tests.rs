use std::sync::Arc;

use gateway_proto::document::parse_documents;
use http::{HeaderMap, HeaderValue, Method};

use super::*;

const UPSTREAMS: &str = "
kind: Upstream
name: a
spec: { endpoints: [{ address: 127.0.0.1:9001 }] }
---
kind: Upstream
name: b
spec: { endpoints: [{ address: 127.0.0.1:9002 }] }
---
kind: Upstream
name: c
spec: { endpoints: [{ address: 127.0.0.1:9003 }] }
";

fn table(yaml: &str) -> Table {
    let resources = parse_documents(&format!("{UPSTREAMS}---\n{yaml}")).unwrap();
    Table::compile(1, &resources, Source::File, &SideTables::default()).unwrap()
}

/// A request to route, built up in a test.
struct Req {
    host: Option<&'static str>,
    path: &'static str,
    query: Option<&'static str>,
    method: Method,
    headers: HeaderMap,
}

fn get(path: &'static str) -> Req {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    Req {
        host: None,
        path,
        query,
        method: Method::GET,
        headers: HeaderMap::new(),
    }
}

impl Req {
    fn host(mut self, host: &'static str) -> Self {
        self.host = Some(host);
        self
    }
    fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.append(name, HeaderValue::from_static(value));
        self
    }
}

/// `route#rule` of the matching rule and its upstream, or "none".
fn route(table: &Table, req: &Req) -> String {
    let view = RequestView {
        host: req.host,
        path: req.path,
        query: req.query,
        method: &req.method,
        headers: &req.headers,
    };
    match table.route(&view) {
        Some(rule) => format!("{}->{}", rule.route(), rule.upstream().unwrap().name()),
        None => "none".into(),
    }
}

fn rule(name: &str, path_type: &str, value: &str, upstream: &str) -> String {
    format!(
        "---\nkind: Route\nname: {name}\nspec:\n  rules:\n    - matches: [{{ path: {{ type: {path_type}, value: \"{value}\" }} }}]\n      backendRefs: [{{ name: {upstream} }}]\n"
    )
}

#[test]
fn exact_beats_prefix_template_and_regex() {
    let t = table(
        &[
            rule("exact", "Exact", "/users/me", "a"),
            rule("prefix", "PathPrefix", "/users", "b"),
            rule("template", "Template", "/users/{id}", "c"),
            rule("regex", "RegularExpression", "/users/.*", "c"),
        ]
        .concat(),
    );
    assert_eq!(route(&t, &get("/users/me")), "exact->a");
    // "/users/" (7) as the template's literal beats the prefix "/users" (6).
    assert_eq!(route(&t, &get("/users/42")), "template->c");
    assert_eq!(route(&t, &get("/users/42/x")), "prefix->b");
    assert_eq!(route(&t, &get("/users")), "prefix->b");
    assert_eq!(route(&t, &get("/other")), "none");
}

#[test]
fn prefix_is_segment_wise_and_longest_wins() {
    let t = table(
        &[
            rule("api", "PathPrefix", "/api/", "a"),
            rule("api-users", "PathPrefix", "/api/users", "b"),
            rule("root", "PathPrefix", "/", "c"),
        ]
        .concat(),
    );
    assert_eq!(route(&t, &get("/api")), "api->a");
    assert_eq!(route(&t, &get("/api/")), "api->a");
    assert_eq!(route(&t, &get("/api/x")), "api->a");
    assert_eq!(route(&t, &get("/apix")), "root->c");
    assert_eq!(route(&t, &get("/api/users")), "api-users->b");
    assert_eq!(route(&t, &get("/api/users/7?x=1")), "api-users->b");
    assert_eq!(route(&t, &get("/api/usersx")), "api->a");
    assert_eq!(route(&t, &get("/api//users")), "api->a");
    assert_eq!(route(&t, &get("/")), "root->c");
}

#[test]
fn template_before_prefix_of_same_length_and_regex_last() {
    let t = table(
        &[
            rule("prefix", "PathPrefix", "/v1/items", "a"),
            rule("template", "Template", "/v1/items/{id}", "b"),
            rule("regex", "RegularExpression", "/v1/items/[0-9]+", "c"),
            rule("root", "PathPrefix", "/", "a"),
        ]
        .concat(),
    );
    // Template literal "/v1/items/" (10) > prefix "/v1/items" (9).
    assert_eq!(route(&t, &get("/v1/items/5")), "template->b");
    assert_eq!(route(&t, &get("/v1/items/5/x")), "prefix->a");
    // A regular expression counts 0: even the root prefix outranks it.
    let t = table(
        &[
            rule("regex", "RegularExpression", "/r/[0-9]+", "c"),
            rule("template", "Template", "/{x}", "b"),
        ]
        .concat(),
    );
    assert_eq!(route(&t, &get("/r/12")), "regex->c");
    assert_eq!(route(&t, &get("/r")), "template->b");
    let t = table(
        &[
            rule("same", "Template", "/ab/{x}", "b"),
            rule("prefix", "PathPrefix", "/ab/", "a"),
        ]
        .concat(),
    );
    assert_eq!(route(&t, &get("/ab/q")), "same->b");
}

#[test]
fn method_then_headers_then_query_then_name() {
    let t = table(
        "---
kind: Route
name: z-plain
spec:
  rules:
    - matches: [{ path: { type: PathPrefix, value: /x } }]
      backendRefs: [{ name: a }]
---
kind: Route
name: y-method
spec:
  rules:
    - matches: [{ path: { type: PathPrefix, value: /x }, method: POST }]
      backendRefs: [{ name: b }]
---
kind: Route
name: x-headers
spec:
  rules:
    - matches:
        - path: { type: PathPrefix, value: /x }
          headers: [{ name: X-A, value: '1' }, { name: x-b, type: RegularExpression, value: '[0-9]+' }]
      backendRefs: [{ name: c }]
    - matches:
        - path: { type: PathPrefix, value: /x }
          headers: [{ name: x-a, value: '1' }]
      backendRefs: [{ name: b }]
---
kind: Route
name: w-query
spec:
  rules:
    - matches:
        - path: { type: PathPrefix, value: /x }
          headers: [{ name: x-a, value: '1' }]
          queryParams: [{ name: q, value: 'a b' }]
      backendRefs: [{ name: a }]
",
    );
    assert_eq!(route(&t, &get("/x")), "z-plain->a");
    assert_eq!(route(&t, &get("/x").method(Method::POST)), "y-method->b");
    // A method outranks any number of headers.
    assert_eq!(
        route(
            &t,
            &get("/x")
                .method(Method::POST)
                .header("x-a", "1")
                .header("x-b", "2")
        ),
        "y-method->b"
    );
    assert_eq!(
        route(&t, &get("/x").header("x-a", "1").header("x-b", "22")),
        "x-headers->c"
    );
    assert_eq!(
        route(&t, &get("/x").header("x-a", "1").header("x-b", "no")),
        "x-headers->b"
    );
    assert_eq!(route(&t, &get("/x?q=a+b").header("x-a", "1")), "w-query->a");
    assert_eq!(
        route(&t, &get("/x?q=a%20b").header("x-a", "1")),
        "w-query->a"
    );
    assert_eq!(route(&t, &get("/x?q=c").header("x-a", "1")), "x-headers->b");
    assert_eq!(route(&t, &get("/x").header("x-a", "2")), "z-plain->a");
}

#[test]
fn route_name_and_rule_order_break_ties() {
    let t = table(
        "---
kind: Route
name: b-route
spec:
  rules:
    - matches: [{ path: { type: PathPrefix, value: /t }, headers: [{ name: h, value: '1' }] }]
      backendRefs: [{ name: b }]
---
kind: Route
name: a-route
spec:
  rules:
    - matches: [{ path: { type: PathPrefix, value: /t }, headers: [{ name: g, value: '1' }] }]
      backendRefs: [{ name: a }]
",
    );
    assert_eq!(
        route(&t, &get("/t").header("h", "1").header("g", "1")),
        "a-route->a"
    );
    assert_eq!(route(&t, &get("/t").header("h", "1")), "b-route->b");
}

#[test]
fn hosts_exact_then_wildcard_then_any_with_fallback() {
    let t = table(
        "---
kind: Route
name: exact
spec:
  hostnames: [api.example.com]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /only-exact } }]
      backendRefs: [{ name: a }]
---
kind: Route
name: wild
spec:
  hostnames: ['*.example.com']
  rules:
    - matches: [{ path: { type: PathPrefix, value: /w } }]
      backendRefs: [{ name: b }]
---
kind: Route
name: wild-deep
spec:
  hostnames: ['*.eu.example.com']
  rules:
    - matches: [{ path: { type: PathPrefix, value: /w } }]
      backendRefs: [{ name: c }]
---
kind: Route
name: any
spec:
  rules:
    - backendRefs: [{ name: c }]
",
    );
    assert!(t.uses_hosts());
    assert_eq!(
        route(&t, &get("/only-exact").host("api.example.com")),
        "exact->a"
    );
    // The exact host has no rule for /w: fall back to the wildcard, then to any host.
    assert_eq!(route(&t, &get("/w").host("api.example.com")), "wild->b");
    assert_eq!(route(&t, &get("/z").host("api.example.com")), "any->c");
    assert_eq!(route(&t, &get("/w").host("x.y.example.com")), "wild->b");
    assert_eq!(
        route(&t, &get("/w").host("x.eu.example.com")),
        "wild-deep->c"
    );
    // "*.example.com" does not match "example.com" itself.
    assert_eq!(route(&t, &get("/w").host("example.com")), "any->c");
    assert_eq!(route(&t, &get("/only-exact").host("other.com")), "any->c");
    assert_eq!(route(&t, &get("/only-exact")), "any->c");
}

#[test]
fn rule_backends_split_by_weight() {
    let t = table(
        "---
kind: Route
name: split
spec:
  rules:
    - backendRefs: [{ name: a, weight: 3 }, { name: b, weight: 1 }, { name: c, weight: 0 }]
",
    );
    let mut counts = std::collections::HashMap::new();
    for _ in 0..400 {
        *counts.entry(route(&t, &get("/"))).or_insert(0) += 1;
    }
    assert_eq!(counts["split->a"], 300);
    assert_eq!(counts["split->b"], 100);
    assert!(!counts.contains_key("split->c"));
}

#[test]
fn smooth_wrr_spreads_and_drains() {
    assert_eq!(upstream::smooth_wrr(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(upstream::smooth_wrr(&[2, 2]), [0, 1]);
    assert_eq!(upstream::smooth_wrr(&[0, 3]), [1]);
    assert!(upstream::smooth_wrr(&[0, 0]).is_empty());
    let big = upstream::smooth_wrr(&[10_000, 9_999, 1]);
    assert!(big.len() <= 4096 && big.contains(&2));
}

#[test]
fn endpoints_round_robin_by_weight_and_drained_upstream() {
    let resources = parse_documents(
        "
kind: Upstream
name: u
spec:
  endpoints:
    - { address: 127.0.0.1:1, weight: 2 }
    - { address: 127.0.0.1:2 }
    - { address: 127.0.0.1:3, weight: 0 }
---
kind: Upstream
name: drained
spec:
  endpoints: [{ address: 127.0.0.1:4, weight: 0 }]
",
    )
    .unwrap();
    let side = SideTables::default();
    let t = Table::compile(1, &resources, Source::File, &side).unwrap();
    let u = t.upstream("u").unwrap();
    let picks: Vec<usize> = (0..6).map(|_| u.pick().unwrap()).collect();
    assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 4);
    assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 2);
    assert_eq!(t.upstream("drained").unwrap().pick(), None);
    assert_eq!(u.timeout(), DEFAULT_TIMEOUT);
    assert_eq!(u.connect_timeout(), DEFAULT_CONNECT_TIMEOUT);

    // The round-robin position survives a recompile (it lives in the side table): the order
    // is [0, 1, 0]; six picks and one more leave position 7, so the next is endpoint 1 (a fresh
    // position would give endpoint 0).
    assert_eq!(u.pick(), Some(0));
    let t2 = Table::compile(2, &resources, Source::File, &side).unwrap();
    assert_eq!(t2.upstream("u").unwrap().pick(), Some(1));
    drop(t);
    t2.prune_side(&side);
    assert_eq!(side.len(), 2);
}

#[test]
fn invalid_snapshot_is_refused_with_fields() {
    let resources = parse_documents(
        "
kind: Route
name: r
spec:
  rules:
    - backendRefs: [{ name: missing }]
",
    )
    .unwrap();
    let err = Table::compile(1, &resources, Source::File, &SideTables::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Route/r: spec.rules[0].backendRefs[0].name"),
        "{text}"
    );
}

#[test]
fn compiles_ten_thousand_routes() {
    let mut resources = Vec::new();
    let mut yaml = String::new();
    for i in 0..100 {
        yaml.push_str(&format!(
            "---\nkind: Upstream\nname: u{i}\nspec: {{ endpoints: [{{ address: 127.0.0.1:{} }}] }}\n",
            9000 + i
        ));
    }
    resources.extend(parse_documents(&yaml).unwrap());
    for i in 0..10_000 {
        let (host, path) = match i % 4 {
            0 => (
                vec![format!("h{}.example.com", i % 50)],
                (1, format!("/exact/{i}")),
            ),
            1 => (vec![], (0, format!("/p/{i}"))),
            2 => (vec!["*.wild.com".to_owned()], (3, format!("/t/{i}/{{id}}"))),
            _ => (vec![], (2, format!("/r/{i}/[a-z]+"))),
        };
        resources.push(v1::Resource {
            name: format!("route-{i:05}"),
            version: 0,
            spec: Some(Spec::Route(v1::RouteSpec {
                hostnames: host,
                rules: vec![v1::RouteRule {
                    matches: vec![v1::RouteMatch {
                        path: Some(v1::PathMatch {
                            r#type: path.0,
                            value: path.1,
                        }),
                        ..Default::default()
                    }],
                    backend_refs: vec![v1::BackendRef {
                        name: format!("u{}", i % 100),
                        weight: None,
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })),
        });
    }
    let side = SideTables::default();
    let started = std::time::Instant::now();
    let t = Table::compile(9, &resources, Source::ControlPlane, &side).unwrap();
    // Reported, not asserted: timing belongs to benchmarks.
    eprintln!("compiled 10,000 routes in {:?}", started.elapsed());
    t.prune_side(&side);
    let started = std::time::Instant::now();
    let t = Table::compile(10, &resources, Source::ControlPlane, &side).unwrap();
    eprintln!(
        "recompiled them (regexes cached) in {:?}",
        started.elapsed()
    );
    assert_eq!(t.routes(), 10_000);
    assert_eq!(t.upstreams().count(), 100);
    let check = |req: Req, want: &str| assert_eq!(route(&t, &req), want);
    check(get("/exact/4000").host("h0.example.com"), "route-04000->u0");
    check(get("/p/9001/x"), "route-09001->u1");
    check(get("/t/9002/abc").host("a.wild.com"), "route-09002->u2");
    check(get("/r/9003/abc"), "route-09003->u3");
    check(get("/r/9003/ABC"), "none");
    let _ = Arc::clone(t.upstream("u1").unwrap());
}

mod discovered;
mod dns;
mod generated;

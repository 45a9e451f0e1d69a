//! A property over generated configurations: whatever the shared validation accepts, the table
//! compiles, and whatever it refuses, the compile refuses with the same errors. The generator
//! draws every field from small pools of good and bad values, so that both verdicts are common
//! and every kind, filter and policy is exercised.

use gateway_proto::v1::{
    self, BackendRef, CorsPolicy, HeaderMatch, HeaderModifier, HttpHeader, IpAccessPolicy,
    PathMatch, PathModifier, PolicySpec, QueryParamMatch, RequestLimitsPolicy, RequestRedirect,
    Resource, RouteFilter, RouteMatch, RouteRule, RouteSpec, UpstreamSpec, UrlRewrite,
    policy_spec::Body, resource::Spec,
};

use super::*;

struct Gen(fastrand::Rng);

impl Gen {
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.0.usize(..items.len())].clone()
    }

    /// Mostly one of `good`, now and then one of `bad`.
    fn choose<T: Clone>(&mut self, good: &[T], bad: &[T]) -> T {
        if self.0.u8(..60) == 0 {
            self.pick(bad)
        } else {
            self.pick(good)
        }
    }

    fn some<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        self.0.bool().then(|| f(self))
    }

    /// One to `max` items (now and then none).
    fn list1<T>(&mut self, max: usize, mut f: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let n = self.choose(&[1, max.max(1)], &[0]);
        (0..n).map(|_| f(self)).collect()
    }

    fn list<T>(&mut self, max: usize, mut f: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let n = self.0.usize(..=max);
        (0..n).map(|_| f(self)).collect()
    }

    /// A reference to one of the three names of a kind (sometimes one that does not exist).
    fn name(&mut self, kind: &str) -> String {
        format!("{kind}{}", self.choose(&[0, 1, 2], &[7]))
    }

    fn duration(&mut self) -> prost_types::Duration {
        let (seconds, nanos) = self.choose(
            &[(1, 0), (0, 5_000_000), (30, 0)],
            &[(0, 0), (-1, 0), (1, 1_000_000_000), (i64::MAX, 0)],
        );
        prost_types::Duration { seconds, nanos }
    }

    fn header(&mut self) -> HttpHeader {
        HttpHeader {
            name: self
                .choose(&["x-a", "x-b", "x-forwarded-proto"], &["host", "x y"])
                .into(),
            value: self.choose(&["1", "a b", ""], &["bad\nvalue"]).into(),
        }
    }

    fn path_modifier(&mut self) -> PathModifier {
        let r#type = self.choose(&[1, 2, 2], &[0, 9]);
        let full = self.choose(&["/new", "/n/e/w"], &["new"]).into();
        let prefix = self.choose(&["/v2", "/"], &["v2"]).into();
        match r#type {
            1 => PathModifier {
                r#type,
                replace_full_path: full,
                ..PathModifier::default()
            },
            2 => PathModifier {
                r#type,
                replace_prefix_match: prefix,
                ..PathModifier::default()
            },
            _ => PathModifier {
                r#type,
                replace_full_path: full,
                replace_prefix_match: prefix,
            },
        }
    }

    fn filter(&mut self) -> RouteFilter {
        let modifier = |g: &mut Self| HeaderModifier {
            set: g.list(2, Self::header),
            add: g.list(2, Self::header),
            remove: g.list(2, |g| g.choose(&["x-c", "x-d"], &["content-length"]).into()),
        };
        let kind = self.choose(&[1, 2, 3, 4], &[5, 6, 0]);
        let mut filter = RouteFilter {
            r#type: kind,
            ..RouteFilter::default()
        };
        match kind {
            1 => filter.request_header_modifier = Some(modifier(self)),
            2 => filter.response_header_modifier = Some(modifier(self)),
            3 => {
                filter.url_rewrite = Some(UrlRewrite {
                    hostname: self.choose(&["", "users.internal"], &["bad host"]).into(),
                    path: self.some(Self::path_modifier),
                });
            }
            4 => {
                filter.request_redirect = Some(RequestRedirect {
                    scheme: self.choose(&["", "https"], &["ftp"]).into(),
                    hostname: self.pick(&["", "example.com"]).into(),
                    port: self.some(|g| g.choose(&[443, 8443], &[0, 70_000])),
                    path: self.some(Self::path_modifier),
                    status_code: self.some(|g| g.choose(&[301, 302, 308], &[303])),
                });
            }
            _ => {}
        }
        filter
    }

    fn route_match(&mut self) -> RouteMatch {
        RouteMatch {
            path: self.some(|g| PathMatch {
                r#type: g.choose(&[0, 0, 1, 2, 3], &[7]),
                value: g
                    .choose(
                        &["/", "/a", "/b/", "/users/{id}", "/v[0-9]+", "/c", "/d/e"],
                        &["/(", "a", "/{x"],
                    )
                    .into(),
            }),
            method: self.choose(&["", "GET", "POST"], &["get"]).into(),
            headers: self.list(1, |g| HeaderMatch {
                r#type: g.choose(&[0, 1], &[5]),
                name: g.choose(&["x-a", "x_b"], &["x a"]).into(),
                value: g.choose(&["1", "[0-9]+"], &["("]).into(),
            }),
            query_params: self.list(1, |g| QueryParamMatch {
                r#type: g.choose(&[0, 1], &[4]),
                name: g.choose(&["q"], &[""]).into(),
                value: g.choose(&["1", "x.*"], &[")"]).into(),
            }),
        }
    }

    fn rule(&mut self) -> RouteRule {
        RouteRule {
            matches: self.list(2, Self::route_match),
            backend_refs: self.list1(2, |g| BackendRef {
                name: g.name("u"),
                weight: g.some(|g| g.choose(&[1, 5], &[0, 20_000])),
            }),
            filters: self.list(1, Self::filter),
            // The route's own are p0; a rule's p1 or p2 (listing one twice is refused).
            policies: self.list(1, |g| format!("p{}", g.choose(&[1, 2], &[0, 7]))),
            timeouts: self.some(|g| v1::RouteTimeouts {
                request: g.some(Self::duration),
                backend_request: g.some(Self::duration),
            }),
            retry: self.some(|g| v1::RouteRetry {
                attempts: g.choose(&[1, 3], &[0, 11]),
                backoff: None,
                codes: g.list(1, |g| g.choose(&[503], &[200])),
                non_idempotent: false,
            }),
        }
    }

    fn policy(&mut self) -> PolicySpec {
        let body = match self.choose(&[0, 1, 2], &[3]) {
            0 => Some(Body::IpAccess(IpAccessPolicy {
                allow: self.list1(2, |g| {
                    g.choose(&["10.0.0.0/8", "::1"], &["10.0.0.0/33", "x"])
                        .into()
                }),
                deny: self.list(1, |g| g.choose(&["0.0.0.0/0"], &["nope"]).into()),
            })),
            1 => Some(Body::Cors(CorsPolicy {
                allow_origins: self.list1(2, |g| {
                    g.choose(&["https://a.example", "https://*.example"], &["a.example"])
                        .into()
                }),
                allow_methods: self.list(2, |g| g.choose(&["GET", "*"], &["get"]).into()),
                allow_headers: self.list(1, |g| g.choose(&["x-a", "*"], &["x a"]).into()),
                expose_headers: self.list(1, |g| g.choose(&["x-a"], &["x a"]).into()),
                allow_credentials: self.0.bool(),
                max_age: self.some(Self::duration),
            })),
            2 => Some(Body::RequestLimits(RequestLimitsPolicy {
                max_body_bytes: Some(self.choose(&[1, 1 << 20], &[0])),
                max_header_bytes: self.some(|g| g.choose(&[1024], &[1 << 20])),
                max_uri_bytes: self.some(|g| g.choose(&[64], &[0])),
            })),
            _ => None,
        };
        PolicySpec {
            global: self.choose(&[false], &[true]),
            body,
        }
    }

    fn resources(&mut self) -> Vec<Resource> {
        let mut resources = Vec::new();
        for i in 0..3 {
            resources.push(Resource {
                name: format!("u{i}"),
                version: 0,
                spec: Some(Spec::Upstream(UpstreamSpec {
                    endpoints: self.list1(2, |g| v1::Endpoint {
                        address: g
                            .choose(
                                &["127.0.0.1:9001", "[::1]:9002", "localhost:80"],
                                &["bad", "1.2.3.4:0"],
                            )
                            .into(),
                        weight: g.some(|g| g.choose(&[1, 3], &[0])),
                    }),
                    timeout: self.some(Self::duration),
                    connect_timeout: self.some(Self::duration).map(Box::new),
                    idle_timeout: self.some(Self::duration).map(Box::new),
                    protocol: self.choose(&[0, 1, 2, 3], &[7]),
                    tls: None,
                    load_balancer: self.some(|g| {
                        let kind = g.choose(&[0, 1, 2, 3], &[9]);
                        Box::new(v1::LoadBalancer {
                            r#type: kind,
                            hash_on: (kind == 3).then(|| v1::HashOn {
                                header: g.choose(&["x-user"], &["bad header"]).into(),
                                ..Default::default()
                            }),
                        })
                    }),
                    health_check: self.some(|g| {
                        Box::new(v1::HealthCheck {
                            passive: g.some(|g| v1::PassiveHealthCheck {
                                consecutive_errors: g.some(|g| g.choose(&[1, 5], &[0])),
                                base_ejection_time: g.some(Self::duration),
                                max_ejection_percent: g.some(|g| g.choose(&[10, 100], &[0, 101])),
                            }),
                            active: None,
                        })
                    }),
                    circuit_breaker: self.some(|g| {
                        Box::new(v1::CircuitBreaker {
                            max_requests: g.some(|g| g.choose(&[1, 1000], &[0])),
                            ..Default::default()
                        })
                    }),
                    // Discovered upstreams: `table/tests.rs` (their endpoints are not config).
                    discovery: None,
                })),
            });
        }
        for i in 0..3 {
            resources.push(Resource {
                name: format!("p{i}"),
                version: 0,
                spec: Some(Spec::Policy(self.policy())),
            });
        }
        for i in 0..self.0.usize(1..=3) {
            resources.push(Resource {
                name: format!("r{i}"),
                version: 0,
                spec: Some(Spec::Route(RouteSpec {
                    hostnames: self.list(1, |g| {
                        g.choose(&["api.example.com", "*.example.com"], &["Bad"])
                            .into()
                    }),
                    rules: (0..self.0.usize(1..=2)).map(|_| self.rule()).collect(),
                    policies: self.list(1, |g| format!("p{}", g.choose(&[0], &[1, 7]))),
                    normalize_path: self.some(|g| g.0.bool()),
                })),
            });
        }
        resources
    }
}

#[test]
fn whatever_validation_accepts_compiles() {
    let mut g = Gen(fastrand::Rng::with_seed(0x06a7_e3a1));
    let (mut valid, mut invalid) = (0, 0);
    for case in 0..3000 {
        let resources = g.resources();
        let validated = gateway_proto::validate(&resources);
        let compiled = Table::compile(1, &resources, Source::File, &SideTables::default());
        match (validated, compiled) {
            (Ok(()), Ok(_)) => valid += 1,
            (Err(errors), Err(CompileError::Invalid(again))) if errors == again => invalid += 1,
            (validated, compiled) => panic!(
                "case {case}: validation {validated:?} but compile {:?}\n{resources:#?}",
                compiled.map(|t| t.routes())
            ),
        }
    }
    // Both verdicts must be common, or the property proves little.
    assert!(
        valid >= 150 && invalid >= 150,
        "{valid} valid, {invalid} invalid"
    );
}

/// The rule each probe request gets, as `route#rule`.
fn routing(table: &Table) -> Vec<String> {
    let mut out = Vec::new();
    for host in [
        None,
        Some("api.example.com"),
        Some("x.example.com"),
        Some("other"),
    ] {
        for path in [
            "/", "/a", "/a/x", "/b", "/b/", "/users/7", "/v12", "/c", "/d/e", "/zzz",
        ] {
            for method in [http::Method::GET, http::Method::POST] {
                for (header, query) in [
                    (None, None),
                    (Some("1"), Some("q=1")),
                    (Some("22"), Some("q=xy")),
                ] {
                    let mut headers = http::HeaderMap::new();
                    if let Some(value) = header {
                        headers.insert("x-a", http::HeaderValue::from_static(value));
                    }
                    let view = RequestView {
                        host,
                        path,
                        query,
                        method: &method,
                        headers: &headers,
                    };
                    out.push(match table.route(&view) {
                        Some(rule) => {
                            let upstreams: Vec<String> = rule
                                .upstreams()
                                .iter()
                                .map(|u| {
                                    let addresses: Vec<&str> =
                                        u.endpoints().iter().map(|e| e.address()).collect();
                                    format!("{}={}", u.name(), addresses.join(","))
                                })
                                .collect();
                            format!("{}#{} {}", rule.route(), rule.index(), upstreams.join(" "))
                        }
                        None => "none".into(),
                    });
                }
            }
        }
    }
    out
}

#[test]
fn an_updated_table_routes_like_a_whole_compile() {
    let mut g = Gen(fastrand::Rng::with_seed(0x5eed_de17));
    let side = SideTables::default();
    let (mut updates, mut refused) = (0, 0);
    for _ in 0..40 {
        // A valid configuration to start from.
        let mut held = loop {
            let mut resources = g.resources();
            gateway_proto::delta::sort(&mut resources);
            if gateway_proto::validate(&resources).is_ok() {
                break resources;
            }
        };
        let mut table = Table::compile(1, &held, Source::ControlPlane, &side).unwrap();
        let mut graph = gateway_proto::validate::Graph::of(&held);
        for step in 0..40 {
            // Put or remove one or two routes (r0..r5; the generator names them r0..r2), or
            // now and then put an upstream (u0..u2) with other endpoints.
            let mut after = held.clone();
            let mut changed = Vec::new();
            let mut upstream_changed = Vec::new();
            if g.0.u8(..4) == 0 {
                let fresh = g.resources();
                let name = format!("u{}", g.0.usize(..3));
                if let Some(upstream) = fresh.into_iter().find(|r| r.name == name) {
                    after.retain(|r| r.name != name);
                    after.push(upstream);
                    upstream_changed.push(name);
                }
            }
            for _ in 0..g.0.usize(1..=2) {
                let name = format!("r{}", g.0.usize(..6));
                if changed.contains(&name) {
                    continue;
                }
                after.retain(|r| !(r.name == name && matches!(r.spec, Some(Spec::Route(_)))));
                if g.0.u8(..4) != 0 {
                    let route = g
                        .resources()
                        .into_iter()
                        .find(|r| matches!(r.spec, Some(Spec::Route(_))));
                    if let Some(mut route) = route {
                        route.name = name.clone();
                        after.push(route);
                    }
                }
                changed.push(name);
            }
            gateway_proto::delta::sort(&mut after);
            let keys: Vec<(gateway_proto::ResourceKind, &str)> = changed
                .iter()
                .map(|name| (gateway_proto::ResourceKind::Route, name.as_str()))
                .chain(
                    upstream_changed
                        .iter()
                        .map(|name| (gateway_proto::ResourceKind::Upstream, name.as_str())),
                )
                .collect();
            let mut moved = graph.clone();
            let Ok(routes) = moved.check_changed(&after, &keys, side.regexes()) else {
                assert!(
                    gateway_proto::validate(&after).is_err(),
                    "step {step}: refused a valid change"
                );
                refused += 1;
                continue;
            };
            let names: Vec<&str> = changed.iter().map(String::as_str).collect();
            let upstreams: Vec<(&str, Option<&v1::UpstreamSpec>)> = upstream_changed
                .iter()
                .map(|name| {
                    let spec = after.iter().find_map(|r| match &r.spec {
                        Some(Spec::Upstream(spec)) if r.name == *name => Some(spec),
                        _ => None,
                    });
                    (name.as_str(), spec)
                })
                .collect();
            let updated = table.update(step + 2, &names, &routes, &upstreams, &side);
            let whole = Table::compile(step + 2, &after, Source::ControlPlane, &side).unwrap();
            assert_eq!(
                routing(&updated),
                routing(&whole),
                "step {step}: {changed:?} in {after:#?}"
            );
            assert_eq!(updated.routes(), whole.routes());
            let patterns = |t: &Table| {
                let mut p: Vec<&str> = t.regexes.keys().map(|k| &**k).collect();
                p.sort_unstable();
                p.join(" ")
            };
            assert_eq!(patterns(&updated), patterns(&whole), "the regexes in use");
            drop(routes);
            graph = moved;
            held = after;
            table = updated;
            updates += 1;
        }
    }
    assert!(
        updates >= 400 && refused >= 100,
        "{updates} updates, {refused} refused"
    );
}

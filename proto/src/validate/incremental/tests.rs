//! The incremental check against the whole-graph check: the same verdict for every change of a
//! long run of generated configurations and changes.

use super::*;
use crate::{
    delta,
    v1::{
        BackendRef, Endpoint, IpAccessPolicy, PathMatch, PolicySpec, Resource, RouteMatch,
        RouteRule, RouteSpec, Snapshot, UpstreamDiscovery, UpstreamSpec, path_match, policy_spec,
    },
};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

// A fifth name of each kind is never generated as a resource: references to it dangle.
const UPSTREAMS: &[&str] = &["u0", "u1", "u2", "u3", "u-missing"];
const POLICIES: &[&str] = &["p0", "p1", "p2", "p-missing"];
const ROUTES: &[&str] = &["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"];
const HOSTS: &[&str] = &["a.example", "b.example", "*.example"];
const PATHS: &[&str] = &["/", "/a", "/b", "/a/b", "relative"];

fn upstream(rng: &mut Rng, name: &str) -> Resource {
    Resource {
        name: name.into(),
        spec: Some(Spec::Upstream(UpstreamSpec {
            endpoints: (0..rng.below(3))
                .map(|i| Endpoint {
                    address: format!("127.0.0.1:{}", 9000 + i),
                    weight: None,
                })
                .collect(),
            // Sometimes the registry's (alone, valid or not, or with endpoints: refused).
            discovery: rng.chance(15).then(|| {
                Box::new(UpstreamDiscovery {
                    service: rng.pick(&["users", "Bad_Service"]).into(),
                })
            }),
            ..UpstreamSpec::default()
        })),
        ..Resource::default()
    }
}

fn policy(rng: &mut Rng, name: &str) -> Resource {
    Resource {
        name: name.into(),
        spec: Some(Spec::Policy(PolicySpec {
            global: rng.chance(20),
            body: Some(policy_spec::Body::IpAccess(IpAccessPolicy {
                allow: vec![if rng.chance(90) { "10.0.0.0/8" } else { "nope" }.into()],
                deny: vec![],
            })),
        })),
        ..Resource::default()
    }
}

fn route(rng: &mut Rng, name: &str) -> Resource {
    let hostnames = (0..rng.below(3)).map(|_| rng.pick(HOSTS).into()).collect();
    let rules = (0..1 + rng.below(2))
        .map(|_| RouteRule {
            matches: (0..rng.below(3))
                .map(|_| RouteMatch {
                    path: Some(PathMatch {
                        r#type: if rng.chance(50) {
                            path_match::Type::Exact
                        } else {
                            path_match::Type::PathPrefix
                        } as i32,
                        value: rng.pick(PATHS).into(),
                    }),
                    method: if rng.chance(30) { "GET" } else { "" }.into(),
                    ..RouteMatch::default()
                })
                .collect(),
            backend_refs: vec![BackendRef {
                name: rng.pick(UPSTREAMS).into(),
                weight: None,
            }],
            policies: (0..rng.below(2))
                .map(|_| rng.pick(POLICIES).into())
                .collect(),
            ..RouteRule::default()
        })
        .collect();
    Resource {
        name: name.into(),
        spec: Some(Spec::Route(RouteSpec {
            hostnames,
            rules,
            policies: (0..rng.below(2))
                .map(|_| rng.pick(POLICIES).into())
                .collect(),
            normalize_path: None,
        })),
        ..Resource::default()
    }
}

fn random_resource(rng: &mut Rng) -> Resource {
    match rng.below(10) {
        0..2 => {
            let name = rng.pick(&UPSTREAMS[..4]);
            upstream(rng, name)
        }
        2..4 => {
            let name = rng.pick(&POLICIES[..3]);
            policy(rng, name)
        }
        _ => {
            let name = rng.pick(ROUTES);
            route(rng, name)
        }
    }
}

fn key_of(resource: &Resource) -> (ResourceKind, &str) {
    (ResourceKind::of(resource).unwrap(), resource.name.as_str())
}

#[test]
fn the_same_verdict_as_the_whole_check() {
    let regexes = RegexCache::default();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut valid_changes, mut invalid_changes) = (0, 0);
    for _ in 0..60 {
        // A valid starting point: upstreams and policies only, then grown by changes.
        let mut held = Snapshot {
            version: 1,
            resources: vec![],
        };
        let mut graph = Graph::of(&held.resources);
        for step in 0..150 {
            let mut change = v1::Delta {
                version: held.version + 1,
                base_version: held.version,
                ..v1::Delta::default()
            };
            let mut names = HashSet::new();
            for _ in 0..1 + rng.below(3) {
                if rng.chance(25) && !held.resources.is_empty() {
                    let at = rng.below(held.resources.len());
                    let (kind, name) = key_of(&held.resources[at]);
                    if names.insert((kind, name.to_owned())) {
                        change.removed.push(delta::key(kind, name));
                    }
                } else {
                    let resource = random_resource(&mut rng);
                    let (kind, name) = key_of(&resource);
                    if names.insert((kind, name.to_owned())) {
                        change.resources.push(resource);
                    }
                }
            }
            let mut after = held.clone();
            let _ = delta::apply(&mut after, change).expect("a delta of held keys applies");
            let changed: Vec<(ResourceKind, &str)> = names
                .iter()
                .map(|(kind, name)| (*kind, name.as_str()))
                .collect();

            let whole = crate::check(&after.resources, &regexes).is_ok();
            let mut moved = graph.clone();
            let incremental = moved.check_changed(&after.resources, &changed, &regexes);
            assert_eq!(
                incremental.is_ok(),
                whole,
                "step {step}: the incremental check says {:?}, the whole check {whole}, for {changed:?} in {:#?}",
                incremental.as_ref().map(|routes| routes.len()),
                after.resources,
            );
            if let Ok(routes) = incremental {
                // The changed routes that exist, and the routes that refer to a changed
                // upstream or policy, each once, parsed.
                let returned: Vec<&str> = routes.iter().map(|r| r.name).collect();
                let mut expected: Vec<&str> = after
                    .resources
                    .iter()
                    .filter(|r| {
                        let Some(Spec::Route(spec)) = &r.spec else {
                            return false;
                        };
                        let refers = changed.iter().any(|(kind, name)| match kind {
                            ResourceKind::Upstream => spec
                                .rules
                                .iter()
                                .any(|rule| rule.backend_refs.iter().any(|b| b.name == *name)),
                            ResourceKind::Policy => spec
                                .policies
                                .iter()
                                .chain(spec.rules.iter().flat_map(|rule| &rule.policies))
                                .any(|p| p == name),
                            ResourceKind::Route
                            | ResourceKind::Consumer
                            | ResourceKind::Certificate
                            | ResourceKind::ProtoSet => false,
                        });
                        refers || changed.contains(&(ResourceKind::Route, r.name.as_str()))
                    })
                    .map(|r| r.name.as_str())
                    .collect();
                expected.sort_unstable();
                assert_eq!(returned, expected, "step {step}");
                // The moved graph is the graph of the new configuration.
                let rebuilt = Graph::of(&after.resources);
                assert_eq!(moved.owners, rebuilt.owners, "step {step}");
                graph = moved;
                held = after;
                valid_changes += 1;
            } else {
                invalid_changes += 1;
            }
        }
    }
    // Both verdicts were exercised, many times.
    assert!(valid_changes > 1_000, "{valid_changes} valid changes");
    assert!(invalid_changes > 1_000, "{invalid_changes} invalid changes");
}

use super::*;
use crate::v1::{self, Endpoint, PolicySpec, RouteSpec, UpstreamSpec, resource::Spec};

fn upstream(name: &str, port: u16) -> Resource {
    Resource {
        name: name.into(),
        spec: Some(Spec::Upstream(UpstreamSpec {
            endpoints: vec![Endpoint {
                address: format!("127.0.0.1:{port}"),
                ..Endpoint::default()
            }],
            ..UpstreamSpec::default()
        })),
        ..Resource::default()
    }
}

fn route(name: &str) -> Resource {
    Resource {
        name: name.into(),
        spec: Some(Spec::Route(RouteSpec::default())),
        ..Resource::default()
    }
}

fn policy(name: &str) -> Resource {
    Resource {
        name: name.into(),
        spec: Some(Spec::Policy(PolicySpec::default())),
        ..Resource::default()
    }
}

fn snapshot(version: i64, mut resources: Vec<Resource>) -> Snapshot {
    sort(&mut resources);
    Snapshot { version, resources }
}

fn keys(s: &Snapshot) -> Vec<(ResourceKind, &str)> {
    s.resources
        .iter()
        .map(|r| (ResourceKind::of(r).unwrap(), r.name.as_str()))
        .collect()
}

#[test]
fn sorts_by_kind_then_name() {
    let s = snapshot(
        1,
        vec![route("b"), upstream("z", 1), route("a"), policy("p")],
    );
    assert_eq!(
        keys(&s),
        [
            (ResourceKind::Upstream, "z"),
            (ResourceKind::Policy, "p"),
            (ResourceKind::Route, "a"),
            (ResourceKind::Route, "b"),
        ]
    );
}

/// The keys on which two snapshots differ, as the control plane's history records them.
fn changed<'a>(a: &'a Snapshot, b: &'a Snapshot) -> Vec<(ResourceKind, &'a str)> {
    let mut out: Vec<_> = keys(a).into_iter().chain(keys(b)).collect();
    out.sort_unstable();
    out.dedup();
    out.retain(|(kind, name)| {
        let x = find(&a.resources, *kind, name)
            .ok()
            .map(|i| &a.resources[i]);
        let y = find(&b.resources, *kind, name)
            .ok()
            .map(|i| &b.resources[i]);
        x != y
    });
    out
}

#[test]
fn add_change_remove_and_rename_give_the_target() {
    let base = snapshot(
        3,
        vec![
            upstream("u1", 1),
            upstream("u2", 2),
            route("r1"),
            route("old-name"),
        ],
    );
    let target = snapshot(
        9,
        vec![
            upstream("u1", 10),
            route("r1"),
            route("new-name"),
            policy("p"),
        ],
    );
    let delta = select(&target, base.version, changed(&base, &target));
    assert_eq!(delta.base_version, 3);
    assert_eq!(delta.version, 9);
    assert_eq!(delta.resources.len(), 3, "u1 changed, new-name and p added");
    assert_eq!(delta.removed.len(), 2, "u2 and old-name removed");

    let mut held = base.clone();
    let undo = apply(&mut held, delta).unwrap();
    assert_eq!(held, target);
    undo.revert(&mut held);
    assert_eq!(held, base);
}

#[test]
fn a_sequence_of_deltas_gives_the_full_snapshot() {
    let mut versions = vec![snapshot(1, vec![upstream("u", 1), route("a")])];
    versions.push(snapshot(2, vec![upstream("u", 1), route("a"), route("b")]));
    versions.push(snapshot(3, vec![upstream("u", 2), route("b")]));
    versions.push(snapshot(
        4,
        vec![upstream("u", 2), upstream("v", 3), route("b"), route("a")],
    ));
    versions.push(snapshot(5, vec![]));
    let mut held = versions[0].clone();
    for pair in versions.windows(2) {
        let delta = select(&pair[1], pair[0].version, changed(&pair[0], &pair[1]));
        let _applied = apply(&mut held, delta).unwrap();
        assert_eq!(held, pair[1]);
    }
}

#[test]
fn refuses_a_delta_for_another_base_and_leaves_the_snapshot_alone() {
    let base = snapshot(3, vec![route("r")]);
    let mut held = base.clone();
    let delta = Delta {
        version: 5,
        base_version: 4,
        ..Delta::default()
    };
    assert_eq!(
        apply(&mut held, delta).unwrap_err(),
        DeltaError::Base { base: 4, held: 3 }
    );
    assert_eq!(held, base);
}

#[test]
fn removing_what_is_not_held_is_a_no_op_and_naming_a_key_twice_is_refused() {
    let base = snapshot(3, vec![route("r")]);
    let mut held = base.clone();
    // Created and removed again since the base: listed as removed, never held.
    let missing = Delta {
        version: 4,
        base_version: 3,
        removed: vec![key(ResourceKind::Route, "gone")],
        ..Delta::default()
    };
    let undo = apply(&mut held, missing).expect("a removal of nothing applies");
    assert_eq!(held.resources, base.resources);
    assert_eq!(held.version, 4);
    undo.revert(&mut held);
    assert_eq!(held, base);
    let twice = Delta {
        version: 4,
        base_version: 3,
        resources: vec![route("r")],
        removed: vec![key(ResourceKind::Route, "r")],
    };
    assert!(matches!(
        apply(&mut held, twice),
        Err(DeltaError::Twice { .. })
    ));
    let kindless = Delta {
        version: 4,
        base_version: 3,
        resources: vec![Resource {
            name: "x".into(),
            ..Resource::default()
        }],
        ..Delta::default()
    };
    assert!(matches!(
        apply(&mut held, kindless),
        Err(DeltaError::NoKind(_))
    ));
    assert_eq!(held, base);
}

#[test]
fn packed_messages_round_trip_and_are_bounded() {
    let message = ControlPlaneMessage {
        message: Some(v1::control_plane_message::Message::Snapshot(snapshot(
            7,
            (0..200).map(|i| route(&format!("route-{i}"))).collect(),
        ))),
    };
    let packed = pack(&message);
    assert!(packed.len() < message.encoded_len());
    assert_eq!(unpack(&packed, 1 << 20).unwrap(), message);
    assert!(matches!(
        unpack(&packed, 100),
        Err(UnpackError::TooLarge(100))
    ));
    assert!(matches!(
        unpack(b"not gzip", 1 << 20),
        Err(UnpackError::Gzip(_))
    ));
}

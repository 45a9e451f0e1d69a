use gateway_proto::v1::{admin_server::Admin as _, resource::Spec};
use tonic::Code;

use super::*;
use crate::{
    shutdown,
    store::{
        EmbeddedStore,
        conformance::{route, upstream},
    },
};

struct Fixture {
    admin: AdminService,
    store: Arc<EmbeddedStore>,
    _dir: tempfile::TempDir,
    _trigger: shutdown::ShutdownTrigger,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("open"));
    let (trigger, signal) = shutdown::channel();
    let metrics = Arc::new(Metrics::default());
    let (reflector, _) = Reflector::spawn(store.clone(), metrics.clone(), signal);
    Fixture {
        admin: AdminService::new(store.clone(), reflector, metrics),
        store,
        _dir: dir,
        _trigger: trigger,
    }
}

async fn apply(
    admin: &AdminService,
    resources: Vec<Resource>,
    dry_run: bool,
) -> Result<ApplyResponse, Status> {
    admin
        .apply(Request::new(ApplyRequest { resources, dry_run }))
        .await
        .map(Response::into_inner)
}

fn actions(response: &ApplyResponse) -> Vec<(String, Action)> {
    response
        .changes
        .iter()
        .map(|c| (c.name.clone(), Action::try_from(c.action).expect("action")))
        .collect()
}

#[tokio::test]
async fn apply_creates_updates_and_skips_unchanged() {
    let f = fixture();
    let first = apply(
        &f.admin,
        vec![upstream("users", 9001), route("api", "users")],
        false,
    )
    .await
    .expect("apply");
    assert!(first.version > 0);
    assert_eq!(
        actions(&first),
        [
            ("users".into(), Action::Created),
            ("api".into(), Action::Created)
        ]
    );
    assert!(first.changes.iter().all(|c| c.before.is_none()));
    assert!(
        first
            .changes
            .iter()
            .all(|c| c.after.as_ref().map(|a| a.version) == Some(first.version))
    );

    let again = apply(&f.admin, vec![upstream("users", 9001)], false)
        .await
        .expect("apply");
    assert_eq!(
        again.version, first.version,
        "nothing changed, nothing written"
    );
    assert_eq!(actions(&again), [("users".into(), Action::Unchanged)]);

    let update = apply(
        &f.admin,
        vec![upstream("users", 9002), route("api", "users")],
        false,
    )
    .await
    .expect("apply");
    assert!(update.version > first.version);
    assert_eq!(
        actions(&update),
        [
            ("users".into(), Action::Updated),
            ("api".into(), Action::Unchanged)
        ]
    );
    let change = &update.changes[0];
    assert_eq!(
        change.before.as_ref().map(|b| b.version),
        Some(first.version)
    );
    assert_eq!(
        change.after.as_ref().map(|a| a.version),
        Some(update.version)
    );

    let got = f
        .admin
        .get(Request::new(GetRequest {
            kind: v1::Kind::Upstream as i32,
            name: "users".into(),
        }))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.version, update.version);
    assert_eq!(got.spec, upstream("users", 9002).spec);
}

#[tokio::test]
async fn dry_run_and_invalid_requests_write_nothing() {
    let f = fixture();
    let dry = apply(&f.admin, vec![upstream("users", 9001)], true)
        .await
        .expect("dry run");
    assert_eq!(dry.version, 0);
    assert_eq!(actions(&dry), [("users".into(), Action::Created)]);

    let dangling = apply(&f.admin, vec![route("api", "nobody")], false)
        .await
        .expect_err("invalid");
    assert_eq!(dangling.code(), Code::InvalidArgument);
    assert!(
        dangling.message().starts_with("Route/api: spec.rules[0]"),
        "{}",
        dangling.message()
    );

    let no_spec = Resource {
        name: "x".into(),
        ..Resource::default()
    };
    let status = apply(&f.admin, vec![no_spec], false)
        .await
        .expect_err("no spec");
    assert_eq!(status.code(), Code::InvalidArgument);

    let twice = apply(&f.admin, vec![upstream("u", 1), upstream("u", 2)], false)
        .await
        .expect_err("twice");
    assert_eq!(twice.code(), Code::InvalidArgument);

    let listing = f.store.list().await.expect("list");
    assert_eq!(listing.version, 0);
    assert!(listing.resources.is_empty());
}

#[tokio::test]
async fn out_of_range_durations_over_the_api_are_refused() {
    // The admin API takes protobuf, so a client can send durations no YAML file would hold;
    // stored, they used to make `gatewayctl get` panic.
    let f = fixture();
    for (seconds, nanos, field) in [
        (315_576_000_001, 0, "spec.timeout"),
        (i64::MAX, 0, "spec.timeout"),
        (1, 1_000_000_000, "spec.timeout"),
        (-5, 0, "spec.timeout"),
    ] {
        let mut users = upstream("users", 9001);
        let Some(gateway_proto::v1::resource::Spec::Upstream(spec)) = &mut users.spec else {
            panic!("an upstream");
        };
        spec.timeout = Some(prost_types::Duration { seconds, nanos });
        let status = apply(&f.admin, vec![users], false)
            .await
            .expect_err("out of range");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .starts_with(&format!("Upstream/users: {field}: ")),
            "{}",
            status.message()
        );
    }
    assert!(f.store.list().await.expect("list").resources.is_empty());
}

#[tokio::test]
async fn version_preconditions() {
    let f = fixture();
    let v = apply(&f.admin, vec![upstream("users", 9001)], false)
        .await
        .expect("apply")
        .version;
    let stale = Resource {
        version: v + 100,
        ..upstream("users", 9002)
    };
    let status = apply(&f.admin, vec![stale], false)
        .await
        .expect_err("stale");
    assert_eq!(status.code(), Code::Aborted);
    let fresh = Resource {
        version: v,
        ..upstream("users", 9002)
    };
    apply(&f.admin, vec![fresh], false)
        .await
        .expect("matching version");
    let absent = Resource {
        version: 1,
        ..upstream("other", 9002)
    };
    assert_eq!(
        apply(&f.admin, vec![absent], false)
            .await
            .expect_err("absent")
            .code(),
        Code::Aborted
    );
}

#[tokio::test]
async fn delete_checks_references() {
    let f = fixture();
    apply(
        &f.admin,
        vec![upstream("users", 9001), route("api", "users")],
        false,
    )
    .await
    .expect("apply");
    let delete = |kind: v1::Kind, name: &str| {
        f.admin.delete(Request::new(DeleteRequest {
            kind: kind as i32,
            name: name.into(),
        }))
    };
    let refused = delete(v1::Kind::Upstream, "users")
        .await
        .expect_err("referenced");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("Route/api"),
        "{}",
        refused.message()
    );

    let version = delete(v1::Kind::Route, "api")
        .await
        .expect("delete route")
        .into_inner()
        .version;
    let again = delete(v1::Kind::Route, "api").await.expect_err("gone");
    assert_eq!(again.code(), Code::NotFound);
    let last = delete(v1::Kind::Upstream, "users")
        .await
        .expect("delete upstream")
        .into_inner();
    assert!(last.version > version);
    let unspecified = delete(v1::Kind::Unspecified, "users")
        .await
        .expect_err("no kind");
    assert_eq!(unspecified.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn list_sorted_and_filtered() {
    let f = fixture();
    apply(
        &f.admin,
        vec![
            route("b", "z"),
            route("a", "z"),
            upstream("z", 1),
            upstream("y", 2),
        ],
        false,
    )
    .await
    .expect("apply");
    let list = |kind: v1::Kind| {
        f.admin
            .list(Request::new(ListRequest { kind: kind as i32 }))
    };
    let all = list(v1::Kind::Unspecified)
        .await
        .expect("list")
        .into_inner();
    let names: Vec<_> = all.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["y", "z", "a", "b"]);
    let routes = list(v1::Kind::Route).await.expect("list").into_inner();
    assert_eq!(routes.resources.len(), 2);
    assert_eq!(routes.version, all.version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_applies_lose_nothing() {
    let f = fixture();
    let mut tasks = Vec::new();
    for i in 0..10u16 {
        let admin = f.admin.clone();
        tasks.push(tokio::spawn(async move {
            apply(&admin, vec![upstream(&format!("u{i}"), 9000 + i)], false).await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("apply");
    }
    assert_eq!(f.store.list().await.expect("list").resources.len(), 10);
}

#[tokio::test]
async fn lists_data_planes_with_the_version() {
    let f = fixture();
    let v = apply(&f.admin, vec![upstream("users", 9001)], false)
        .await
        .expect("apply")
        .version;
    f.admin
        .reflector
        .wait_for_version(v)
        .await
        .expect("snapshot");
    f.store
        .put_dataplane(v1::DataPlaneStatus {
            id: "dp-1".into(),
            acked_version: v,
            ..Default::default()
        })
        .await
        .expect("register");
    let response = f
        .admin
        .list_data_planes(Request::new(ListDataPlanesRequest {}))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(response.version, v);
    assert_eq!(response.data_planes.len(), 1);
}

/// An apply on top of this service's last write is checked in proportion to its change; what
/// it accepts and refuses, and how it names a problem, is what the whole check says.
#[tokio::test]
async fn applies_on_top_of_the_last_one_are_checked_like_the_whole_config() {
    let f = fixture();
    let mut all = vec![upstream("users", 9001)];
    all.extend((0..50).map(|i| route(&format!("r{i}"), "users")));
    let v = apply(&f.admin, all, false).await.expect("apply").version;
    assert!(
        f.admin
            .graph
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|(at, _)| *at == v)
    );

    // A route whose match another route has: refused, naming the field, as the whole check does.
    let mut clash = route("z-clash", "users");
    if let Some(Spec::Route(spec)) = &mut clash.spec {
        spec.rules[0].matches[0].path.as_mut().unwrap().value = "/r7".into();
    }
    let refused = apply(&f.admin, vec![clash.clone()], false)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let mut whole = f.store.list().await.expect("list").resources;
    whole.push(clash);
    gateway_proto::delta::sort(&mut whole);
    let expected = gateway_proto::validate(&whole).unwrap_err().to_string();
    assert!(
        refused.message().contains(&expected),
        "{} vs {expected}",
        refused.message()
    );

    // A reference to a missing upstream, likewise.
    let dangling = route("r-dangling", "nowhere");
    let refused = apply(&f.admin, vec![dangling], false).await.unwrap_err();
    assert!(
        refused
            .message()
            .contains("spec.rules[0].backendRefs[0].name"),
        "{}",
        refused.message()
    );

    // Valid changes go on being accepted, each on top of the last.
    for i in 50..60 {
        let v_next = apply(&f.admin, vec![route(&format!("r{i}"), "users")], false)
            .await
            .expect("apply")
            .version;
        assert!(v_next > v);
        assert!(
            f.admin
                .graph
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|(at, _)| *at == v_next)
        );
    }
    // Taking away the upstream every route uses is refused, even though only it changed.
    let mut gone = upstream("users", 9001);
    if let Some(Spec::Upstream(spec)) = &mut gone.spec {
        spec.endpoints.clear();
    }
    assert_eq!(
        apply(&f.admin, vec![gone], false).await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

fn certificate(name: &str, not_after_year: i32) -> (Resource, String) {
    let mut params = rcgen::CertificateParams::new(vec!["gw.test".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let private_key_pem = key.serialize_pem();
    let resource = Resource {
        name: name.into(),
        version: 0,
        spec: Some(Spec::Certificate(v1::CertificateSpec {
            hostnames: vec!["gw.test".into()],
            certificate_pem: cert.pem(),
            private_key_pem: private_key_pem.clone(),
            default: false,
        })),
    };
    (resource, private_key_pem)
}

fn key_of(resource: &Resource) -> &str {
    match &resource.spec {
        Some(Spec::Certificate(spec)) => &spec.private_key_pem,
        _ => panic!("not a certificate: {resource:?}"),
    }
}

#[tokio::test]
async fn private_keys_are_stored_and_never_read_back() {
    let f = fixture();
    let (cert, key) = certificate("gw", 2090);
    let applied = apply(&f.admin, vec![cert.clone()], false).await.unwrap();
    let after = applied.changes[0].after.as_ref().unwrap();
    assert_eq!(key_of(after), gateway_proto::validate::REDACTED);

    // Stored whole: the data planes need it.
    let stored = f.store.list().await.unwrap();
    assert_eq!(key_of(&stored.resources[0]), key);

    let got = f
        .admin
        .get(Request::new(GetRequest {
            kind: v1::Kind::Certificate as i32,
            name: "gw".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(key_of(&got), gateway_proto::validate::REDACTED);
    let listed = f
        .admin
        .list(Request::new(ListRequest { kind: 0 }))
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed
            .resources
            .iter()
            .all(|r| !format!("{r:?}").contains(&key))
    );

    // Re-applying what a read returned is refused by name, not stored as a key.
    let error = apply(&f.admin, vec![got], false).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("spec.privateKeyPem"),
        "{}",
        error.message()
    );
    // The update shows its before redacted too.
    let (renewed, _) = certificate("gw", 2091);
    let updated = apply(&f.admin, vec![renewed], false).await.unwrap();
    assert!(!format!("{updated:?}").contains(&key));
}

#[tokio::test]
async fn an_expired_certificate_is_refused_when_written() {
    let f = fixture();
    let (expired, _) = certificate("old", 2021);
    let error = apply(&f.admin, vec![expired], false).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error
            .message()
            .contains("Certificate/old: spec.certificatePem: the leaf expired"),
        "{}",
        error.message()
    );
    assert!(f.store.list().await.unwrap().resources.is_empty());
}

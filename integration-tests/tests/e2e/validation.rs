//! What the admin API refuses, what `gatewayctl validate` says offline, and concurrent writers.

use std::{collections::BTreeSet, path::Path};

use integration_tests::{
    ControlPlane, ControlPlaneOpts, Etcd, applied_version, eventually, gatewayctl, unique_prefix,
    write_file,
};
use tokio::task::JoinSet;

use crate::support::{docs, route, upstream};

const NOWHERE: &str = "127.0.0.1:9";

fn regex_route(name: &str, regex: &str, upstream: &str) -> String {
    format!(
        "kind: Route\nname: {name}\nspec:\n  rules:\n    - matches:\n        - path: {{ type: RegularExpression, value: \"{regex}\" }}\n      backendRefs:\n        - name: {upstream}\n"
    )
}

/// (b) Each bad file is refused as a whole by `apply` (exit 1, the field named on stderr),
/// nothing of it is stored, and offline `validate` gives the same verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_is_refused_and_nothing_is_stored() {
    let etcd = Etcd::start().await;
    let cp = ControlPlane::start(ControlPlaneOpts::etcd(etcd.endpoint(), unique_prefix())).await;
    let ctl = cp.ctl();
    let dir = tempfile::tempdir().unwrap();
    let nowhere = [NOWHERE.parse().unwrap()];

    let base = dir.path().join("base.yaml");
    write_file(
        &base,
        docs(&[upstream("base", &nowhere), route("base", "/base", "base")]),
    );
    ctl.apply(&base, &[]).await.success();
    gatewayctl(&["validate", "-f", &base.display().to_string()], None)
        .await
        .success();
    let routes_before = ctl.get_json("routes").await;
    let upstreams_before = ctl.get_json("upstreams").await;

    // Every bad file also carries a valid new upstream, which must not be stored either.
    let extra = upstream("extra", &nowhere);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown upstream",
            docs(&[extra.clone(), route("r", "/r", "missing")]),
            vec!["Route/r", "spec.rules[0].backendRefs[0].name"],
        ),
        (
            "bad regex",
            docs(&[extra.clone(), regex_route("re", "/x/(", "extra")]),
            vec!["Route/re", "spec.rules[0].matches[0].path.value"],
        ),
        (
            "duplicate names",
            docs(&[
                extra.clone(),
                route("dup", "/d1", "extra"),
                route("dup", "/d2", "extra"),
            ]),
            vec!["Route/dup", "name"],
        ),
        (
            "bad policy body",
            format!("{extra}---\nkind: Policy\nname: p\nspec:\n  ipAccess: {{ allow: [nope] }}\n"),
            vec!["Policy/p", "spec.ipAccess.allow[0]"],
        ),
        (
            "unknown policy",
            format!(
                "{extra}---\nkind: Route\nname: r\nspec:\n  policies: [ghost]\n  rules:\n    - backendRefs: [{{ name: extra }}]\n"
            ),
            vec!["Route/r", "spec.policies[0]", "ghost"],
        ),
        (
            "mirror to nowhere",
            format!(
                "{extra}---\nkind: Route\nname: r\nspec:\n  rules:\n    - filters: [{{ type: RequestMirror, requestMirror: {{ backendRef: {{ name: ghost }} }} }}]\n      backendRefs: [{{ name: extra }}]\n"
            ),
            vec![
                "Route/r",
                "spec.rules[0].filters[0].requestMirror.backendRef.name",
                "does not exist",
            ],
        ),
        (
            "bad redirect",
            format!(
                "{extra}---\nkind: Route\nname: r\nspec:\n  rules:\n    - filters: [{{ type: RequestRedirect, requestRedirect: {{ statusCode: 303 }} }}]\n"
            ),
            vec![
                "Route/r",
                "spec.rules[0].filters[0].requestRedirect.statusCode",
            ],
        ),
        (
            "malformed YAML",
            format!("{extra}---\nkind: Route\nname: [unclosed\n"),
            vec!["malformed YAML"],
        ),
    ];
    for (case, yaml, needles) in cases {
        let file = dir.path().join(format!("{}.yaml", case.replace(' ', "-")));
        write_file(&file, &yaml);
        let file = file.display().to_string();

        let applied = ctl.run(&["apply", "-f", &file]).await;
        let validated = gatewayctl(&["validate", "-f", &file], None).await;
        for output in [&applied, &validated] {
            assert_eq!(output.code, 1, "{case}: exit code\n{output}");
            for needle in &needles {
                assert!(
                    output.stderr.contains(needle),
                    "{case}: stderr should name {needle:?}\n{output}"
                );
            }
        }
        assert_eq!(
            ctl.get_json("routes").await,
            routes_before,
            "{case}: routes"
        );
        assert_eq!(
            ctl.get_json("upstreams").await,
            upstreams_before,
            "{case}: upstreams"
        );
    }

    // A stored upstream that a route still uses cannot be deleted.
    let refused = ctl.run(&["delete", "upstream", "base"]).await;
    refused.code(1).stderr_contains("base");
    assert_eq!(ctl.get_json("upstreams").await, upstreams_before);
}

/// Policies are a kind like the others: applied, listed, referenced, and protected from
/// deletion while a route uses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_applied_listed_and_protected() {
    let cp = ControlPlane::start(ControlPlaneOpts::embedded()).await;
    let ctl = cp.ctl();
    let yaml = format!(
        "{}---\nkind: Policy\nname: office\nspec:\n  ipAccess: {{ allow: [10.0.0.0/8] }}\n---\nkind: Route\nname: app\nspec:\n  policies: [office]\n  rules:\n    - backendRefs: [{{ name: app }}]\n",
        upstream("app", &[NOWHERE.parse().unwrap()])
    );
    ctl.apply_yaml(&yaml, &[]).await.success();
    assert_eq!(ctl.names("policies").await, ["office"]);
    let table = ctl.run(&["get", "policies"]).await;
    table.success();
    assert!(table.stdout.contains("ipAccess"), "{table}");
    ctl.run(&["delete", "policy", "office"]).await.code(1);
    ctl.run(&["delete", "route", "app"]).await.success();
    ctl.run(&["delete", "policy", "office"]).await.success();
    assert_eq!(ctl.names("policies").await, Vec::<String>::new());
}

/// `diff --exit-code` tells whether `apply` would change anything; `delete` removes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_apply_and_delete_round_trip() {
    let cp = ControlPlane::start(ControlPlaneOpts::embedded()).await;
    let ctl = cp.ctl();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    write_file(
        &file,
        docs(&[
            upstream("app", &[NOWHERE.parse().unwrap()]),
            route("app", "/app", "app"),
        ]),
    );
    let file_arg = file.display().to_string();
    let diff = ["diff", "-f", file_arg.as_str(), "--exit-code"];
    ctl.run(&diff).await.code(3);
    assert_eq!(ctl.names("routes").await, Vec::<String>::new());
    ctl.apply(&file, &[]).await.success();
    ctl.run(&diff).await.code(0);
    assert_eq!(ctl.names("routes").await, ["app"]);
    ctl.run(&["delete", "route", "app"]).await.success();
    ctl.run(&["delete", "upstream", "app"]).await.success();
    assert_eq!(ctl.names("routes").await, Vec::<String>::new());
    assert_eq!(ctl.names("upstreams").await, Vec::<String>::new());
    ctl.run(&["delete", "route", "app"]).await.code(1);
    ctl.run(&["get", "nonsense"]).await.code(2);
}

/// (c) Ten `gatewayctl apply` processes at once, spread over two control planes on one etcd,
/// each adding its own route: every one succeeds and every route is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_applies_lose_no_update() {
    let etcd = Etcd::start().await;
    let prefix = unique_prefix();
    let cp1 = ControlPlane::start(ControlPlaneOpts::etcd(etcd.endpoint(), prefix.clone())).await;
    let cp2 = ControlPlane::start(ControlPlaneOpts::etcd(etcd.endpoint(), prefix)).await;
    cp1.ctl()
        .apply_yaml(&upstream("shared", &[NOWHERE.parse().unwrap()]), &[])
        .await
        .success();

    let mut applies = JoinSet::new();
    for i in 0..10 {
        let ctl = if i % 2 == 0 { cp1.ctl() } else { cp2.ctl() };
        applies.spawn(async move {
            ctl.apply_yaml(&route(&format!("r{i}"), &format!("/c{i}"), "shared"), &[])
                .await
        });
    }
    let mut versions = BTreeSet::new();
    while let Some(output) = applies.join_next().await {
        let output = output.expect("the apply task");
        output.success();
        versions.insert(applied_version(&output).expect("applied version N"));
    }
    assert_eq!(
        versions.len(),
        10,
        "each apply is its own write: {versions:?}"
    );

    let expected: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    for cp in [&cp1, &cp2] {
        let ctl = cp.ctl();
        let expected = expected_sorted.clone();
        eventually("every route to be stored", || async {
            let names = ctl.names("routes").await;
            anyhow::ensure!(names == expected, "routes: {names:?}");
            Ok(())
        })
        .await;
    }
}

/// The shipped examples (used by the quickstart and docker-compose) are valid.
#[tokio::test]
async fn the_examples_are_valid() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for dir in [examples.clone(), examples.join("compose")] {
        let output = gatewayctl(&["validate", "-f", &dir.display().to_string()], None).await;
        output.success();
        assert!(!output.stdout.contains("valid: 0 "), "{output}");
    }
}

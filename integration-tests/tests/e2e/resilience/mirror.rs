//! RequestMirror: a copy of each request goes to a shadow upstream, and the client's answer
//! never depends on it: not when the shadow answers, hangs, or is gone.

use integration_tests::{eventually, get};

use super::{Gateway, Sample, backend::TestBackend};
use crate::support::{docs, upstream_with};

fn config(main: std::net::SocketAddr, shadow: std::net::SocketAddr, percent: u32) -> String {
    docs(&[
        upstream_with("main", &[main], ""),
        upstream_with("shadow", &[shadow], ""),
        format!(
            "kind: Route\nname: mirrored\nspec:\n  rules:\n    - matches: [{{ path: {{ type: PathPrefix, value: /m }} }}]\n      backendRefs: [{{ name: main }}]\n      filters:\n        - type: RequestMirror\n          requestMirror: {{ backendRef: {{ name: shadow }}, percent: {percent} }}\n"
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_gets_copies_and_the_client_never_waits_for_it() {
    let main = TestBackend::start("main").await;
    main.set_holds(false);
    let shadow = TestBackend::start("shadow").await;
    let gw = Gateway::start(&config(main.addr(), shadow.addr(), 100), 1).await;

    // Copies arrive, and the client's answers are the main backend's.
    for i in 0..20 {
        let response = get(&gw.dp().url(&format!("/m/{i}")), &[]).await.unwrap();
        assert!(Sample::of(&response).is("main"), "{}", response.text());
    }
    eventually("20 copies at the shadow", || {
        let seen = shadow.requests();
        async move {
            anyhow::ensure!(seen >= 20, "{seen} copies so far");
            Ok(())
        }
    })
    .await;
    eprintln!("copies at the shadow: {}", shadow.requests());

    // A shadow that hangs: its copies are held, the client's requests are answered meanwhile.
    for i in 0..5 {
        let response = get(&gw.dp().url(&format!("/m/{i}/slow")), &[])
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
    }
    shadow.wait_held(5).await;
    assert_eq!(main.held(), 0);
    assert_eq!(main.slow_arrivals(), 5);
    shadow.release();

    // A shadow that is gone: nothing changes for the client.
    drop(shadow);
    for i in 0..10 {
        let response = get(&gw.dp().url(&format!("/m/gone-{i}")), &[])
            .await
            .unwrap();
        assert!(Sample::of(&response).is("main"), "{}", response.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percent_mirrors_about_that_share() {
    let main = TestBackend::start("main-p").await;
    let shadow = TestBackend::start("shadow-p").await;
    let gw = Gateway::start(&config(main.addr(), shadow.addr(), 20), 1).await;
    for i in 0..400 {
        let response = get(&gw.dp().url(&format!("/m/{i}")), &[]).await.unwrap();
        assert_eq!(response.status, 200);
    }
    // Copies may still be on their way: wait until the count stops at a plausible share.
    eventually("a fifth of 400 copied", || {
        let seen = shadow.requests();
        async move {
            anyhow::ensure!((40..=130).contains(&seen), "{seen} copies");
            Ok(())
        }
    })
    .await;
    eprintln!("copies of 400 at 20 %: {}", shadow.requests());
    assert_eq!(main.requests(), 400);
}

//! TLS to endpoints named by DNS: once the name's addresses are its endpoints, connections
//! to them still send the name as SNI and verify the certificate against it, not the IP: a
//! certificate for `api.test` alone verifies, and one that lacks the name is refused.

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use super::{
    PATIENCE, install,
    tls::Ca,
    upstream_tls::{get, quoted, route, send, tls_backend},
};
use crate::{
    config::DnsSettings,
    server::serve_state_for_test,
    side::dns::nameserver::Nameserver,
    state::{Settings, State},
};

#[tokio::test]
async fn expanded_endpoints_are_verified_as_the_name() {
    let ca = Ca::new();
    // Not for 127.0.0.1: a handshake verified against the address would fail.
    let backend = tls_backend(ca.server(&["api.test"], &[b"http/1.1"], false)).await;
    let nameserver = Nameserver::start(&[Ipv4Addr::LOCALHOST]).await;
    let state = Arc::new(State::new(Settings {
        dns: DnsSettings {
            refresh: Some(Duration::from_millis(200)),
            server: Some(nameserver.addr),
        },
        ..Settings::default()
    }));
    let port = backend.addr.port();
    let ca_pem = quoted(&ca.pem());
    let yaml = route(&["named", "misnamed"])
        + &format!(
            "---\nkind: Upstream\nname: named\nspec:\n  endpoints: [{{ address: 'api.test:{port}' }}]\n  tls: {{ caCertificatePem: {ca_pem} }}\n"
        )
        + &format!(
            "---\nkind: Upstream\nname: misnamed\nspec:\n  endpoints: [{{ address: 'other.test:{port}' }}]\n  tls: {{ caCertificatePem: {ca_pem} }}\n"
        );
    install(&state, 1, &yaml);
    // Compiled before any answer: wait for both, then compile with them (the configuration
    // sources do this on their own).
    tokio::time::timeout(PATIENCE, async {
        while state
            .side()
            .dns()
            .report()
            .values()
            .filter(|r| !r.addresses.is_empty())
            .count()
            < 2
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("both names answered");
    install(&state, 2, &yaml);
    let table = state.table().unwrap();
    let endpoint = &table.upstream("named").unwrap().endpoints()[0];
    assert_eq!(endpoint.address(), backend.addr.to_string());

    let (addr, _stop) = serve_state_for_test(state.clone()).await;
    for h2 in [false, true] {
        let answer = send(addr, h2, get("/named/x")).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.text(), "http/1.1 /named/x client-cert:false");
        send(addr, h2, get("/misnamed/x"))
            .await
            .assert_unavailable();
    }
    let seen = backend.seen();
    assert_eq!(seen.requests, 2, "{seen:?}");
    assert!(
        seen.refused >= 1,
        "the misnamed handshakes were refused: {seen:?}"
    );
}

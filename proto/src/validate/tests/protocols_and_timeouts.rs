//! Protocol and TLS fields of an Upstream, and the timeouts of a rule.

use super::{check, errors};

fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

fn upstream(extra: &str) -> String {
    format!(
        "kind: Upstream\nname: users\nspec:\n  endpoints: [{{ address: 127.0.0.1:9001 }}]\n{extra}"
    )
}

#[test]
fn accepts_every_protocol_and_tls_with_a_ca() {
    for protocol in ["HTTP1", "H2C", "H2"] {
        check(&upstream(&format!("  protocol: {protocol}\n"))).unwrap();
    }
    let ca = ca_pem().replace('\n', "\\n");
    check(&upstream(&format!(
        "  protocol: H2\n  tls: {{ sni: users.internal, caCertificatePem: \"{ca}\" }}\n"
    )))
    .unwrap();
    check(&upstream("  tls: { insecureSkipVerify: true }\n")).unwrap();
}

#[test]
fn refuses_tls_on_cleartext_h2_and_bad_tls_fields() {
    assert_eq!(
        errors(&upstream("  protocol: H2C\n  tls: { sni: a.example }\n")),
        [
            "Upstream/users: spec.tls: H2C is HTTP/2 in cleartext: use protocol H2 for HTTP/2 over TLS"
        ]
    );
    let found = errors(&upstream(
        "  tls: { sni: 'not a name', caCertificatePem: 'garbage', insecureSkipVerify: true }\n",
    ));
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found[0].starts_with("Upstream/users: spec.tls.sni: "),
        "{found:?}"
    );
    assert!(found[1].contains("spec.tls.caCertificatePem: is never used with insecureSkipVerify"));
    assert!(found[2].contains("spec.tls.caCertificatePem: holds no certificate"));
}

#[test]
fn a_client_certificate_must_exist() {
    assert_eq!(
        errors(&upstream("  tls: { clientCertificate: gateway-client }\n")),
        ["Upstream/users: spec.tls.clientCertificate: no Certificate is named \"gateway-client\""]
    );
}

#[test]
fn rule_timeouts_are_durations_and_a_try_fits_in_the_request() {
    let route = |timeouts: &str| {
        format!(
            "{}---\nkind: Route\nname: r\nspec:\n  rules:\n    - backendRefs: [{{ name: users }}]\n      timeouts: {timeouts}\n",
            upstream("")
        )
    };
    check(&route("{ request: 10s, backendRequest: 2s }")).unwrap();
    check(&route("{ request: 1.5s }")).unwrap();
    assert_eq!(
        errors(&route("{ request: 1s, backendRequest: 2s }")),
        [
            "Route/r: spec.rules[0].timeouts.backendRequest: must be at most request (1s): a try cannot outlast the request"
        ]
    );
    let found = errors(&route("{ request: 0s }"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("Route/r: spec.rules[0].timeouts.request: "));
}

//! The request phases without sockets: a table, a connection, a head in; a decision out.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method};

use super::*;
use crate::{
    config::TrustedPeers,
    state::Settings,
    table::{Source, Table},
};

const CONFIG: &str = "\
kind: Upstream
name: app
spec: { endpoints: [{ address: 127.0.0.1:9 }] }
---
kind: Policy
name: office
spec: { ipAccess: { allow: [10.0.0.0/8] } }
---
kind: Route
name: r
spec:
  rules:
    - matches: [{ path: { type: PathPrefix, value: /open } }]
      backendRefs: [{ name: app }]
    - matches: [{ path: { type: PathPrefix, value: /office } }]
      policies: [office]
      backendRefs: [{ name: app }]
";

fn connection(peer: &str, trusted: &[&str]) -> Connection {
    let state = Arc::new(State::new(Settings {
        trusted_peers: TrustedPeers::parse(trusted.iter().copied()).unwrap(),
        ..Settings::default()
    }));
    let resources = gateway_proto::document::parse_documents(CONFIG).unwrap();
    state.install(Table::compile(1, &resources, Source::File, state.side()).unwrap());
    Connection::new(state, format!("{peer}:5000").parse().unwrap())
}

fn decide_path(conn: &Connection, path: &str, headers: &HeaderMap) -> Result<String, u16> {
    let head = Head {
        method: &Method::GET,
        host: Some("example.com"),
        path,
        query: None,
        headers,
        content_length: None,
    };
    match decide(conn, &head, None) {
        Decision::Forward(forward) => Ok(forward.path.into_owned()),
        Decision::Respond(local, _) => Err(local.status().as_u16()),
        Decision::Consult(_) => Err(0),
    }
}

#[test]
fn the_normalised_path_is_routed_and_forwarded() {
    let conn = connection("192.0.2.1", &[]);
    let none = HeaderMap::new();
    assert_eq!(
        decide_path(&conn, "/open/a/../b", &none),
        Ok("/open/b".into())
    );
    assert_eq!(
        decide_path(&conn, "/open//%61", &none),
        Ok("/open/a".into())
    );
    // Climbing out of /open lands under /office, whose policy applies.
    assert_eq!(decide_path(&conn, "/open/../office/x", &none), Err(403));
    assert_eq!(decide_path(&conn, "/open/%2e%2e/office", &none), Err(403));
    assert_eq!(decide_path(&conn, "/open/%2fx", &none), Err(400));
    assert_eq!(decide_path(&conn, "/nowhere", &none), Err(404));
}

#[test]
fn the_client_address_comes_from_trusted_peers_only() {
    let mut xff = HeaderMap::new();
    xff.insert("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
    // An untrusted peer cannot claim to forward for an office address.
    let outside = connection("192.0.2.1", &[]);
    assert_eq!(decide_path(&outside, "/office", &xff), Err(403));
    // A trusted balancer in front: the last untrusted hop of the chain is the client.
    let balancer = connection("192.0.2.1", &["192.0.2.0/24"]);
    assert_eq!(
        decide_path(&balancer, "/office", &xff),
        Ok("/office".into())
    );
    let mut spoofed = HeaderMap::new();
    spoofed.insert(
        "x-forwarded-for",
        HeaderValue::from_static("10.1.1.1, 203.0.113.9"),
    );
    assert_eq!(decide_path(&balancer, "/office", &spoofed), Err(403));
    let mut garbage = HeaderMap::new();
    garbage.insert("x-forwarded-for", HeaderValue::from_static("not-an-ip"));
    assert_eq!(decide_path(&balancer, "/office", &garbage), Err(403));
    // From inside the office, directly.
    let inside = connection("10.2.3.4", &[]);
    assert_eq!(
        decide_path(&inside, "/office", &HeaderMap::new()),
        Ok("/office".into())
    );
}

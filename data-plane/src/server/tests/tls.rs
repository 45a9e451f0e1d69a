//! TLS termination on a real listener with certificates made here (rcgen): SNI picks the
//! certificate (exact, wildcard, default, none), ALPN picks the protocol, a swap rotates the
//! certificate for new handshakes and leaves open connections alone.

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use super::{PATIENCE, install};
use crate::{server::serve_tls_for_test, state::State};

/// A CA, and leaf certificates it signs.
pub(super) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub(super) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    /// A leaf for `names`: (certificate PEM, key PEM, DER).
    pub(super) fn leaf(&self, names: &[&str]) -> (String, String, Vec<u8>) {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// The CA's own certificate, PEM.
    pub(super) fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        roots
    }

    /// A server configuration presenting a leaf for `names`, offering `alpn` (none: ALPN
    /// ignored), and requiring a client certificate this CA signed when `client_auth`.
    pub(super) fn server(&self, names: &[&str], alpn: &[&[u8]], client_auth: bool) -> ServerConfig {
        let (cert, key, _) = self.leaf(names);
        let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_auth {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    pub(super) fn client(&self, alpn: &[&[u8]]) -> TlsConnector {
        let roots = self.roots();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }
}

pub(super) fn certificate(
    name: &str,
    hostnames: &[&str],
    pem: &(String, String, Vec<u8>),
    default: bool,
) -> String {
    format!(
        "---\nkind: Certificate\nname: {name}\nspec:\n  hostnames: {hostnames:?}\n  default: {default}\n  certificatePem: {}\n  privateKeyPem: {}\n",
        serde_json::to_string(&pem.0).unwrap(),
        serde_json::to_string(&pem.1).unwrap(),
    )
}

async fn backend() -> SocketAddr {
    crate::test_backend::serve(|req: Request<hyper::body::Incoming>| async move {
        let proto = req
            .headers()
            .get("x-forwarded-proto")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        Response::new(Full::new(Bytes::from(proto)))
    })
    .await
}

fn upstream_and_route(backend: SocketAddr) -> String {
    format!(
        "kind: Upstream\nname: b\nspec: {{ endpoints: [{{ address: '{backend}' }}] }}\n---\nkind: Route\nname: r\nspec: {{ rules: [{{ backendRefs: [{{ name: b }}] }}] }}\n"
    )
}

/// A handshake with `sni`; the DER of the certificate the server presented.
pub(super) async fn handshake(
    addr: SocketAddr,
    connector: &TlsConnector,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tokio::time::timeout(PATIENCE, connector.connect(name, tcp))
        .await
        .expect("the handshake ends in time")
}

fn presented(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// One HTTP/1.1 request on `stream`, with `connection: close`; the response text.
async fn get_h1(mut stream: TlsStream<TcpStream>, host: &str) -> String {
    let request = format!("GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A close without close_notify would be an error; ours sends one.
    stream.read_to_end(&mut raw).await.unwrap();
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test]
async fn sni_chooses_exact_then_wildcard_then_default() {
    let ca = Ca::new();
    // The default also covers a.b.example.com (a SAN it is not listed for), so that a client
    // can show it was the one served there.
    let (exact, wild, fallback) = (
        ca.leaf(&["api.example.com"]),
        ca.leaf(&["*.example.com"]),
        ca.leaf(&["fallback.test", "other.test", "a.b.example.com"]),
    );
    let state = Arc::new(State::new(crate::state::Settings::default()));
    let yaml = upstream_and_route(backend().await)
        + &certificate("exact", &["api.example.com"], &exact, false)
        + &certificate("wild", &["*.example.com"], &wild, false)
        + &certificate("fallback", &["fallback.test"], &fallback, true);
    install(&state, 1, &yaml);
    let (_, addr, _stop) = serve_tls_for_test(state).await;
    let client = ca.client(&[b"http/1.1"]);
    let cases = [
        ("api.example.com", &exact),
        ("www.example.com", &wild),
        ("fallback.test", &fallback),
        // Two labels under example.com: not the wildcard's, so the default.
        ("a.b.example.com", &fallback),
    ];
    for (sni, want) in cases {
        let stream = handshake(addr, &client, sni)
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(presented(&stream), want.2, "{sni}");
    }
    let other = handshake(addr, &client, "other.test").await.unwrap();
    assert_eq!(presented(&other), fallback.2);
    let text = get_h1(other, "other.test").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with("https"),
        "the backend sees X-Forwarded-Proto https: {text}"
    );
}

#[tokio::test]
async fn no_certificate_for_the_name_fails_the_handshake() {
    let ca = Ca::new();
    let only = ca.leaf(&["only.test"]);
    let state = Arc::new(State::new(crate::state::Settings::default()));
    install(
        &state,
        1,
        &(upstream_and_route(backend().await) + &certificate("only", &["only.test"], &only, false)),
    );
    let (_, addr, _stop) = serve_tls_for_test(state).await;
    let client = ca.client(&[]);
    assert!(handshake(addr, &client, "elsewhere.test").await.is_err());
    assert!(handshake(addr, &client, "only.test").await.is_ok());
}

#[tokio::test]
async fn alpn_h2_and_http1_are_both_served() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["gw.test"]);
    let state = Arc::new(State::new(crate::state::Settings::default()));
    install(
        &state,
        1,
        &(upstream_and_route(backend().await) + &certificate("gw", &["gw.test"], &leaf, true)),
    );
    let (_, addr, _stop) = serve_tls_for_test(state).await;

    let h1 = handshake(addr, &ca.client(&[b"http/1.1"]), "gw.test")
        .await
        .unwrap();
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let text = get_h1(h1, "gw.test").await;
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("https"),
        "{text}"
    );

    let h2 = handshake(addr, &ca.client(&[b"h2", b"http/1.1"]), "gw.test")
        .await
        .unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(h2))
            .await
            .unwrap();
    tokio::spawn(connection);
    for _ in 0..3 {
        let request = Request::get("https://gw.test/")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"https");
    }
}

#[tokio::test]
async fn a_swap_rotates_the_certificate_for_new_handshakes_only() {
    let ca = Ca::new();
    let (old, new) = (ca.leaf(&["gw.test"]), ca.leaf(&["gw.test"]));
    let state = Arc::new(State::new(crate::state::Settings::default()));
    let route = upstream_and_route(backend().await);
    install(
        &state,
        1,
        &(route.clone() + &certificate("gw", &["gw.test"], &old, false)),
    );
    let (_, addr, _stop) = serve_tls_for_test(state.clone()).await;
    let client = ca.client(&[b"h2"]);

    let before = handshake(addr, &client, "gw.test").await.unwrap();
    assert_eq!(presented(&before), old.2);
    let (mut open, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(before))
            .await
            .unwrap();
    tokio::spawn(connection);

    install(
        &state,
        2,
        &(route + &certificate("gw", &["gw.test"], &new, false)),
    );
    // A fresh client: a resumed session is not shown a certificate again.
    let after = handshake(addr, &ca.client(&[b"h2"]), "gw.test")
        .await
        .unwrap();
    assert_eq!(
        presented(&after),
        new.2,
        "a new handshake gets the new certificate"
    );
    // The connection opened before the swap still serves requests.
    let request = Request::get("https://gw.test/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = open.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn sessions_resume() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["gw.test"]);
    let state = Arc::new(State::new(crate::state::Settings::default()));
    install(
        &state,
        1,
        &(upstream_and_route(backend().await) + &certificate("gw", &["gw.test"], &leaf, false)),
    );
    let (_, addr, _stop) = serve_tls_for_test(state).await;
    let client = ca.client(&[b"http/1.1"]);
    let first = handshake(addr, &client, "gw.test").await.unwrap();
    assert_eq!(
        first.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    // The ticket arrives after the handshake: reading the response takes it in.
    let text = get_h1(first, "gw.test").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let second = handshake(addr, &client, "gw.test").await.unwrap();
    assert_eq!(
        second.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
}

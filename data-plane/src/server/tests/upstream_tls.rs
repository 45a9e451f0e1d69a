//! TLS to upstreams on real listeners, with certificates made here (rcgen) and real hyper
//! backends behind a rustls acceptor: HTTP/1.1 over TLS verified against the upstream's CA
//! (by SNI and by IP), a certificate that does not verify refused before any request is sent,
//! a client certificate for backends that require one, and `insecureSkipVerify`. Every case
//! goes through both front ends (HTTP/1.1 and h2c).

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::{
    body::{Body, Incoming},
    server::conn::{http1, http2},
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_rustls::TlsAcceptor;

use super::{
    PATIENCE, install,
    tls::{Ca, certificate},
};
use crate::{pipeline::BoxError, server::serve_state_for_test, state::State};

/// The name in the backends' certificates.
const NAME: &str = "upstream.test";

// === the client side ===

/// A response read to its end.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Bytes,
    pub(super) trailers: Option<HeaderMap>,
}

impl Answer {
    /// The body as text.
    pub(super) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    /// A 502 with the JSON error code `upstream_unavailable`.
    pub(super) fn assert_unavailable(&self) {
        assert_eq!(self.status, 502, "{self:?}");
        let json: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        assert_eq!(json["error"]["code"], "upstream_unavailable", "{json}");
    }
}

/// A GET for `path` on the gateway's test host.
pub(super) fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://gw.test{path}"))
        .header("host", "gw.test")
        .body(Empty::new())
        .unwrap()
}

/// Reads `response` whole, trailers included.
pub(super) async fn read<B>(response: Response<B>) -> Answer
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    Answer {
        status: parts.status.as_u16(),
        trailers: collected.trailers().cloned(),
        body: collected.to_bytes(),
    }
}

/// An h2c (prior knowledge) client connection to the gateway.
pub(super) async fn h2c_client<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// `request` on a new client connection to the gateway, over HTTP/1.1 or h2c; the answer,
/// within the patience.
pub(super) async fn send<B>(addr: SocketAddr, h2: bool, request: Request<B>) -> Answer
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let exchange = async {
        let response = if h2 {
            h2c_client(addr).await.send_request(request).await.unwrap()
        } else {
            let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        };
        read(response).await
    };
    tokio::time::timeout(PATIENCE, exchange)
        .await
        .expect("the gateway answers in time")
}

/// A gateway serving a configuration on a plain listener (HTTP/1.1 and h2c).
#[derive(Debug)]
pub(super) struct Gateway {
    pub(super) addr: SocketAddr,
    pub(super) state: Arc<State>,
    _stop: watch::Sender<bool>,
}

impl Gateway {
    pub(super) async fn serve(yaml: &str) -> Self {
        let state = Arc::new(State::new(crate::state::Settings::default()));
        install(&state, 1, yaml);
        let (addr, stop) = serve_state_for_test(state.clone()).await;
        Self {
            addr,
            state,
            _stop: stop,
        }
    }
}

// === the configuration ===

/// An Upstream of one endpoint; `extra` is more of its spec (indented by two spaces).
pub(super) fn upstream(name: &str, backend: SocketAddr, protocol: &str, extra: &str) -> String {
    format!(
        "---\nkind: Upstream\nname: {name}\nspec:\n  endpoints: [{{ address: '{backend}' }}]\n  protocol: {protocol}\n{extra}"
    )
}

/// An upstream's `tls`, from its fields (values already in YAML).
pub(super) fn tls(fields: &[(&str, &str)]) -> String {
    let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("  tls: {{ {} }}\n", fields.join(", "))
}

/// A string as a YAML (JSON) scalar.
pub(super) fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// A Route sending each path prefix to the upstream of the same name (`/a` to `a`).
pub(super) fn route(upstreams: &[&str]) -> String {
    let mut yaml = "---\nkind: Route\nname: r\nspec:\n  rules:\n".to_owned();
    for name in upstreams {
        yaml.push_str(&format!(
            "    - matches: [{{ path: {{ type: PathPrefix, value: /{name} }} }}]\n      backendRefs: [{{ name: {name} }}]\n"
        ));
    }
    yaml
}

// === the backend ===

/// What a backend has seen so far.
#[derive(Clone, Debug, Default)]
pub(super) struct Seen {
    /// TCP connections accepted.
    pub(super) connections: usize,
    /// TLS handshakes completed.
    pub(super) handshakes: usize,
    /// TLS handshakes that failed.
    pub(super) refused: usize,
    /// Completed handshakes in which the client presented a certificate.
    pub(super) client_certificates: usize,
    /// Requests received.
    pub(super) requests: usize,
}

/// A backend on 127.0.0.1:0 and what it has seen.
#[derive(Debug)]
pub(super) struct Backend {
    pub(super) addr: SocketAddr,
    pub(super) seen: Arc<watch::Sender<Seen>>,
}

impl Backend {
    pub(super) fn seen(&self) -> Seen {
        self.seen.borrow().clone()
    }

    /// Waits (within the patience) until what the backend has seen satisfies `until`.
    pub(super) async fn wait_for(&self, what: &str, until: impl FnMut(&Seen) -> bool) -> Seen {
        let mut seen = self.seen.subscribe();
        tokio::time::timeout(PATIENCE, seen.wait_for(until))
            .await
            .unwrap_or_else(|_| panic!("{what}: the backend saw only {:?}", self.seen()))
            .unwrap()
            .clone()
    }
}

/// A TLS backend with `config`: HTTP/2 when ALPN agreed on h2, HTTP/1.1 otherwise. Each
/// request is answered with `<protocol> <path> client-cert:<whether one was presented>`.
pub(super) async fn tls_backend(config: ServerConfig) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(watch::Sender::new(Seen::default()));
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let recorder = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            recorder.send_modify(|s| s.connections += 1);
            let (acceptor, seen) = (acceptor.clone(), recorder.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    seen.send_modify(|s| s.refused += 1);
                    return;
                };
                let session = stream.get_ref().1;
                let client_cert = session.peer_certificates().is_some_and(|c| !c.is_empty());
                let h2 = session.alpn_protocol() == Some(b"h2");
                seen.send_modify(|s| {
                    s.handshakes += 1;
                    s.client_certificates += usize::from(client_cert);
                });
                let service = service_fn(move |request: Request<Incoming>| {
                    seen.send_modify(|s| s.requests += 1);
                    let protocol = if h2 { "h2" } else { "http/1.1" };
                    let body = format!(
                        "{protocol} {} client-cert:{client_cert}",
                        request.uri().path()
                    );
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let io = TokioIo::new(stream);
                let _ = if h2 {
                    http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await
                } else {
                    http1::Builder::new().serve_connection(io, service).await
                };
            });
        }
    });
    Backend { addr, seen }
}

/// Each path through both front ends must fail with a 502 `upstream_unavailable`, after a
/// refused handshake at `backend` each time, and the backend must never get a request.
async fn assert_refused(gw: SocketAddr, backend: &Backend, paths: &[&str]) {
    for h2 in [false, true] {
        for path in paths {
            let before = backend.seen().refused;
            send(gw, h2, get(path)).await.assert_unavailable();
            backend
                .wait_for(&format!("a refused handshake for {path}"), |s| {
                    s.refused > before
                })
                .await;
        }
    }
    let seen = backend.seen();
    assert_eq!(
        (seen.handshakes, seen.requests),
        (0, 0),
        "nothing reached the backend: {seen:?}"
    );
}

// === the tests ===

#[tokio::test]
async fn http1_over_tls_verified_against_the_upstreams_ca() {
    let ca = Ca::new();
    let backend = tls_backend(ca.server(&[NAME, "127.0.0.1"], &[b"http/1.1"], false)).await;
    let ca_pem = quoted(&ca.pem());
    let yaml = route(&["byname", "byip"])
        // SNI and verification by name.
        + &upstream(
            "byname",
            backend.addr,
            "HTTP1",
            &tls(&[("sni", NAME), ("caCertificatePem", &ca_pem)]),
        )
        // No SNI: verified against the endpoint's IP address.
        + &upstream(
            "byip",
            backend.addr,
            "HTTP1",
            &tls(&[("caCertificatePem", &ca_pem)]),
        );
    let gateway = Gateway::serve(&yaml).await;
    let gw = gateway.addr;
    for h2 in [false, true] {
        for path in ["/byname/x", "/byip/y"] {
            let answer = send(gw, h2, get(path)).await;
            assert_eq!(answer.status, 200, "{path} (h2c: {h2}): {answer:?}");
            // The backend answered over HTTP/1.1 inside TLS (ALPN http/1.1).
            assert_eq!(answer.text(), format!("http/1.1 {path} client-cert:false"));
        }
    }
    let seen = backend.seen();
    assert_eq!(seen.requests, 4, "{seen:?}");
    assert!(seen.handshakes >= 2, "one pool per upstream: {seen:?}");
}

#[tokio::test]
async fn a_certificate_that_does_not_verify_is_502_and_nothing_is_sent() {
    let (ca, other) = (Ca::new(), Ca::new());
    let foreign = tls_backend(other.server(&[NAME], &[b"http/1.1"], false)).await;
    let misnamed = tls_backend(ca.server(&[NAME], &[b"http/1.1"], false)).await;
    let ca_pem = quoted(&ca.pem());
    let yaml = route(&["foreign", "misnamed"])
        // Right name, signed by a CA the upstream does not trust.
        + &upstream(
            "foreign",
            foreign.addr,
            "HTTP1",
            &tls(&[("sni", NAME), ("caCertificatePem", &ca_pem)]),
        )
        // Trusted CA, but not for the name asked for.
        + &upstream(
            "misnamed",
            misnamed.addr,
            "HTTP1",
            &tls(&[("sni", "wrong.test"), ("caCertificatePem", &ca_pem)]),
        );
    let gateway = Gateway::serve(&yaml).await;
    let gw = gateway.addr;
    assert_refused(gw, &foreign, &["/foreign/x"]).await;
    assert_refused(gw, &misnamed, &["/misnamed/x"]).await;
}

#[tokio::test]
async fn a_client_certificate_for_backends_that_require_one() {
    let ca = Ca::new();
    let backend = tls_backend(ca.server(&[NAME], &[b"http/1.1"], true)).await;
    let client = ca.leaf(&["client.test"]);
    let ca_pem = quoted(&ca.pem());
    let verified = [("sni", NAME), ("caCertificatePem", ca_pem.as_str())];
    let mut identified = verified.to_vec();
    identified.push(("clientCertificate", "client"));
    let yaml = route(&["anonymous", "identified"])
        + &upstream("anonymous", backend.addr, "HTTP1", &tls(&verified))
        + &upstream("identified", backend.addr, "HTTP1", &tls(&identified))
        + &certificate("client", &["client.test"], &client, false);
    let gateway = Gateway::serve(&yaml).await;
    let gw = gateway.addr;

    // Without one, the backend ends the handshake (after the client's side of it, in TLS 1.3).
    for h2 in [false, true] {
        let before = backend.seen().refused;
        send(gw, h2, get("/anonymous")).await.assert_unavailable();
        backend
            .wait_for("the anonymous handshake refused", |s| s.refused > before)
            .await;
    }
    assert_eq!(backend.seen().requests, 0, "{:?}", backend.seen());

    for h2 in [false, true] {
        let answer = send(gw, h2, get("/identified")).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.text(), "http/1.1 /identified client-cert:true");
    }
    let seen = backend.seen();
    assert!(seen.client_certificates >= 1, "{seen:?}");
    assert_eq!(seen.client_certificates, seen.handshakes, "{seen:?}");
}

#[tokio::test]
async fn insecure_skip_verify_accepts_an_untrusted_certificate() {
    let (ca, stranger) = (Ca::new(), Ca::new());
    // Signed by a CA nobody trusts, for a name nobody asks for.
    let backend = tls_backend(stranger.server(&["elsewhere.test"], &[b"http/1.1"], false)).await;
    let yaml = route(&["insecure", "strict"])
        + &upstream(
            "insecure",
            backend.addr,
            "HTTP1",
            &tls(&[("insecureSkipVerify", "true")]),
        )
        // The same backend verified: refused, so the certificate really does not verify.
        + &upstream(
            "strict",
            backend.addr,
            "HTTP1",
            &tls(&[("sni", "elsewhere.test"), ("caCertificatePem", &quoted(&ca.pem()))]),
        );
    let gateway = Gateway::serve(&yaml).await;
    let gw = gateway.addr;
    for h2 in [false, true] {
        let answer = send(gw, h2, get("/insecure")).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.text(), "http/1.1 /insecure client-cert:false");
    }
    for h2 in [false, true] {
        let before = backend.seen().refused;
        send(gw, h2, get("/strict")).await.assert_unavailable();
        backend
            .wait_for("the strict handshake refused", |s| s.refused > before)
            .await;
    }
    assert_eq!(backend.seen().requests, 2, "{:?}", backend.seen());
}

//! gRPC through the real data plane binary (standalone) to a real tonic service
//! ([`GrpcBackend`], `proto/echo.proto`), with tonic clients over h2c (prior knowledge) and
//! over TLS (ALPN h2): every kind of call, statuses with details and trailing metadata,
//! `grpc-timeout` enforced by the gateway, the gateway's own errors as gRPC statuses; to an
//! `H2C` upstream and to an `H2` upstream over TLS verified with `tls.caCertificatePem`.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use integration_tests::{
    DataPlane, DataPlaneOpts, GrpcBackend, eventually, free_port,
    grpc_backend::{
        BACKEND_HEADER, TRAILER,
        echo::{EchoReply, EchoRequest, Failure, echo_client::EchoClient},
    },
    patience, write_file,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
use tempfile::TempDir;
use tokio::{net::TcpStream, sync::mpsc};
use tokio_rustls::TlsConnector;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Code, Request, Status,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use crate::support::{docs, upstream_with};

/// The name the data plane's certificate and the TLS backend's are issued for.
const HOST: &str = "localhost";

/// How the client reaches the data plane.
#[derive(Clone, Copy, Debug)]
enum Front {
    /// The plain listener, HTTP/2 with prior knowledge.
    H2c,
    /// `--tls-listen`, ALPN h2.
    Tls,
}

const FRONTS: [Front; 2] = [Front::H2c, Front::Tls];

/// Which upstream a call goes to: the routes tell them apart by the `x-upstream` header.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// `protocol: H2C` to the h2c backend (no header).
    H2c,
    /// `protocol: H2` with `tls` to the TLS backend (`x-upstream: h2`).
    H2,
    /// `protocol: H2C` to a closed port (`x-upstream: dead`).
    Dead,
}

const UPSTREAMS: [Via; 2] = [Via::H2c, Via::H2];

/// A standalone data plane with both listeners, in front of two gRPC backends.
struct Gateway {
    dp: DataPlane,
    h2c: GrpcBackend,
    tls: GrpcBackend,
    ca_pem: String,
    ca_der: Vec<u8>,
    _dir: TempDir,
}

// === impl Gateway ===

impl Gateway {
    async fn start() -> Gateway {
        let ca = ca();
        let (backend_cert, backend_key) = leaf(&ca);
        let (gateway_cert, gateway_key) = leaf(&ca);
        let h2c = GrpcBackend::start("grpc-h2c").await;
        let tls = GrpcBackend::start_tls("grpc-h2", &backend_cert, &backend_key).await;
        let dead: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let json = |s: &str| serde_json::to_string(s).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.yaml");
        write_file(
            &file,
            docs(&[
                upstream_with("echo-h2c", &[h2c.addr()], "  protocol: H2C\n"),
                upstream_with(
                    "echo-h2",
                    &[tls.addr()],
                    &format!(
                        "  protocol: H2\n  tls:\n    sni: {HOST}\n    caCertificatePem: {}\n",
                        json(&ca.pem())
                    ),
                ),
                upstream_with("dead", &[dead], "  protocol: H2C\n"),
                format!(
                    "kind: Route\nname: echo\nspec:\n  rules:\n{}{}{}",
                    rule(None, "echo-h2c"),
                    rule(Some("h2"), "echo-h2"),
                    rule(Some("dead"), "dead"),
                ),
                format!(
                    "kind: Certificate\nname: gw\nspec:\n  hostnames: [{HOST}]\n  default: true\n  certificatePem: {}\n  privateKeyPem: {}\n",
                    json(&gateway_cert),
                    json(&gateway_key)
                ),
            ]),
        );
        let dp = DataPlane::start(DataPlaneOpts::standalone(&file).tls()).await;
        dp.wait_ready().await;
        Gateway {
            dp,
            h2c,
            tls,
            ca_pem: ca.pem(),
            ca_der: ca.der().to_vec(),
            _dir: dir,
        }
    }

    /// A tonic channel to the data plane.
    async fn channel(&self, front: Front) -> Channel {
        let endpoint = match front {
            Front::H2c => Endpoint::from_shared(format!("http://{}", self.dp.http_addr())).unwrap(),
            // The address, not `localhost`, which may resolve to ::1 first; the name is the
            // TLS one, sent as SNI and verified.
            Front::Tls => Endpoint::from_shared(format!("https://{}", self.tls_addr()))
                .unwrap()
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(&self.ca_pem))
                        .domain_name(HOST),
                )
                .unwrap(),
        };
        endpoint
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to the data plane over {front:?}: {e:?}"))
    }

    async fn client(&self, front: Front) -> EchoClient<Channel> {
        EchoClient::new(self.channel(front).await)
    }

    /// A tonic client on one HTTP/2 connection without tonic's transport (see [`Direct`]).
    async fn direct_client(&self, front: Front) -> EchoClient<Direct> {
        let tcp = TcpStream::connect(match front {
            Front::H2c => self.dp.http_addr(),
            Front::Tls => self.tls_addr(),
        })
        .await
        .unwrap();
        tcp.set_nodelay(true).unwrap();
        let (origin, direct) = match front {
            Front::H2c => ("http://gw.test", Direct::handshake(tcp).await),
            Front::Tls => {
                let mut roots = RootCertStore::empty();
                roots.add(self.ca_der.clone().into()).unwrap();
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let mut config = ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"h2".to_vec()];
                let stream = TlsConnector::from(Arc::new(config))
                    .connect(ServerName::try_from(HOST).unwrap(), tcp)
                    .await
                    .unwrap();
                assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                ("https://localhost", Direct::handshake(stream).await)
            }
        };
        EchoClient::with_origin(direct, origin.parse().unwrap())
    }

    fn tls_addr(&self) -> SocketAddr {
        self.dp.tls_addr().expect("the data plane's TLS listener")
    }

    /// The backend behind `via`.
    fn backend(&self, via: Via) -> &GrpcBackend {
        match via {
            Via::H2c => &self.h2c,
            Via::H2 => &self.tls,
            Via::Dead => panic!("no backend behind the dead upstream"),
        }
    }
}

/// A rule of the `echo` route: the Echo service's methods, to `upstream`, for calls whose
/// `x-upstream` header is `header` (more header matches rank first).
///
/// The backends are not told the deadline (`grpc-timeout` is removed): tonic's server would
/// end a late call itself (as CANCELLED), racing the gateway; what ends it here is the gateway.
fn rule(header: Option<&str>, upstream: &str) -> String {
    let headers = header.map_or(String::new(), |value| {
        format!("          headers: [{{ name: x-upstream, value: {value} }}]\n")
    });
    format!(
        "    - matches:\n        - path: {{ type: PathPrefix, value: /echo.v1.Echo/ }}\n{headers}      filters:\n        - type: RequestHeaderModifier\n          requestHeaderModifier: {{ remove: [grpc-timeout] }}\n      backendRefs:\n        - name: {upstream}\n"
    )
}

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for [`HOST`] issued by `ca`, and its key, in PEM.
fn leaf(ca: &CertifiedIssuer<'static, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![HOST.to_owned()])
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A tonic client's transport on one HTTP/2 connection of hyper's. Unlike a [`Channel`], it
/// does not end a call at its own `grpc-timeout` (tonic's channel cancels a call whose
/// response head is late itself, as CANCELLED), so a call that ends with DEADLINE_EXCEEDED
/// was ended by the gateway.
#[derive(Clone, Debug)]
struct Direct(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Incoming>, hyper::Error>> + Send>>;

// === impl Direct ===

impl Direct {
    async fn handshake<Io>(io: Io) -> Direct
    where
        Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .unwrap();
        tokio::spawn(connection);
        Direct(send)
    }
}

impl tonic::client::GrpcService<tonic::body::Body> for Direct {
    type ResponseBody = Incoming;
    type Error = hyper::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> ResponseFuture {
        Box::pin(self.0.send_request(request))
    }
}

/// A request routed `via` an upstream.
fn routed<T>(message: T, via: Via) -> Request<T> {
    let mut request = Request::new(message);
    let header = match via {
        Via::H2c => None,
        Via::H2 => Some("h2"),
        Via::Dead => Some("dead"),
    };
    if let Some(value) = header {
        request
            .metadata_mut()
            .insert("x-upstream", value.parse().unwrap());
    }
    request
}

fn echo(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
        ..Default::default()
    }
}

/// Runs `scenario` within the test patience, so that a stuck stream fails instead of hanging.
async fn within<F: Future<Output = ()>>(what: &str, scenario: F) {
    if tokio::time::timeout(patience(), scenario).await.is_err() {
        panic!("{what}: not done within {:?}", patience());
    }
}

/// (1, 5) Unary, server streaming, client streaming and interleaved bidirectional streaming,
/// over both front ends, to the H2C upstream and to the H2 (TLS) one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_call_over_h2c_and_tls_to_h2c_and_h2_upstreams() {
    let gw = Gateway::start().await;
    for front in FRONTS {
        let mut client = gw.client(front).await;
        for via in UPSTREAMS {
            let what = format!("{front:?} front, {via:?} upstream");
            let backend = gw.backend(via).name().to_owned();
            within(&what, async {
                // Unary, with the backend's response metadata and the gateway's request id.
                let response = client
                    .unary(routed(echo("hello"), via))
                    .await
                    .unwrap_or_else(|s| panic!("{what}: unary: {s:?}"));
                let metadata = response.metadata().clone();
                let reply = response.into_inner();
                assert_eq!(
                    (reply.message.as_str(), reply.backend.as_str()),
                    ("hello", &*backend),
                    "{what}"
                );
                assert_eq!(
                    metadata.get(BACKEND_HEADER).unwrap(),
                    backend.as_str(),
                    "{what}"
                );
                assert!(
                    metadata.get("x-request-id").is_some(),
                    "{what}: {metadata:?}"
                );

                // Server streaming: every message, in order, then OK.
                let request = EchoRequest {
                    count: 5,
                    ..echo("part")
                };
                let mut stream = client
                    .server_stream(routed(request, via))
                    .await
                    .unwrap_or_else(|s| panic!("{what}: server stream: {s:?}"))
                    .into_inner();
                let mut got = Vec::new();
                while let Some(reply) = stream.message().await.unwrap() {
                    got.push(reply.message);
                }
                let expected: Vec<String> = (0..5).map(|i| format!("part-{i}")).collect();
                assert_eq!(got, expected, "{what}");

                // Client streaming: the backend answers once the stream has ended.
                let requests = tokio_stream::iter(["a", "b", "c"].map(echo));
                let reply = client
                    .client_stream(routed(requests, via))
                    .await
                    .unwrap_or_else(|s| panic!("{what}: client stream: {s:?}"))
                    .into_inner();
                assert_eq!(reply.message, "a,b,c", "{what}");

                // Bidirectional, interleaved: each reply arrives while the request stream is
                // still open, before the next request is sent.
                let (tx, rx) = mpsc::channel(1);
                let mut replies = client
                    .bidi(routed(ReceiverStream::new(rx), via))
                    .await
                    .unwrap_or_else(|s| panic!("{what}: bidi: {s:?}"))
                    .into_inner();
                for i in 0..5 {
                    tx.send(echo(&format!("ping-{i}"))).await.unwrap();
                    let reply = replies
                        .message()
                        .await
                        .unwrap_or_else(|s| panic!("{what}: bidi reply {i}: {s:?}"))
                        .unwrap_or_else(|| panic!("{what}: bidi ended before reply {i}"));
                    assert_eq!(reply.message, format!("ping-{i}"), "{what}");
                    assert_eq!(reply.backend, backend, "{what}");
                }
                drop(tx);
                assert!(replies.message().await.unwrap().is_none(), "{what}");
            })
            .await;
        }
    }
}

/// Checks that `status` is the one `failure` asked the backend for.
fn assert_failure(status: &Status, failure: &Failure, what: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    assert_eq!(status.message(), failure.message, "{what}: {status:?}");
    assert_eq!(status.details(), &failure.details[..], "{what}: {status:?}");
    assert_eq!(
        status.metadata().get(TRAILER).and_then(|v| v.to_str().ok()),
        Some(failure.trailer.as_str()),
        "{what}: {status:?}"
    );
}

/// (2) A backend's status reaches the client intact, code, message (percent-encoded on the
/// wire), details (`grpc-status-details-bin`) and custom metadata: in a trailers-only
/// response (a unary call that fails) and in trailers after messages (a stream that fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_with_details_and_trailing_metadata_are_relayed() {
    let gw = Gateway::start().await;
    let failure = Failure {
        code: Code::InvalidArgument as i32,
        message: "bad input: 100% wrong, ünïcode".to_owned(),
        details: vec![0, 1, 2, 0xfe, 0xff, b'd', b'e', b't'],
        trailer: "trailing-value".to_owned(),
    };
    for front in FRONTS {
        let mut client = gw.client(front).await;
        for via in UPSTREAMS {
            let what = format!("{front:?} front, {via:?} upstream");
            within(&what, async {
                let request = EchoRequest {
                    fail: Some(failure.clone()),
                    ..echo("unary")
                };
                let status = client
                    .unary(routed(request, via))
                    .await
                    .expect_err("the backend fails the call");
                assert_failure(&status, &failure, &format!("{what}, unary"));

                let request = EchoRequest {
                    count: 2,
                    fail: Some(failure.clone()),
                    ..echo("part")
                };
                let mut stream = client
                    .server_stream(routed(request, via))
                    .await
                    .unwrap_or_else(|s| panic!("{what}: server stream: {s:?}"))
                    .into_inner();
                for i in 0..2 {
                    let reply = stream.message().await.unwrap().unwrap();
                    assert_eq!(reply.message, format!("part-{i}"), "{what}");
                }
                let status = stream.message().await.expect_err("the stream ends failed");
                assert_failure(&status, &failure, &format!("{what}, server stream"));
            })
            .await;
        }
    }
}

/// (3) `grpc-timeout` bounds the wait for the response head and the whole response, at the
/// gateway: a unary call the backend answers in 5 s, and a stream that goes on past the
/// deadline, both end with DEADLINE_EXCEEDED; the gateway resets the upstream stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_ends_calls_at_their_grpc_timeout() {
    let gw = Gateway::start().await;
    for front in FRONTS {
        // Tonic's channel would give up at the deadline itself (as CANCELLED): this client
        // leaves it to the gateway.
        let mut direct = gw.direct_client(front).await;
        let mut client = gw.client(front).await;
        for via in UPSTREAMS {
            let what = format!("{front:?} front, {via:?} upstream");
            within(&what, async {
                let mut request = routed(
                    EchoRequest {
                        delay_ms: 5_000,
                        ..echo("late")
                    },
                    via,
                );
                request.set_timeout(Duration::from_millis(200));
                let started = Instant::now();
                let status = direct
                    .unary(request)
                    .await
                    .expect_err("a call past its deadline fails");
                let took = started.elapsed();
                assert_eq!(status.code(), Code::DeadlineExceeded, "{what}: {status:?}");
                assert_eq!(
                    status.message(),
                    "the upstream service did not answer in time",
                    "{what}"
                );
                assert!(took < Duration::from_secs(4), "{what}: took {took:?}");

                // The head comes at once, the messages keep coming: the deadline ends the
                // response, with the gateway's trailers.
                let cancelled = gw.backend(via).cancelled();
                let mut request = routed(
                    EchoRequest {
                        count: 100_000,
                        delay_ms: 20,
                        ..echo("tick")
                    },
                    via,
                );
                request.set_timeout(Duration::from_millis(500));
                let started = Instant::now();
                let mut stream = client
                    .server_stream(request)
                    .await
                    .unwrap_or_else(|s| panic!("{what}: server stream: {s:?}"))
                    .into_inner();
                let mut received = 0;
                let status = loop {
                    match stream.message().await {
                        Ok(Some(_)) => received += 1,
                        Ok(None) => panic!("{what}: the stream ended OK after {received}"),
                        Err(status) => break status,
                    }
                };
                let took = started.elapsed();
                assert_eq!(status.code(), Code::DeadlineExceeded, "{what}: {status:?}");
                assert_eq!(
                    status.message(),
                    "deadline exceeded at the gateway",
                    "{what}"
                );
                assert!(received > 0, "{what}: no message before the deadline");
                assert!(took < Duration::from_secs(4), "{what}: took {took:?}");
                let backend = gw.backend(via);
                eventually(
                    &format!("{what}: the backend's stream to be reset"),
                    || async {
                        anyhow::ensure!(backend.cancelled() > cancelled, "still streaming");
                        Ok(())
                    },
                )
                .await;
            })
            .await;
        }
    }
}

/// (4) The gateway's own errors are gRPC statuses: a method no route matches is
/// UNIMPLEMENTED, an upstream that refuses connections is UNAVAILABLE, with the gateway's
/// fixed messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_are_grpc_statuses() {
    let gw = Gateway::start().await;
    for front in FRONTS {
        let channel = gw.channel(front).await;
        let what = format!("{front:?} front");
        within(&what, async {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.unwrap();
            let status = grpc
                .unary::<EchoRequest, EchoReply, _>(
                    Request::new(echo("lost")),
                    PathAndQuery::from_static("/echo.v1.Missing/Unary"),
                    tonic_prost::ProstCodec::default(),
                )
                .await
                .expect_err("no route matches");
            assert_eq!(status.code(), Code::Unimplemented, "{what}: {status:?}");
            assert_eq!(status.message(), "no route matches the request", "{what}");

            let mut client = EchoClient::new(channel);
            let status = client
                .unary(routed(echo("dead"), Via::Dead))
                .await
                .expect_err("the upstream is down");
            assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}");
            assert_eq!(
                status.message(),
                "the upstream service is unavailable",
                "{what}"
            );

            let (tx, rx) = mpsc::channel(1);
            tx.send(echo("dead")).await.unwrap();
            let status = client
                .bidi(routed(ReceiverStream::new(rx), Via::Dead))
                .await
                .expect_err("the upstream is down");
            assert_eq!(status.code(), Code::Unavailable, "{what}, bidi: {status:?}");
        })
        .await;
    }
}

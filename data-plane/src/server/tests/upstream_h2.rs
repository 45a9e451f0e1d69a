//! HTTP/2 upstreams on real listeners, with real hyper HTTP/2 backends: many requests share
//! one connection, a connection at the peer's stream limit makes the pool open another, H2
//! needs TLS with ALPN h2, response trailers reach h2c clients, request bodies stream intact
//! under the backend's flow control, and a GOAWAY lets the requests in flight finish while the
//! next one goes to a new connection (even while the old one is still open). Both front ends
//! (HTTP/1.1 and h2c) drive each case.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{
    body::{Body, Frame, Incoming},
    server::conn::http2,
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{
    net::TcpListener,
    sync::{Barrier, Notify, mpsc, watch},
    task::JoinSet,
};

use super::{
    PATIENCE,
    tls::Ca,
    upstream_tls::{
        Answer, Backend, Gateway, Seen, get, h2c_client, quoted, read, route, send, tls,
        tls_backend, upstream,
    },
};
use crate::pipeline::BoxError;

/// How an HTTP/2 backend is set up.
#[derive(Clone, Copy, Debug)]
pub(super) struct Settings {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    max_streams: u32,
    /// The initial flow-control window of each stream it receives.
    stream_window: Option<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        // hyper's own default (hyper/src/proto/h2/server.rs), said out loud: the tests that
        // count on one connection need at least 100.
        Self {
            max_streams: 200,
            stream_window: None,
        }
    }
}

/// An h2c backend (HTTP/2 with prior knowledge, hyper) and how to shut its connections down.
#[derive(Debug)]
pub(super) struct H2cBackend {
    pub(super) backend: Backend,
    /// Notified: every open connection begins a graceful shutdown (GOAWAY).
    shutdown: Arc<Notify>,
}

/// An h2c backend answering each request with `respond(connection index, request)`. Each
/// connection, told to shut down, calls hyper's graceful shutdown and then notifies
/// `shut_down` (once per connection).
pub(super) async fn h2c_backend<F, Fut, B>(
    settings: Settings,
    shut_down: Arc<Notify>,
    respond: F,
) -> H2cBackend
where
    F: Fn(usize, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(watch::Sender::new(Seen::default()));
    let shutdown = Arc::new(Notify::new());
    let (recorder, stop) = (seen.clone(), shutdown.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let mut index = 0;
            recorder.send_modify(|s| {
                index = s.connections;
                s.connections += 1;
            });
            let (respond, seen, stop, shut_down) = (
                respond.clone(),
                recorder.clone(),
                stop.clone(),
                shut_down.clone(),
            );
            tokio::spawn(async move {
                // Registered before the connection serves anything, so no shutdown is missed.
                let stopping = stop.notified();
                tokio::pin!(stopping);
                stopping.as_mut().enable();
                let service = service_fn(move |request: Request<Incoming>| {
                    seen.send_modify(|s| s.requests += 1);
                    let response = respond(index, request);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                let mut builder = http2::Builder::new(TokioExecutor::new());
                builder.max_concurrent_streams(settings.max_streams);
                if let Some(window) = settings.stream_window {
                    builder.initial_stream_window_size(window);
                }
                let connection = builder.serve_connection(TokioIo::new(tcp), service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => {}
                    () = &mut stopping => {
                        connection.as_mut().graceful_shutdown();
                        shut_down.notify_one();
                        let _ = connection.await;
                    }
                }
            });
        }
    });
    H2cBackend {
        backend: Backend { addr, seen },
        shutdown,
    }
}

/// Answers `<connection index> <path>`.
async fn where_and_what(index: usize, request: Request<Incoming>) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from(format!(
        "{index} {}",
        request.uri().path()
    ))))
}

/// An H2C upstream `u` to `backend` and the route to it.
fn h2c_config(backend: SocketAddr) -> String {
    route(&["u"]) + &upstream("u", backend, "H2C", "")
}

/// The gateway's open HTTP/2 connections to the endpoint of upstream `u`.
pub(super) fn pooled(gateway: &Gateway) -> usize {
    let table = gateway.state.table().unwrap();
    let upstream = table.upstream("u").unwrap();
    upstream.endpoints()[0].pool().multiplexed().connections()
}

/// `count` GETs of `/u/<prefix>/<i>` at once: on one h2c client connection (`h2`), or each on
/// an HTTP/1.1 connection of its own. Every answer, by `i`.
pub(super) async fn all_at_once(
    gw: SocketAddr,
    h2: bool,
    prefix: &str,
    count: usize,
) -> Vec<Answer> {
    let mut requests = JoinSet::new();
    let sender = if h2 { Some(h2c_client(gw).await) } else { None };
    for i in 0..count {
        let request = get(&format!("/u/{prefix}/{i}"));
        match sender.clone() {
            Some(mut sender) => requests.spawn(async move {
                let response = sender.send_request(request).await.unwrap();
                (i, read(response).await)
            }),
            None => requests.spawn(async move { (i, send(gw, false, request).await) }),
        };
    }
    let mut answers: Vec<Option<Answer>> = (0..count).map(|_| None).collect();
    tokio::time::timeout(PATIENCE, async {
        while let Some(joined) = requests.join_next().await {
            let (i, answer) = joined.unwrap();
            answers[i] = Some(answer);
        }
    })
    .await
    .expect("every request is answered in time");
    answers.into_iter().map(Option::unwrap).collect()
}

/// Every answer is a 200 from connection `connection` for its own path.
fn assert_all_from(answers: &[Answer], prefix: &str, connection: Option<usize>) {
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, 200, "request {i}: {answer:?}");
        let (index, path) = answer.text().split_once(' ').unwrap();
        assert_eq!(path, format!("/u/{prefix}/{i}"));
        if let Some(connection) = connection {
            assert_eq!(index, connection.to_string(), "request {i}");
        }
    }
}

async fn a_hundred_requests_share_one_connection(h2: bool) {
    let backend = h2c_backend(Settings::default(), Arc::new(Notify::new()), where_and_what).await;
    let gateway = Gateway::serve(&h2c_config(backend.backend.addr)).await;
    let gw = gateway.addr;
    let answers = all_at_once(gw, h2, "n", 100).await;
    assert_all_from(&answers, "n", Some(0));
    let seen = backend.backend.seen();
    assert_eq!((seen.connections, seen.requests), (1, 100), "{seen:?}");
    assert_eq!(pooled(&gateway), 1);
}

#[tokio::test]
async fn a_hundred_h2c_streams_share_one_upstream_connection() {
    a_hundred_requests_share_one_connection(true).await;
}

#[tokio::test]
async fn a_hundred_http1_clients_share_one_upstream_connection() {
    a_hundred_requests_share_one_connection(false).await;
}

#[tokio::test]
async fn a_connection_at_the_peers_stream_limit_makes_the_pool_open_another() {
    const IN_FLIGHT: usize = 25;
    // No answer until all 25 requests are at the backend at the same time: with 10 streams
    // per connection, that takes three connections.
    let barrier = Arc::new(Barrier::new(IN_FLIGHT));
    let backend = h2c_backend(
        Settings {
            max_streams: 10,
            ..Settings::default()
        },
        Arc::new(Notify::new()),
        move |index, request| {
            let barrier = barrier.clone();
            async move {
                barrier.wait().await;
                where_and_what(index, request).await
            }
        },
    )
    .await;
    let gateway = Gateway::serve(&h2c_config(backend.backend.addr)).await;
    let gw = gateway.addr;
    for (round, h2) in [(0, true), (1, false)] {
        let prefix = format!("round{round}");
        let answers = all_at_once(gw, h2, &prefix, IN_FLIGHT).await;
        assert_all_from(&answers, &prefix, None);
        let seen = backend.backend.seen();
        // Opened only when all others were full; the second round reuses them.
        assert_eq!(seen.connections, 3, "{seen:?}");
        assert_eq!(pooled(&gateway), 3);
    }
}

#[tokio::test]
async fn h2_upstreams_need_tls_with_alpn_h2() {
    let ca = Ca::new();
    let name = "upstream.test";
    let h2 = tls_backend(ca.server(&[name], &[b"h2"], false)).await;
    let http1_only = tls_backend(ca.server(&[name], &[b"http/1.1"], false)).await;
    // Ignores ALPN: the handshake completes, but nothing says the endpoint speaks HTTP/2.
    let no_alpn = tls_backend(ca.server(&[name], &[], false)).await;
    let settings = tls(&[("sni", name), ("caCertificatePem", &quoted(&ca.pem()))]);
    let yaml = route(&["h2", "http1only", "noalpn"])
        + &upstream("h2", h2.addr, "H2", &settings)
        + &upstream("http1only", http1_only.addr, "H2", &settings)
        + &upstream("noalpn", no_alpn.addr, "H2", &settings);
    let gateway = Gateway::serve(&yaml).await;
    let gw = gateway.addr;
    for front_h2 in [false, true] {
        let answer = send(gw, front_h2, get("/h2/x")).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.text(), "h2 /h2/x client-cert:false");
        send(gw, front_h2, get("/http1only/x"))
            .await
            .assert_unavailable();
        send(gw, front_h2, get("/noalpn/x"))
            .await
            .assert_unavailable();
    }
    assert_eq!(h2.seen().requests, 2);
    http1_only
        .wait_for("the handshakes refused", |s| s.refused >= 2)
        .await;
    no_alpn
        .wait_for("the handshakes completed", |s| s.handshakes >= 2)
        .await;
    assert_eq!(http1_only.seen().requests + no_alpn.seen().requests, 0);
}

/// A gRPC-shaped answer: a message, then trailers with the status.
async fn with_trailers(
    _index: usize,
    request: Request<Incoming>,
) -> Response<StreamBody<BodyStream>> {
    let te = request.headers().get("te").cloned();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.insert("grpc-message", HeaderValue::from_static("fine"));
    if let Some(te) = te {
        trailers.insert("x-te-seen", te);
    }
    let frames = vec![
        Ok(Frame::data(Bytes::from_static(b"reply:"))),
        Ok(Frame::data(body)),
        Ok(Frame::trailers(trailers)),
    ];
    Response::builder()
        .header("content-type", "application/grpc")
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap()
}

type BodyStream = futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;

#[tokio::test]
async fn response_trailers_reach_h2c_clients() {
    let backend = h2c_backend(Settings::default(), Arc::new(Notify::new()), with_trailers).await;
    let gateway = Gateway::serve(&h2c_config(backend.backend.addr)).await;
    let gw = gateway.addr;
    let message = Bytes::from_static(b"\0\0\0\0\x05hello");
    let call = || {
        Request::post("http://gw.test/u/pkg.Svc/Call")
            .header("host", "gw.test")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(message.clone()))
            .unwrap()
    };
    let answer = send(gw, true, call()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(&answer.body[..], b"reply:\0\0\0\0\x05hello");
    let trailers = answer.trailers.expect("the trailers arrive");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "fine");
    // te is hop-by-hop, and set again for the upstream hop of a gRPC call.
    assert_eq!(trailers["x-te-seen"], "trailers");

    // Not for HTTP/1.1 clients, but the body arrives whole.
    let answer = send(gw, false, call()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(&answer.body[..], b"reply:\0\0\0\0\x05hello");
}

/// Echoes the whole request body back.
async fn echo(_index: usize, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = request.into_body().collect().await.unwrap().to_bytes();
    Response::new(Full::new(body))
}

#[tokio::test]
async fn a_mebibyte_request_body_streams_intact() {
    // Smaller than the body many times over: it moves only as the backend gives window back.
    let backend = h2c_backend(
        Settings {
            stream_window: Some(64 * 1024),
            ..Settings::default()
        },
        Arc::new(Notify::new()),
        echo,
    )
    .await;
    let gateway = Gateway::serve(&h2c_config(backend.backend.addr)).await;
    let gw = gateway.addr;
    let payload: Bytes = (0..1024 * 1024 + 333)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect::<Vec<u8>>()
        .into();
    let post = |body| {
        Request::post("http://gw.test/u/upload")
            .header("host", "gw.test")
            .body(body)
            .unwrap()
    };
    for h2 in [false, true] {
        // With a length (content-length).
        let answer = send(gw, h2, post(Full::new(payload.clone()).boxed())).await;
        assert_eq!(answer.status, 200, "h2c {h2}, with a length: {answer:?}");
        assert!(
            answer.body == payload,
            "h2c {h2}, with a length: the echo differs"
        );
        // Without one (HTTP/1.1 chunked; HTTP/2 frames until END_STREAM).
        let chunks: Vec<Result<Frame<Bytes>, Infallible>> = payload
            .chunks(10_000)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = StreamBody::new(futures_util::stream::iter(chunks));
        let answer = send(gw, h2, post(body.boxed())).await;
        assert_eq!(answer.status, 200, "h2c {h2}, streamed: {answer:?}");
        assert!(
            answer.body == payload,
            "h2c {h2}, streamed: the echo differs"
        );
    }
    assert_eq!(backend.backend.seen().connections, 1);
}

/// Waits for the backend to report a request for `path` as arrived.
async fn arrival(arrivals: &mut mpsc::UnboundedReceiver<String>, path: &str) {
    let arrived = tokio::time::timeout(PATIENCE, arrivals.recv())
        .await
        .expect("the request reaches the backend");
    assert_eq!(arrived.as_deref(), Some(path));
}

#[tokio::test]
async fn goaway_lets_the_requests_in_flight_finish_and_the_next_goes_to_a_new_connection() {
    let (arrived, mut arrivals) = mpsc::unbounded_channel();
    let shut_down = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let backend = {
        let (shut_down, release) = (shut_down.clone(), release.clone());
        h2c_backend(
            Settings::default(),
            shut_down.clone(),
            move |index, request| {
                let (arrived, shut_down, release) =
                    (arrived.clone(), shut_down.clone(), release.clone());
                async move {
                    let path = request.uri().path().to_owned();
                    let _ = arrived.send(path.clone());
                    match path.as_str() {
                        // Answered once its connection has begun to shut down.
                        "/u/hold" => shut_down.notified().await,
                        // Answered when the test says: keeps the connection open after GOAWAY.
                        "/u/long" => release.notified().await,
                        _ => {}
                    }
                    where_and_what(index, request).await
                }
            },
        )
        .await
    };
    let gateway = Gateway::serve(&h2c_config(backend.backend.addr)).await;
    let gw = gateway.addr;
    for (connection, h2) in [(0, false), (1, true)] {
        let long = tokio::spawn(send(gw, h2, get("/u/long")));
        arrival(&mut arrivals, "/u/long").await;
        let hold = tokio::spawn(send(gw, h2, get("/u/hold")));
        arrival(&mut arrivals, "/u/hold").await;
        backend.shutdown.notify_waiters();
        let answer = tokio::time::timeout(PATIENCE, hold)
            .await
            .expect("the request in flight finishes")
            .unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.text(), format!("{connection} /u/hold"));

        // The old connection is still open (for /u/long) but takes no new streams.
        let next = send(gw, h2, get("/u/next")).await;
        assert_eq!(next.status, 200, "{next:?}");
        assert_eq!(
            next.text(),
            format!("{} /u/next", connection + 1),
            "the next request goes to a new connection"
        );
        arrival(&mut arrivals, "/u/next").await;

        release.notify_one();
        let answer = tokio::time::timeout(PATIENCE, long)
            .await
            .expect("the long request finishes")
            .unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.text(), format!("{connection} /u/long"));
        assert_eq!(backend.backend.seen().connections, connection + 2);
    }
}

//! The pipeline against a real in-process hyper backend, over real TCP on 127.0.0.1:0.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{body::Frame, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::watch};

use crate::server;

mod protocol;

const PATIENCE: Duration = Duration::from_secs(10);

/// A backend: `/slow` answers after 5 s, `/echo` streams the request body back, anything else
/// answers with the request line and headers as text.
async fn backend() -> SocketAddr {
    crate::test_backend::serve(|req: Request<hyper::body::Incoming>| async move {
        let path = req.uri().path().to_owned();
        let response: Response<BoxBody<Bytes, hyper::Error>> = match path.as_str() {
            "/echo" => Response::new(req.into_body().boxed()),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Response::new(full("late"))
            }
            _ => {
                let mut text = format!("{} {}\n", req.method(), req.uri());
                for (name, value) in req.headers() {
                    text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
                }
                let mut response = Response::new(full(&text));
                response
                    .headers_mut()
                    .insert("connection", "x-backend-private".parse().unwrap());
                response
                    .headers_mut()
                    .insert("x-backend-private", "1".parse().unwrap());
                response
                    .headers_mut()
                    .insert("x-backend-public", "1".parse().unwrap());
                response
            }
        };
        response
    })
    .await
}

fn full(text: &str) -> BoxBody<Bytes, hyper::Error> {
    Full::new(Bytes::from(text.to_owned()))
        .map_err(|never| match never {})
        .boxed()
}

/// A port with nothing listening.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

struct Gateway {
    addr: SocketAddr,
    _stop: watch::Sender<bool>,
}

async fn gateway(backend: SocketAddr, trusted: &[&str], loaded: bool) -> Gateway {
    let dead = closed_port().await;
    let yaml = format!(
        "
kind: Upstream
name: live
spec: {{ endpoints: [{{ address: '{backend}' }}] }}
---
kind: Upstream
name: slow
spec: {{ endpoints: [{{ address: '{backend}' }}], timeout: 0.2s }}
---
kind: Upstream
name: dead
spec: {{ endpoints: [{{ address: '{dead}' }}] }}
---
kind: Upstream
name: drained
spec: {{ endpoints: [{{ address: '{backend}', weight: 0 }}] }}
---
kind: Route
name: routes
spec:
  rules:
    - matches: [{{ path: {{ type: PathPrefix, value: /api }} }}, {{ path: {{ type: Exact, value: /echo }} }}]
      backendRefs: [{{ name: live }}]
    - matches: [{{ path: {{ type: Exact, value: /slow }} }}]
      backendRefs: [{{ name: slow }}]
    - matches: [{{ path: {{ type: PathPrefix, value: /dead }} }}]
      backendRefs: [{{ name: dead }}]
    - matches: [{{ path: {{ type: PathPrefix, value: /drained }} }}]
      backendRefs: [{{ name: drained }}]
"
    );
    let (addr, stop) = server::serve_for_test(loaded.then_some(&*yaml), trusted).await;
    Gateway { addr, _stop: stop }
}

/// Sends one request on a new HTTP/1.1 connection.
async fn send<B>(addr: SocketAddr, req: Request<B>) -> Response<hyper::body::Incoming>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    tokio::time::timeout(PATIENCE, sender.send_request(req))
        .await
        .expect("response in time")
        .unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> (Response<()>, String) {
    let req = Request::get(path)
        .header("host", "gw.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = send(addr, req).await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        Response::from_parts(parts, ()),
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
}

#[tokio::test]
async fn forwards_with_rewritten_headers() {
    let gw = gateway(backend().await, &[], true).await;
    let req = Request::get("/api/users?id=7&x=%20")
        .header("host", "Gw.Test:8080")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eA==")
        .header("te", "trailers")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-request-id", "from-client")
        .header("x-kept", "yes")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = send(gw.addr, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(id, "from-client");
    assert!(!response.headers().contains_key("x-backend-private"));
    assert!(!response.headers().contains_key("connection"));
    assert_eq!(response.headers()["x-backend-public"], "1");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.starts_with("GET /api/users?id=7&x=%20\n"), "{text}");
    assert_eq!(header(&text, "x-kept"), Some("yes"));
    assert_eq!(header(&text, "host"), Some("Gw.Test:8080"));
    assert_eq!(header(&text, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&text, "x-forwarded-proto"), Some("http"));
    assert_eq!(header(&text, "x-forwarded-host"), Some("Gw.Test:8080"));
    assert_eq!(header(&text, "x-request-id"), Some(id.as_str()));
    for gone in ["x-hop", "keep-alive", "proxy-authorization", "te"] {
        assert_eq!(header(&text, gone), None, "{gone} in {text}");
    }
}

#[tokio::test]
async fn trusted_peer_keeps_its_chain_and_request_id() {
    let gw = gateway(backend().await, &["127.0.0.0/8"], true).await;
    let req = Request::get("/api")
        .header("host", "gw.test")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-request-id", "from-lb")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = send(gw.addr, req).await;
    assert_eq!(response.headers()["x-request-id"], "from-lb");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(header(&text, "x-forwarded-for"), Some("6.6.6.6, 127.0.0.1"));
    assert_eq!(header(&text, "x-forwarded-proto"), Some("https"));
    assert_eq!(header(&text, "x-request-id"), Some("from-lb"));
}

async fn assert_error(addr: SocketAddr, path: &str, status: u16, code: &str) {
    let (response, body) = get(addr, path).await;
    assert_eq!(response.status().as_u16(), status, "{path}: {body}");
    assert_eq!(response.headers()["content-type"], "application/json");
    let id = response.headers()["x-request-id"].to_str().unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let error = json["error"].as_object().expect("an error object");
    assert_eq!(error.len(), 4, "{body}");
    assert_eq!(error["status"], status);
    assert_eq!(error["code"], code);
    assert_eq!(error["request_id"], id);
    let message = error["message"].as_str().unwrap();
    // No internal detail: no addresses, no upstream names.
    assert!(
        !message.contains("127.0.0.1") && !message.contains("dead"),
        "{message}"
    );
}

#[tokio::test]
async fn errors_are_json() {
    let gw = gateway(backend().await, &[], true).await;
    assert_error(gw.addr, "/nowhere", 404, "route_not_found").await;
    assert_error(gw.addr, "/dead/x", 502, "upstream_unavailable").await;
    assert_error(gw.addr, "/drained", 503, "no_healthy_upstream").await;
    assert_error(gw.addr, "/slow", 504, "upstream_timeout").await;
    let idle = gateway(backend().await, &[], false).await;
    assert_error(idle.addr, "/api", 503, "not_ready").await;
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let gw = gateway(backend().await, &[], true).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let req = Request::post("/echo")
        .header("host", "gw.test")
        .body(body)
        .unwrap();
    tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
        .await
        .unwrap();
    let mut response = send(gw.addr, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    // The first chunk comes back while the request body is still open: nothing is buffered.
    assert_eq!(
        next_data(&mut response).await.as_deref(),
        Some(&b"first"[..])
    );
    tx.send(Ok(Frame::data(Bytes::from_static(b"second"))))
        .await
        .unwrap();
    assert_eq!(
        next_data(&mut response).await.as_deref(),
        Some(&b"second"[..])
    );
    drop(tx);
    assert_eq!(next_data(&mut response).await, None);
}

/// The next non-empty data chunk of a response body; `None` at its end.
async fn next_data(response: &mut Response<hyper::body::Incoming>) -> Option<Bytes> {
    loop {
        let frame = tokio::time::timeout(PATIENCE, response.body_mut().frame())
            .await
            .expect("a frame in time");
        match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => return Some(data),
                _ => continue,
            },
            Some(Err(e)) => panic!("{e}"),
            None => return None,
        }
    }
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let gw = gateway(backend().await, &[], true).await;
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://h2.test/api/h2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.starts_with("GET /api/h2\n"), "{text}");
    assert_eq!(header(&text, "host"), Some("h2.test"));
    assert_eq!(header(&text, "x-forwarded-host"), Some("h2.test"));
}

#[test]
fn host_normalisation() {
    let mut buf = [0u8; 256];
    assert_eq!(
        crate::pipeline::normalize_host("API.Example.com:8080", &mut buf),
        Some("api.example.com")
    );
    assert_eq!(
        crate::pipeline::normalize_host("example.com.", &mut buf),
        Some("example.com")
    );
    assert_eq!(
        crate::pipeline::normalize_host("[::1]:80", &mut buf),
        Some("[::1]")
    );
    assert_eq!(
        crate::pipeline::normalize_host(&"a".repeat(300), &mut buf),
        None
    );
}

/// An h2c client on a new connection.
async fn h2c(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn a_stalled_upstream_body_fails_the_h2_stream_instead_of_hanging() {
    // The backend promises 100 bytes, sends 5, and goes quiet with the connection open.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello";
        tokio::io::AsyncWriteExt::write_all(&mut stream, head)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(stream);
    });
    let yaml = format!(
        "kind: Upstream\nname: stall\nspec: {{ endpoints: [{{ address: '{backend}' }}], timeout: 0.5s }}\n---\nkind: Route\nname: r\nspec: {{ rules: [{{ backendRefs: [{{ name: stall }}] }}] }}\n"
    );
    let (addr, _stop) = server::serve_for_test(Some(&yaml), &[]).await;
    let mut sender = h2c(addr).await;
    let req = Request::get("http://h2.test/stall")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .expect("the stream ends instead of hanging");
    assert!(body.is_err(), "a body cut short must not look complete");
}

#[tokio::test]
async fn h2_requests_share_the_endpoint_pool() {
    // Counts the backend's connections: sequential h2 requests reuse one pooled connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(Response::new(full("ok")))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let yaml = format!(
        "kind: Upstream\nname: b\nspec: {{ endpoints: [{{ address: '{backend}' }}] }}\n---\nkind: Route\nname: r\nspec: {{ rules: [{{ backendRefs: [{{ name: b }}] }}] }}\n"
    );
    let (addr, _stop) = server::serve_for_test(Some(&yaml), &[]).await;
    let mut sender = h2c(addr).await;
    for i in 0..5 {
        let req = Request::get(format!("http://h2.test/{i}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    }
    // Over HTTP/1 too: the same pool.
    let (response, body) = get(addr, "/h1").await;
    assert_eq!((response.status(), body.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

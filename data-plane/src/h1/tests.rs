//! The HTTP/1.x connection loop over real TCP on 127.0.0.1:0, byte for byte: a raw client
//! against the gateway, and a raw backend that records what it receives and answers as told.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use gateway_proto::document::parse_documents;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    time::{Instant, timeout},
};

use crate::{
    config::TrustedPeers,
    server::{self, HEADER_READ_TIMEOUT},
    state::State,
    table::{Source, Table},
};

/// How long a client read waits before the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

/// A request (method, target) or a response (status) as received, its body de-chunked.
#[derive(Clone, Debug, Default)]
struct Msg {
    method: String,
    target: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Msg {
    /// Every value of the header `name`.
    fn all(&self, name: &str) -> Vec<&str> {
        let named = |(n, _): &&(String, String)| n.eq_ignore_ascii_case(name);
        let values = self.headers.iter().filter(named);
        values.map(|(_, v)| v.as_str()).collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }

    /// Asserts a 200 whose body is `body`.
    fn assert_ok(&self, body: &str) {
        let text = String::from_utf8_lossy(&self.body);
        assert_eq!((self.status, &*text), (200, body), "{self:?}");
    }

    /// Asserts our JSON error with `status` and `code`, and the request id in the header.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        let id = self.header("x-request-id").filter(|id| !id.is_empty());
        let id = id.expect("an x-request-id header");
        let json: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        let error = json["error"].as_object().expect("an error object");
        assert_eq!(error.len(), 4, "{json}");
        assert_eq!(error["status"], status);
        assert_eq!(error["code"], code);
        assert_eq!(error["request_id"], id);
        assert!(error["message"].is_string());
    }

    /// The body at the front of `buf` (bytes taken, payload); `None`: incomplete, or delimited
    /// by the close.
    fn framed_body(&self, buf: &[u8]) -> Option<(usize, Vec<u8>)> {
        if self.header("transfer-encoding") == Some("chunked") {
            return dechunk(buf);
        }
        let n: usize = match self.header("content-length") {
            Some(n) => n.parse().unwrap(),
            None if self.status != 0 => return None,
            None => 0,
        };
        (buf.len() >= n).then(|| (n, buf[..n].to_vec()))
    }
}

fn find(buf: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let mut windows = buf.get(from..)?.windows(needle.len());
    Some(from + windows.position(|w| w == needle)?)
}

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// A complete chunked body at the front of `buf`: the bytes it takes and its payload.
fn dechunk(buf: &[u8]) -> Option<(usize, Vec<u8>)> {
    let (mut pos, mut payload) = (0, Vec::new());
    loop {
        let end = find(buf, pos, b"\r\n")?;
        let line = std::str::from_utf8(&buf[pos..end]).unwrap();
        let size = line.split(';').next().unwrap().trim();
        let size = usize::from_str_radix(size, 16).expect("a chunk size");
        if size == 0 {
            // Trailer lines, up to an empty one.
            return Some((find(buf, end, b"\r\n\r\n")? + 4, payload));
        }
        pos = end + 2;
        if buf.len() < pos + size + 2 {
            return None;
        }
        assert_eq!(&buf[pos + size..pos + size + 2], b"\r\n", "chunk data end");
        payload.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

/// The head at the front of `buf`, if complete.
fn parse_head(buf: &[u8], request: bool) -> Option<(usize, Msg)> {
    let mut headers = [httparse::EMPTY_HEADER; 160];
    let mut msg = Msg::default();
    let invalid = |e| panic!("{e}: {:?}", text(buf));
    let (parsed, headers) = if request {
        let mut req = httparse::Request::new(&mut headers);
        let parsed = req.parse(buf).unwrap_or_else(invalid);
        msg.method = req.method.unwrap_or_default().into();
        msg.target = req.path.unwrap_or_default().into();
        (parsed, req.headers)
    } else {
        let mut res = httparse::Response::new(&mut headers);
        let parsed = res.parse(buf).unwrap_or_else(invalid);
        msg.status = res.code.unwrap_or_default();
        (parsed, res.headers)
    };
    let httparse::Status::Complete(n) = parsed else {
        return None;
    };
    for h in headers.iter() {
        msg.headers.push((h.name.into(), text(h.value).into()));
    }
    Some((n, msg))
}

/// One end of a connection, reading whole messages.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    patience: Duration,
}

impl Conn {
    fn new(stream: TcpStream, patience: Duration) -> Self {
        let buf = Vec::new();
        Self {
            stream,
            buf,
            patience,
        }
    }

    async fn client(gateway: SocketAddr) -> Self {
        Self::new(TcpStream::connect(gateway).await.unwrap(), PATIENCE)
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.unwrap();
    }

    /// Sends `bytes` and reads the response (not to a HEAD).
    async fn exchange(&mut self, bytes: impl AsRef<[u8]>) -> Msg {
        self.send(bytes).await;
        self.response(false).await
    }

    /// GETs `path` from a backend that answers with the target, and checks the answer.
    async fn get_ok(&mut self, path: &str) {
        self.exchange(get(path)).await.assert_ok(path);
    }

    async fn response(&mut self, to_head: bool) -> Msg {
        self.read(false, to_head).await.expect("a response")
    }

    /// Reads more; false once the peer closed (or reset) the connection.
    async fn fill(&mut self) -> bool {
        self.buf.reserve(16 * 1024);
        let Ok(read) = timeout(self.patience, self.stream.read_buf(&mut self.buf)).await else {
            panic!("nothing in time; got {:?}", text(&self.buf));
        };
        match read {
            Ok(n) => n > 0,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("reading: {e}"),
        }
    }

    /// The next message; `None` if the peer closed before one began. `to_head`: a response
    /// to a HEAD request.
    async fn read(&mut self, request: bool, to_head: bool) -> Option<Msg> {
        let (n, mut msg) = loop {
            if let Some(head) = parse_head(&self.buf, request) {
                break head;
            }
            if !self.fill().await {
                assert!(self.buf.is_empty(), "cut off: {:?}", self.buf);
                return None;
            }
        };
        self.buf.drain(..n);
        if to_head || (100..200).contains(&msg.status) || [204, 304].contains(&msg.status) {
            return Some(msg);
        }
        loop {
            if let Some((n, body)) = msg.framed_body(&self.buf) {
                self.buf.drain(..n);
                msg.body = body;
                return Some(msg);
            }
            if !self.fill().await {
                let framed = msg
                    .header("content-length")
                    .or(msg.header("transfer-encoding"));
                assert!(framed.is_none(), "cut off in the body: {msg:?}");
                msg.body = std::mem::take(&mut self.buf);
                return Some(msg);
            }
        }
    }

    /// Asserts that the peer closes the connection without sending anything more.
    async fn assert_closed(&mut self) {
        while self.fill().await {}
        assert!(self.buf.is_empty(), "more: {:?}", text(&self.buf));
    }
}

// === the backend and the gateway ===

enum Reply {
    Send(Vec<u8>),
    /// Send, then close the connection (without saying so in the response).
    SendAndClose(Vec<u8>),
    /// Close the connection without answering.
    Close,
    /// Never answer.
    Silence,
}

/// How a backend answers: `reply(request, its index on its connection)`.
type Replier = Arc<dyn Fn(&Msg, usize) -> Reply + Send + Sync>;

/// A raw backend, and the gateway in front of it (running while this lives).
struct Backend {
    conns: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Msg>>>,
    _stop: watch::Sender<bool>,
}

impl Backend {
    fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// The requests received so far.
    fn seen(&self) -> Vec<Msg> {
        self.seen.lock().unwrap().clone()
    }

    /// Nothing reached the backend: no connection, no request.
    fn assert_untouched(&self) {
        assert_eq!(self.conns(), 0);
        assert!(self.seen().is_empty(), "{:?}", self.seen());
    }
}

/// Starts a backend answering with `reply` (see [`Replier`]) and a gateway in front of it.
async fn start(
    reply: impl Fn(&Msg, usize) -> Reply + Send + Sync + 'static,
) -> (Backend, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (gateway, _stop) = gateway(listener.local_addr().unwrap()).await;
    let (conns, seen) = (Arc::new(AtomicUsize::new(0)), Arc::default());
    let backend = Backend { conns, seen, _stop };
    let (conns, seen) = (backend.conns.clone(), backend.seen.clone());
    let reply: Replier = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            conns.fetch_add(1, Ordering::SeqCst);
            let conn = Conn::new(stream, Duration::MAX);
            tokio::spawn(serve_backend(conn, seen.clone(), reply.clone()));
        }
    });
    (backend, gateway)
}

/// Records and answers the requests on one backend connection.
async fn serve_backend(mut conn: Conn, seen: Arc<Mutex<Vec<Msg>>>, reply: Replier) {
    for nth in 0.. {
        let Some(request) = conn.read(true, false).await else {
            return;
        };
        let answer = reply(&request, nth);
        seen.lock().unwrap().push(request);
        match answer {
            Reply::Send(bytes) => conn.send(bytes).await,
            Reply::SendAndClose(bytes) => return conn.send(bytes).await,
            Reply::Close => return,
            Reply::Silence => std::future::pending().await,
        }
    }
}

/// A gateway routing `/api` to `backend`, and `/slow` to it with a 0.2 s upstream timeout; it
/// stops when the sender drops.
async fn gateway(backend: SocketAddr) -> (SocketAddr, watch::Sender<bool>) {
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
kind: Route
name: routes
spec:
  rules:
    - matches: [{{ path: {{ type: PathPrefix, value: /api }} }}]
      backendRefs: [{{ name: live }}]
    - matches: [{{ path: {{ type: PathPrefix, value: /slow }} }}]
      backendRefs: [{{ name: slow }}]
"
    );
    let state = Arc::new(State::new(TrustedPeers::parse([]).unwrap()));
    let resources = parse_documents(&yaml).unwrap();
    state.install(Table::compile(1, &resources, Source::File, state.side()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let drain = Duration::from_secs(1);
    tokio::spawn(server::serve(listener, state, stopped, drain));
    (addr, stop)
}

/// A backend answering every request with its target as the body, and its gateway.
async fn echo() -> (Backend, SocketAddr) {
    start(|request, _| Reply::Send(ok(&request.target))).await
}

/// A 200 response with `body`.
fn ok(body: &str) -> Vec<u8> {
    let length = body.len();
    format!("HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n\r\n{body}").into_bytes()
}

/// A GET for `path` with a Host header.
fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n")
}

/// A POST to `/api/x` with `headers` (lines without the final CRLF) and `body`.
fn post(headers: &str, body: &str) -> String {
    format!("POST /api/x HTTP/1.1\r\nHost: gw.test\r\n{headers}\r\n\r\n{body}")
}

/// Sends each request on a new connection; asserts the JSON error, `connection: close`, that
/// the gateway then closes, and that nothing reached the backend.
async fn assert_rejected(requests: &[String], status: u16, code: &str) {
    let (backend, gw) = echo().await;
    for raw in requests {
        let mut client = Conn::client(gw).await;
        let response = client.exchange(raw).await;
        response.assert_error(status, code);
        assert_eq!(response.header("connection"), Some("close"), "{raw:?}");
        client.assert_closed().await;
    }
    backend.assert_untouched();
}

// === framing, smuggling, limits: rejected before anything goes upstream ===

#[tokio::test]
async fn both_content_length_and_chunked_is_400() {
    // What follows the chunked body would be a second request to the backend.
    let body = format!("0\r\n\r\n{}", get("/api/smuggled"));
    let requests = [
        post("Content-Length: 5\r\nTransfer-Encoding: chunked", &body),
        post("Transfer-Encoding: chunked\r\nContent-Length: 5", &body),
    ];
    assert_rejected(&requests, 400, "bad_request").await;
}

#[tokio::test]
async fn transfer_codings_other_than_chunked_are_501() {
    let requests = ["gzip", "gzip, chunked"]
        .map(|coding| post(&format!("Transfer-Encoding: {coding}"), "0\r\n\r\n"));
    assert_rejected(&requests, 501, "not_implemented").await;
}

#[tokio::test]
async fn invalid_or_conflicting_content_length_is_400() {
    let requests = ["abc", "-1", "+5", "5\r\nContent-Length: 6", "5, 6"]
        .map(|length| post(&format!("Content-Length: {length}"), "hello"));
    assert_rejected(&requests, 400, "bad_request").await;
}

#[tokio::test]
async fn malformed_request_lines_are_400() {
    let lines = [
        "GET /api/x",
        "GET /api/x HTTP/1.1 extra",
        "GET /api/x HTTP/1.x",
        "G(T /api/x HTTP/1.1",
        "GET api/x HTTP/1.1",
        "GET /api/\x01 HTTP/1.1",
    ];
    let requests = lines.map(|line| format!("{line}\r\nHost: gw.test\r\n\r\n"));
    assert_rejected(&requests, 400, "bad_request").await;
}

#[tokio::test]
async fn http11_needs_exactly_one_host() {
    let requests = [
        "GET /api/x HTTP/1.1\r\n\r\n".to_owned(),
        "GET /api/x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n".to_owned(),
    ];
    assert_rejected(&requests, 400, "bad_request").await;
}

/// RFC 9112 section 3.2: a Host field with an invalid value (`uri-host [":" port]` has no
/// space and no slash) MUST get a 400.
#[tokio::test]
async fn invalid_host_is_400() {
    let requests = ["gw test", "gw.test/evil"]
        .map(|host| format!("GET /api/x HTTP/1.1\r\nHost: {host}\r\n\r\n"));
    assert_rejected(&requests, 400, "bad_request").await;
}

#[tokio::test]
async fn head_over_64_kib_is_431() {
    let big = "a".repeat(65 * 1024);
    let request = format!("GET /api/x HTTP/1.1\r\nHost: gw.test\r\nX-Big: {big}\r\n\r\n");
    assert_rejected(&[request], 431, "request_header_too_large").await;
}

#[tokio::test]
async fn over_128_header_lines_is_431() {
    let lines: String = (0..128).map(|i| format!("X-H{i}: v\r\n")).collect();
    let request = format!("GET /api/x HTTP/1.1\r\nHost: gw.test\r\n{lines}\r\n");
    assert_rejected(&[request], 431, "request_header_too_large").await;
}

#[tokio::test]
async fn other_expectations_are_417() {
    let request = post("Expect: other\r\nContent-Length: 5", "hello");
    assert_rejected(&[request], 417, "expectation_failed").await;
}

/// Paused time: once every task waits, the runtime jumps to the next timer (the header
/// deadline). Loopback sockets deliver within the write call, so no byte is in flight then.
#[tokio::test(start_paused = true)]
async fn partial_head_then_silence_is_408() {
    let (backend, gw) = echo().await;
    let mut idle = Conn::client(gw).await;
    let mut client = Conn::client(gw).await;
    idle.patience = HEADER_READ_TIMEOUT * 2;
    client.patience = HEADER_READ_TIMEOUT * 2;
    client.send("GET /api/x HTTP/1.1\r\nHost: gw").await;
    let start = Instant::now();
    let response = client.response(false).await;
    response.assert_error(408, "request_timeout");
    assert!(start.elapsed() >= HEADER_READ_TIMEOUT - Duration::from_secs(1));
    assert_eq!(response.header("connection"), Some("close"));
    client.assert_closed().await;
    // A connection that sent nothing is closed quietly.
    idle.assert_closed().await;
    backend.assert_untouched();
}

// === HTTP/1.0, Expect, pipelining, HEAD, chunks, absolute form ===

/// RFC 9112 section 3.2: a client MUST send Host in every HTTP/1.1 request (empty when the
/// target has no authority), and the gateway forwards HTTP/1.0 requests as HTTP/1.1.
#[tokio::test]
async fn http10_without_host_is_forwarded_with_a_host_field() {
    let (backend, gw) = echo().await;
    let mut client = Conn::client(gw).await;
    let response = client.exchange("GET /api/old HTTP/1.0\r\n\r\n").await;
    response.assert_ok("/api/old");
    let seen = &backend.seen()[0];
    assert_eq!(seen.all("host").len(), 1, "{:?}", seen.headers);
}

#[tokio::test]
async fn http10_without_host_is_served_and_closed_unless_keep_alive() {
    let (_backend, gw) = echo().await;
    let mut client = Conn::client(gw).await;
    let response = client
        .exchange("GET /api/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    response.assert_ok("/api/a");
    assert_eq!(response.header("connection"), Some("keep-alive"));
    let response = client.exchange("GET /api/b HTTP/1.0\r\n\r\n").await;
    response.assert_ok("/api/b");
    assert_eq!(response.header("connection"), Some("close"));
    client.assert_closed().await;
}

/// A backend answering `/api/chunked` with "hello world" in chunks (with an extension and a
/// trailer), anything else with its target.
async fn chunked() -> (Backend, SocketAddr) {
    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n";
    start(|seen, _| match seen.target.as_str() {
        "/api/chunked" => Reply::Send(CHUNKED.to_vec()),
        target => Reply::Send(ok(target)),
    })
    .await
}

#[tokio::test]
async fn chunked_responses_are_dechunked_for_http10() {
    let (_backend, gw) = chunked().await;
    let mut client = Conn::client(gw).await;
    // Delimited by the close: no transfer-encoding, which an HTTP/1.0 client cannot read.
    let response = client
        .exchange("GET /api/chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    response.assert_ok("hello world");
    assert_eq!(response.header("transfer-encoding"), None);
    assert_eq!(response.header("connection"), Some("close"));
}

#[tokio::test]
async fn chunked_bodies_pass_through_both_ways() {
    let (backend, gw) = chunked().await;
    let mut client = Conn::client(gw).await;
    client
        .send(post("Transfer-Encoding: chunked", "5;ext=1\r\nhello\r\n").replace("/x", "/chunked"))
        .await;
    let response = client
        .exchange("6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n")
        .await;
    response.assert_ok("hello world");
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    let seen = &backend.seen()[0];
    assert_eq!(seen.header("transfer-encoding"), Some("chunked"));
    assert_eq!(seen.header("content-length"), None);
    assert_eq!(seen.body, b"hello world");
    // Both bodies ended where they should: the connection carries on.
    client.get_ok("/api/next").await;
}

#[tokio::test]
async fn expect_100_continue_comes_before_the_body() {
    let (backend, gw) = start(|seen, _| Reply::Send(ok(&text(&seen.body)))).await;
    let mut client = Conn::client(gw).await;
    let interim = client
        .exchange(post("Expect: 100-continue\r\nContent-Length: 5", ""))
        .await;
    assert_eq!(interim.status, 100);
    assert!(interim.headers.is_empty(), "{interim:?}");
    assert!(client.buf.is_empty());
    client.exchange("hello").await.assert_ok("hello");
    let seen = &backend.seen()[0];
    assert_eq!(seen.header("expect"), None, "{:?}", seen.headers);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (_backend, gw) = start(|seen, _| {
        let body = text(&seen.body);
        Reply::Send(ok(&format!("{} {body}", seen.target)))
    })
    .await;
    let mut client = Conn::client(gw).await;
    let hello = post("Content-Length: 5", "hello");
    client
        .send([hello, get("/api/2"), get("/api/3")].concat())
        .await;
    client.response(false).await.assert_ok("/api/x hello");
    client.response(false).await.assert_ok("/api/2 ");
    client.response(false).await.assert_ok("/api/3 ");
}

#[tokio::test]
async fn head_responses_have_no_body() {
    let (_backend, gw) = start(|seen, _| match seen.method.as_str() {
        "HEAD" => Reply::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n".to_vec()),
        _ => Reply::Send(ok(&seen.target)),
    })
    .await;
    let mut client = Conn::client(gw).await;
    client
        .send("HEAD /api/h HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await;
    let response = client.response(true).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("11"));
    assert!(client.buf.is_empty());
    // Had body bytes followed (or been awaited), this response would not parse (or come).
    client.get_ok("/api/next").await;
}

#[tokio::test]
async fn absolute_form_target_goes_upstream_in_origin_form() {
    let (backend, gw) = echo().await;
    let mut client = Conn::client(gw).await;
    let request = "GET http://example.test/api/x?q=1 HTTP/1.1\r\nHost: other.test\r\n\r\n";
    client.exchange(request).await.assert_ok("/api/x?q=1");
    let seen = &backend.seen()[0];
    assert_eq!(seen.all("host"), ["example.test"], "{:?}", seen.headers);
    assert_eq!(seen.header("x-forwarded-host"), Some("example.test"));
}

// === upstream connections ===

#[tokio::test]
async fn upstream_connections_are_kept_alive() {
    let (backend, gw) = echo().await;
    let mut client = Conn::client(gw).await;
    for i in 0..20 {
        client.get_ok(&format!("/api/{i}")).await;
    }
    assert_eq!((backend.seen().len(), backend.conns()), (20, 1));
}

/// GETs through `gw` all succeed; then a POST gets a 200 (received once) or a 502 (received
/// at most once: never sent again on another connection).
async fn gets_then_post(backend: &Backend, gw: SocketAddr) {
    let mut client = Conn::client(gw).await;
    for i in 0..10 {
        client.get_ok(&format!("/api/{i}")).await;
    }
    let response = client
        .exchange(post("Content-Length: 12", "payload-once"))
        .await;
    let seen = backend.seen();
    let posts = seen.iter().filter(|s| s.body == b"payload-once").count();
    if response.status == 200 {
        assert_eq!(posts, 1);
    } else {
        response.assert_error(502, "upstream_unavailable");
        assert!(posts <= 1, "the POST was sent {posts} times");
    }
}

#[tokio::test]
async fn stale_pooled_connections_closed_after_each_response() {
    let (backend, gw) = start(|seen, _| Reply::SendAndClose(ok(&seen.target))).await;
    gets_then_post(&backend, gw).await;
    let answered = backend.seen().iter().filter(|s| s.method == "GET").count();
    assert_eq!(answered, 10, "each GET reached the backend once");
}

/// The race a pool cannot see: the upstream closes a reused connection just as the request
/// arrives. A GET is sent again on a new connection; a POST is not (RFC 9110 section 9.2.2).
#[tokio::test]
async fn reused_connection_closed_on_arrival_retries_only_replayable_requests() {
    let (backend, gw) = start(|seen, nth| match nth {
        0 => Reply::Send(ok(&seen.target)),
        _ => Reply::Close,
    })
    .await;
    gets_then_post(&backend, gw).await;
    // Each GET but the first went to a reused connection (dropped), then to a new one.
    let gets = backend.seen().iter().filter(|s| s.method == "GET").count();
    assert_eq!(gets, 19);
}

#[tokio::test]
async fn garbage_from_upstream_is_502() {
    let (_backend, gw) = start(|_, _| Reply::Send(b"garbage\r\n\r\n".to_vec())).await;
    let mut client = Conn::client(gw).await;
    let response = client.exchange(get("/api/x")).await;
    response.assert_error(502, "upstream_unavailable");
}

#[tokio::test]
async fn silent_upstream_is_504_after_its_timeout() {
    let (_backend, gw) = start(|_, _| Reply::Silence).await;
    let mut client = Conn::client(gw).await;
    let response = client.exchange(get("/slow/x")).await;
    response.assert_error(504, "upstream_timeout");
}

// === headers ===

#[tokio::test]
async fn hop_by_hop_headers_stay_on_their_hop() {
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: x-resp-private\r\n\
        X-Resp-Private: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n\
        Upgrade: h2c\r\nTrailer: x-t\r\nX-Resp-Public: 1\r\ncontent-length: 2\r\n\r\nok";
    let (backend, gw) = start(|_, _| Reply::Send(RESPONSE.to_vec())).await;
    let mut client = Conn::client(gw).await;
    let request = "GET /api/h HTTP/1.1\r\nHost: gw.test\r\nConnection: keep-alive, x-private\r\n\
        X-Private: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\n\
        TE: trailers\r\nUpgrade: websocket\r\nX-Public: yes\r\n\r\n";
    let response = client.exchange(request).await;
    response.assert_ok("ok");
    let seen = &backend.seen()[0];
    for gone in "connection x-private keep-alive proxy-authorization te upgrade".split(' ') {
        assert_eq!(seen.header(gone), None, "{gone} went upstream: {seen:?}");
    }
    assert_eq!(seen.header("x-public"), Some("yes"));
    assert_eq!(seen.header("host"), Some("gw.test"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("gw.test"));
    let id = response.header("x-request-id").expect("a request id");
    assert!(!id.is_empty());
    assert_eq!(seen.header("x-request-id"), Some(id));

    let hop = "connection x-resp-private keep-alive proxy-authenticate upgrade trailer";
    for gone in hop.split(' ') {
        assert_eq!(
            response.header(gone),
            None,
            "{gone} came back: {response:?}"
        );
    }
    assert_eq!(response.header("x-resp-public"), Some("1"));
}

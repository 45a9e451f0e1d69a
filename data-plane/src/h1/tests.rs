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

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    time::{Instant, timeout},
};

use crate::{limits::HEADER_READ_TIMEOUT, server};

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
    server::serve_for_test(Some(&yaml), &[]).await
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

mod framing;
mod messages;
mod upstream;

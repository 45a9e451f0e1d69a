//! One client per protocol front end, each sending the same [`Request`] its own way.

pub(crate) mod tls;

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use super::PATIENCE;

/// A protocol the data plane serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    H2c,
    /// The same bytes as [`Protocol::Http1`], in TLS with ALPN `http/1.1`.
    Http1Tls,
    /// HTTP/2 in TLS with ALPN `h2`.
    H2Tls,
}

/// Where a data plane listens and what a client trusts there; cheap to clone into a task.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) plain: SocketAddr,
    pub(crate) tls: SocketAddr,
    pub(crate) client: Arc<ClientConfig>,
}

/// A request as a case writes it: the target exactly as it goes on the wire.
#[derive(Clone, Debug, Default)]
pub(crate) struct Request {
    pub(crate) method: &'static str,
    pub(crate) target: String,
    pub(crate) host: &'static str,
    pub(crate) headers: Vec<(String, String)>,
    /// Sent as these pieces; with `length`, a declared Content-Length, else chunked (HTTP/1) or
    /// DATA frames without a length (HTTP/2).
    pub(crate) body: Vec<Vec<u8>>,
    pub(crate) length: bool,
}

impl Request {
    /// This request with `{protocol}` in header values replaced by the protocol's name, so
    /// that a row with state (a rate limit's bucket) counts each protocol apart.
    pub(crate) fn for_protocol(&self, protocol: Protocol) -> Self {
        let mut request = self.clone();
        for (_, value) in &mut request.headers {
            *value = value.replace("{protocol}", &format!("{protocol:?}"));
        }
        request
    }
}

/// A response as the client saw it.
#[derive(Clone, Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Protocol {
    pub(crate) const ALL: [Protocol; 4] = [
        Protocol::Http1,
        Protocol::H2c,
        Protocol::Http1Tls,
        Protocol::H2Tls,
    ];

    /// HTTP/1 over both transports: for requests only raw HTTP/1 can express.
    pub(crate) const HTTP1: [Protocol; 2] = [Protocol::Http1, Protocol::Http1Tls];

    pub(crate) fn is_tls(self) -> bool {
        matches!(self, Self::Http1Tls | Self::H2Tls)
    }

    pub(crate) async fn send(self, target: &Target, request: &Request) -> Response {
        let sent = async {
            match self {
                Self::Http1 => http1(tcp(target.plain).await, request).await,
                Self::H2c => h2(tcp(target.plain).await, "http", request).await,
                Self::Http1Tls => {
                    let stream = tls::connect(target.tls, &target.client, b"http/1.1").await;
                    http1(stream, request).await
                }
                Self::H2Tls => {
                    let stream = tls::connect(target.tls, &target.client, b"h2").await;
                    h2(stream, "https", request).await
                }
            }
        };
        tokio::time::timeout(PATIENCE, sent)
            .await
            .unwrap_or_else(|_| panic!("{self:?}: no response to {request:?} in time"))
    }
}

async fn tcp(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// Raw bytes, so that a case can send what a well-behaved client library would not.
async fn http1(mut stream: impl AsyncRead + AsyncWrite + Unpin, request: &Request) -> Response {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\n",
        request.method, request.target, request.host
    );
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let total: usize = request.body.iter().map(Vec::len).sum();
    let mut bytes = Vec::new();
    if request.length {
        head.push_str(&format!("content-length: {total}\r\n"));
    } else if !request.body.is_empty() {
        head.push_str("transfer-encoding: chunked\r\n");
    }
    head.push_str("connection: close\r\n\r\n");
    bytes.extend_from_slice(head.as_bytes());
    for piece in &request.body {
        if request.length {
            bytes.extend_from_slice(piece);
        } else {
            bytes.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            bytes.extend_from_slice(piece);
            bytes.extend_from_slice(b"\r\n");
        }
    }
    if !request.length && !request.body.is_empty() {
        bytes.extend_from_slice(b"0\r\n\r\n");
    }
    // The gateway may answer (and close) before reading a body it refuses.
    let _ = stream.write_all(&bytes).await;
    let mut raw = Vec::new();
    // Over TLS a close without close_notify is an error; what came before it is kept all the same.
    let _ = stream.read_to_end(&mut raw).await;
    parse_http1(&raw).unwrap_or_else(|| {
        panic!(
            "HTTP/1: unparsable response {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse_http1(raw: &[u8]) -> Option<Response> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = response.parse(raw).ok()? else {
        return None;
    };
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let rest = &raw[len..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(Response {
        status: response.code?,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// HTTP/2 with hyper's client, one connection per request; prior knowledge on `stream`, which
/// is TCP (h2c) or TLS that negotiated `h2`. `scheme` is the `:scheme` a real client would send.
async fn h2(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    scheme: &str,
    request: &Request,
) -> Response {
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let mut builder = http::Request::builder()
        .method(request.method)
        .uri(format!("{scheme}://{}{}", request.host, request.target));
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let total: usize = request.body.iter().map(Vec::len).sum();
    if request.length {
        builder = builder.header("content-length", total.to_string());
    }
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = request
        .body
        .iter()
        .map(|piece| Ok(Frame::data(Bytes::from(piece.clone()))))
        .collect();
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let request = builder
        .body(body)
        .unwrap_or_else(|e| panic!("HTTP/2 cannot express {request:?}: {e}"));
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(error) => panic!("HTTP/2 request failed: {error}"),
    };
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    Response {
        status,
        headers,
        body,
    }
}

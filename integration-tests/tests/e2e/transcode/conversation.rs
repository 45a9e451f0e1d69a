//! Client streams sent as they come (`content-type: application/x-ndjson`): each line goes to
//! the backend as it arrives, so a bidirectional call's replies come back while the client is
//! still sending, from an HTTP/1.1 client (chunked) and an HTTP/2 one alike.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use integration_tests::{DataPlane, DataPlaneOpts, GrpcBackend, write_file};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::mpsc,
};

use super::{ECHO, echo_config};

/// A data plane whose `/v1` transcodes to the echo service of `backend`.
async fn gateway(backend: &GrpcBackend, dir: &tempfile::TempDir) -> DataPlane {
    let file = dir.path().join("gateway.yaml");
    write_file(&file, echo_config(ECHO, backend.addr()));
    let dp = DataPlane::start(DataPlaneOpts::standalone(&file)).await;
    dp.wait_ready().await;
    dp
}

/// An HTTP/1.1 connection with a chunked NDJSON request under way.
struct Chunked {
    tcp: TcpStream,
    seen: Vec<u8>,
}

impl Chunked {
    async fn post(addr: SocketAddr, path: &str) -> Self {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: gw.test\r\ncontent-type: application/x-ndjson\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        Self {
            tcp,
            seen: Vec::new(),
        }
    }

    async fn send(&mut self, piece: &str) {
        let chunk = format!("{:x}\r\n{piece}\r\n", piece.len());
        self.tcp.write_all(chunk.as_bytes()).await.unwrap();
    }

    async fn end(&mut self) {
        self.tcp.write_all(b"0\r\n\r\n").await.unwrap();
    }

    /// Reads until what came so far contains `text`; panics if the connection closes first.
    async fn read_until(&mut self, text: &str) -> String {
        let mut buf = [0u8; 4096];
        let wait = async {
            while !String::from_utf8_lossy(&self.seen).contains(text) {
                let n = self.tcp.read(&mut buf).await.unwrap();
                assert!(
                    n > 0,
                    "closed before {text:?}: {}",
                    String::from_utf8_lossy(&self.seen)
                );
                self.seen.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(integration_tests::patience(), wait)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {text:?} in time; so far: {}",
                    String::from_utf8_lossy(&self.seen)
                )
            });
        String::from_utf8_lossy(&self.seen).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bidirectional_call_over_http1_answers_each_line_before_the_next_is_sent() {
    let backend = GrpcBackend::start("talk").await;
    let dir = tempfile::tempdir().unwrap();
    let dp = gateway(&backend, &dir).await;

    let mut call = Chunked::post(dp.http_addr(), "/v1/echo:each").await;
    // A line in two pieces: nothing goes up until it is whole.
    call.send("{\"message\": ").await;
    call.send("\"one\"}\n").await;
    let so_far = call.read_until("one").await;
    assert!(so_far.starts_with("HTTP/1.1 200 OK\r\n"), "{so_far}");
    assert!(
        so_far.contains("content-type: application/x-ndjson"),
        "{so_far}"
    );
    // The second line is sent only now that the first reply has come.
    call.send("{\"message\": \"two\"}\n{\"message\": \"three\"}\n")
        .await;
    call.read_until("three").await;
    call.end().await;
    let all = call.read_until("\r\n0\r\n\r\n").await;
    let replies: Vec<Value> = all
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        replies,
        ["one", "two", "three"].map(|m| json!({ "message": m, "backend": "talk" }))
    );

    // The connection carries on: a unary call on it.
    call.tcp
        .write_all(
            b"POST /v1/echo HTTP/1.1\r\nhost: gw.test\r\ncontent-type: application/json\r\n\
              content-length: 16\r\n\r\n{\"message\": \"u\"}",
        )
        .await
        .unwrap();
    call.read_until("\"message\":\"u\"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stream_over_http1_is_sent_as_it_comes_and_a_bad_line_is_a_400() {
    let backend = GrpcBackend::start("join").await;
    let dir = tempfile::tempdir().unwrap();
    let dp = gateway(&backend, &dir).await;

    let mut call = Chunked::post(dp.http_addr(), "/v1/echo:join").await;
    call.send("{\"message\": \"c\"}\n").await;
    call.send("{\"message\": \"d\"}").await;
    call.end().await;
    let all = call.read_until("c,d").await;
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");

    // The second line is not a message of the method: 400, as a whole body's would be.
    let mut call = Chunked::post(dp.http_addr(), "/v1/echo:join").await;
    call.send("{\"message\": \"e\"}\n{\"message\": 1}\n").await;
    let all = call.read_until("\r\n\r\n{").await;
    assert!(all.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{all}");
    let body = call.read_until("}").await;
    assert!(body.contains("\"code\":3"), "{body}");
    assert!(body.contains("message 1 does not fit"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bidirectional_call_over_http2_answers_each_line_before_the_next_is_sent() {
    let backend = GrpcBackend::start("talk2").await;
    let dir = tempfile::tempdir().unwrap();
    let dp = gateway(&backend, &dir).await;

    let conversation = async {
        let tcp = TcpStream::connect(dp.http_addr()).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let (lines, rx) = mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(4);
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        let request = http::Request::post("http://gw.test/v1/echo:each")
            .header("content-type", "application/x-ndjson")
            .body(body)
            .unwrap();
        let line = |m: &str| {
            Ok(Frame::data(Bytes::from(format!(
                "{{\"message\":\"{m}\"}}\n"
            ))))
        };
        lines.send(line("first")).await.unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let mut replies = response.into_body();
        let mut next = async || {
            let frame = replies.frame().await.expect("a reply").unwrap();
            serde_json::from_slice::<Value>(&frame.into_data().unwrap()).unwrap()
        };
        assert_eq!(next().await["message"], "first");
        lines.send(line("second")).await.unwrap();
        assert_eq!(next().await["message"], "second");
        drop(lines);
        // The replies end with the requests (what else comes is no reply: trailers at most).
        while let Some(frame) = replies.frame().await {
            let frame = frame.unwrap();
            assert!(
                frame.data_ref().is_none_or(|data| data.is_empty()),
                "a reply after the last request: {frame:?}"
            );
        }
    };
    tokio::time::timeout(integration_tests::patience(), conversation)
        .await
        .expect("the conversation ends in time");
}

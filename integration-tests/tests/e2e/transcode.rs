//! REST/JSON to gRPC with the real data plane and a real tonic service: the ProtoSet carries the
//! service's `.proto` with `google.api.http` rules (the backend itself knows nothing of them),
//! the route's GrpcTranscode filter exposes it, and HTTP/1.1 clients call it with JSON.

use bytes::Bytes;
use http::Method;
use integration_tests::{DataPlane, DataPlaneOpts, GrpcBackend, request, write_file};
use prost::Message as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{docs, upstream_with};

#[path = "transcode/conversation.rs"]
mod conversation;

/// The backend's `proto/echo.proto`, with HTTP rules added.
pub(super) const ECHO: &str = r#"syntax = "proto3";
package echo.v1;
import "google/api/annotations.proto";
service Echo {
  rpc Unary(EchoRequest) returns (EchoReply) {
    option (google.api.http) = {
      post: "/v1/echo" body: "*"
      additional_bindings { get: "/v1/echo/{message}" }
      additional_bindings { get: "/v1/echo" }
    };
  }
  rpc ServerStream(EchoRequest) returns (stream EchoReply) {
    option (google.api.http) = { get: "/v1/echo:stream" };
  }
  rpc ClientStream(stream EchoRequest) returns (EchoReply) {
    option (google.api.http) = { post: "/v1/echo:join" body: "*" };
  }
  rpc Bidi(stream EchoRequest) returns (stream EchoReply) {
    option (google.api.http) = { post: "/v1/echo:each" body: "*" };
  }
}
message EchoRequest { string message = 1; uint32 delay_ms = 2; uint32 count = 3; Failure fail = 4; }
message EchoReply { string message = 1; string backend = 2; }
message Failure { int32 code = 1; string message = 2; bytes details = 3; string trailer = 4; }
"#;

/// google.rpc.Status, as `grpc-status-details-bin` carries it.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// echo.v1.EchoReply, to put in the details.
#[derive(Clone, PartialEq, prost::Message)]
struct EchoReply {
    #[prost(string, tag = "1")]
    message: String,
    #[prost(string, tag = "2")]
    backend: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_calls_become_grpc_calls_and_grpc_statuses_become_http_errors() {
    let backend = GrpcBackend::start("rest").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    write_file(
        &file,
        docs(&[
            proto_set(ECHO),
            upstream_with("echo", &[backend.addr()], "  protocol: H2C\n"),
            "kind: Route\nname: rest\nspec:\n  rules:\n    - matches: [{ path: { type: PathPrefix, value: /v1 } }]\n      filters:\n        - type: GrpcTranscode\n          grpcTranscode: { protoSet: echo, services: [echo.v1.Echo], responseHeaders: [x-echo-backend, x-echo-trailer] }\n      backendRefs: [{ name: echo }]\n".to_owned(),
        ]),
    );
    let dp = DataPlane::start(DataPlaneOpts::standalone(&file)).await;
    dp.wait_ready().await;
    let call = |method: Method, path: &str, body: &str| {
        let url = dp.url(path);
        let body = Bytes::from(body.to_owned());
        async move {
            let response = request(method, &url, &[("content-type", "application/json")], body)
                .await
                .unwrap();
            let json: Value = serde_json::from_slice(&response.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", response.text()));
            (response.status, json)
        }
    };

    // A body, a path variable, a query.
    let first = call(Method::POST, "/v1/echo", r#"{"message": "hi"}"#).await;
    assert_eq!(
        first,
        (200, json!({ "message": "hi", "backend": "rest" })),
        "{}",
        dp.process().log_tail()
    );
    assert_eq!(
        call(Method::GET, "/v1/echo/hello%20there", "").await,
        (200, json!({ "message": "hello there", "backend": "rest" }))
    );
    assert_eq!(
        call(Method::GET, "/v1/echo?message=q&delayMs=0", "").await,
        (200, json!({ "message": "q", "backend": "rest" }))
    );
    assert_eq!(backend.unary_calls(), 3);

    // The same call from an HTTP/2 client (h2c, prior knowledge): the other front end.
    let (h2_status, h2_json) = h2c_post(dp.http_addr(), "/v1/echo", r#"{"message": "h2"}"#).await;
    assert_eq!(
        (h2_status, h2_json),
        (200, json!({ "message": "h2", "backend": "rest" }))
    );
    let (h2_status, h2_json) = h2c_post(dp.http_addr(), "/v1/echo", r#"{"message": 5}"#).await;
    assert_eq!((h2_status, &h2_json["code"]), (400, &json!(3)), "{h2_json}");
    assert_eq!(backend.unary_calls(), 4);
    // Metadata the filter lists comes back as headers: initial metadata, and trailers.
    let unary = request(
        Method::POST,
        &dp.url("/v1/echo"),
        &[],
        Bytes::from_static(br#"{"message": "m"}"#),
    )
    .await
    .unwrap();
    assert_eq!(unary.header("x-echo-backend"), Some("rest"));
    let failed = request(
        Method::POST,
        &dp.url("/v1/echo"),
        &[],
        Bytes::from_static(br#"{"fail": {"code": 9, "message": "no", "trailer": "t1"}}"#),
    )
    .await
    .unwrap();
    assert_eq!(failed.status, 400, "FAILED_PRECONDITION");
    assert_eq!(failed.header("x-echo-trailer"), Some("t1"));

    // Bad requests: 400, and the backend never called.
    for body in [
        r#"{"message": 5}"#,
        r#"{"nope": 1}"#,
        r#"{"delayMs": -1}"#,
        "{not json",
    ] {
        let (status, json) = call(Method::POST, "/v1/echo", body).await;
        assert_eq!(status, 400, "{body}: {json}");
        assert_eq!(json["code"], 3, "{json}");
    }
    let (status, _) = call(Method::GET, "/v1/echo?count=many", "").await;
    assert_eq!(status, 400);
    assert_eq!(
        backend.unary_calls(),
        6,
        "no bad request reached the backend"
    );

    // A gRPC error: its HTTP status, the google.rpc.Status body, details decoded.
    let detail = EchoReply {
        message: "detail".into(),
        backend: String::new(),
    };
    let details = RpcStatus {
        code: 5,
        message: "no such echo".into(),
        details: vec![prost_types::Any {
            type_url: "type.googleapis.com/echo.v1.EchoReply".into(),
            value: detail.encode_to_vec(),
        }],
    };
    let fail = json!({ "message": "x", "fail": {
        "code": 5,
        "message": "no such echo",
        "details": base64(&details.encode_to_vec()),
    } });
    assert_eq!(
        call(Method::POST, "/v1/echo", &fail.to_string()).await,
        (
            404,
            json!({ "code": 5, "message": "no such echo", "details": [
            { "@type": "type.googleapis.com/echo.v1.EchoReply", "message": "detail" }
        ] })
        )
    );

    // A server stream: one JSON object a line, or Server-Sent Events; a status after the
    // replies ends the stream with an error object.
    let url = dp.url("/v1/echo:stream?message=s&count=3");
    let lines = request(Method::GET, &url, &[], Bytes::new()).await.unwrap();
    assert_eq!(lines.status, 200);
    assert_eq!(lines.header("content-type"), Some("application/x-ndjson"));
    let replies: Vec<Value> = lines
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        replies,
        [
            json!({ "message": "s-0", "backend": "rest" }),
            json!({ "message": "s-1", "backend": "rest" }),
            json!({ "message": "s-2", "backend": "rest" }),
        ]
    );
    let events = request(
        Method::GET,
        &url,
        &[("accept", "text/event-stream")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(events.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        events.text(),
        "data: {\"message\":\"s-0\",\"backend\":\"rest\"}\n\ndata: {\"message\":\"s-1\",\"backend\":\"rest\"}\n\ndata: {\"message\":\"s-2\",\"backend\":\"rest\"}\n\n"
    );
    let failing = dp.url("/v1/echo:stream?message=f&count=1&fail.code=10&fail.message=stop");
    let ended = request(Method::GET, &failing, &[], Bytes::new())
        .await
        .unwrap();
    let lines: Vec<Value> = ended
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            json!({ "message": "f-0", "backend": "rest" }),
            json!({ "error": { "code": 10, "message": "stop", "details": [] } }),
        ]
    );

    // Replies reach the client as they are sent: the first is read while the backend still
    // waits a second before the next (a gateway that gathered them would send both at once).
    tokio::time::timeout(integration_tests::patience(), async {
        let mut tcp = tokio::net::TcpStream::connect(dp.http_addr())
            .await
            .unwrap();
        tcp.write_all(
            b"GET /v1/echo:stream?message=slow&count=2&delayMs=1000 HTTP/1.1\r\nhost: x\r\n\r\n",
        )
        .await
        .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("slow-0") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        let so_far = String::from_utf8_lossy(&seen).into_owned();
        assert!(
            !so_far.contains("slow-1"),
            "both replies came together: {so_far}"
        );
        while !String::from_utf8_lossy(&seen).contains("\r\n0\r\n\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&seen).contains("slow-1"));
    })
    .await
    .expect("the slow stream ends in time");

    // Client streams from a JSON array or NDJSON; a bidirectional call answers line by line.
    assert_eq!(
        call(
            Method::POST,
            "/v1/echo:join",
            r#"[{"message": "a"}, {"message": "b"}]"#
        )
        .await,
        (200, json!({ "message": "a,b", "backend": "rest" }))
    );
    assert_eq!(
        call(
            Method::POST,
            "/v1/echo:join",
            "{\"message\": \"c\"}\n{\"message\": \"d\"}\n"
        )
        .await,
        (200, json!({ "message": "c,d", "backend": "rest" }))
    );
    let (status, json) = call(Method::POST, "/v1/echo:join", r#"[{"message": 1}]"#).await;
    assert_eq!((status, &json["code"]), (400, &json!(3)), "{json}");
    let each = request(
        Method::POST,
        &dp.url("/v1/echo:each"),
        &[],
        Bytes::from_static(br#"[{"message": "x"}, {"message": "y"}]"#),
    )
    .await
    .unwrap();
    let replies: Vec<Value> = each
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        replies,
        [
            json!({ "message": "x", "backend": "rest" }),
            json!({ "message": "y", "backend": "rest" })
        ]
    );

    // No binding for the path: the gateway's own 404, in the backend's error shape
    // (google.rpc.Status JSON: NOT_FOUND, as its status says), as every gateway error on this
    // route.
    let (status, json) = call(Method::DELETE, "/v1/echo", "").await;
    assert_eq!(
        (status, json),
        (
            404,
            json!({ "code": 5, "message": "no route matches the request", "details": [] })
        )
    );
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// The ProtoSet `echo`, holding `proto` as `echo/v1/echo.proto`.
fn proto_set(proto: &str) -> String {
    format!(
        "kind: ProtoSet\nname: echo\nspec:\n  files:\n    echo/v1/echo.proto: {}\n",
        serde_json::to_string(proto).unwrap()
    )
}

/// The ProtoSet `proto`, an H2C upstream at `backend`, and the route of `/v1` to it (the
/// hot-swap test's, and the streamed calls').
pub(super) fn echo_config(proto: &str, backend: std::net::SocketAddr) -> String {
    docs(&[
        proto_set(proto),
        upstream_with("echo", &[backend], "  protocol: H2C\n"),
        "kind: Route\nname: rest\nspec:\n  rules:\n    - matches: [{ path: { type: PathPrefix, value: /v1 } }]\n      filters:\n        - type: GrpcTranscode\n          grpcTranscode: { protoSet: echo, services: [echo.v1.Echo] }\n      backendRefs: [{ name: echo }]\n".to_owned(),
    ])
}

/// A ProtoSet updated (a method's new binding, and a field the backend does not know) under
/// steady load: no request fails, and the new binding is served after the swap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proto_set_updated_under_load_loses_no_request() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    };

    let backend = GrpcBackend::start("swap").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    write_file(&file, echo_config(ECHO, backend.addr()));
    let dp = DataPlane::start(DataPlaneOpts::standalone(&file)).await;
    dp.wait_ready().await;

    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (url, stop, served, failed) = (
            dp.url("/v1/echo"),
            stop.clone(),
            served.clone(),
            failed.clone(),
        );
        load.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let body = Bytes::from_static(br#"{"message": "load"}"#);
                match request(Method::POST, &url, &[], body).await {
                    Ok(response) if response.status == 200 => {
                        served.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    integration_tests::eventually("load flows", || {
        let served = served.load(Ordering::Relaxed);
        async move {
            anyhow::ensure!(served >= 20, "{served} served");
            Ok(())
        }
    })
    .await;

    // A new binding for Unary and a new request field (unknown to the backend, which skips it).
    let updated = ECHO
        .replace(
            "additional_bindings { get: \"/v1/echo\" }",
            "additional_bindings { get: \"/v1/echo\" }\n      additional_bindings { get: \"/v1/shout/{message}\" }",
        )
        .replace("Failure fail = 4; }", "Failure fail = 4; string tone = 9; }");
    assert_ne!(updated, ECHO);
    write_file(&file, echo_config(&updated, backend.addr()));
    let shout = dp.url("/v1/shout/hey?tone=loud");
    integration_tests::eventually("the new binding is served", || {
        let shout = shout.clone();
        async move {
            let response = request(Method::GET, &shout, &[], Bytes::new()).await?;
            anyhow::ensure!(response.status == 200, "status {}", response.status);
            anyhow::ensure!(
                response.text().contains("\"message\":\"hey\""),
                "{}",
                response.text()
            );
            Ok(())
        }
    })
    .await;
    let before = served.load(Ordering::Relaxed);
    integration_tests::eventually("load goes on after the swap", || {
        let served = served.load(Ordering::Relaxed);
        async move {
            anyhow::ensure!(served >= before + 20, "{served} served");
            Ok(())
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the swap"
    );
}

/// Every kind of field through a real gRPC backend that answers each request with itself: what
/// a client sends by the proto3 JSON mapping comes back in its canonical form, and requests that
/// do not fit are answered 400 without a backend call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_through_a_real_grpc_backend() {
    let backend = GrpcBackend::start("types").await;
    // The backend's proto, with an HTTP rule for the gateway.
    let proto = include_str!("../../proto/types.proto")
        .replace(
            "import \"google/protobuf/any.proto\";",
            "import \"google/api/annotations.proto\";\nimport \"google/protobuf/any.proto\";",
        )
        .replace(
            "rpc Echo(Everything) returns (Everything);",
            "rpc Echo(Everything) returns (Everything) { option (google.api.http) = { post: \"/v1/types\" body: \"*\" }; }",
        );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    write_file(
        &file,
        docs(&[
            format!(
                "kind: ProtoSet\nname: types\nspec:\n  files:\n    types/v1/types.proto: {}\n",
                serde_json::to_string(&proto).unwrap()
            ),
            upstream_with("types", &[backend.addr()], "  protocol: H2C\n"),
            "kind: Route\nname: types\nspec:\n  rules:\n    - matches: [{ path: { type: PathPrefix, value: /v1 } }]\n      filters:\n        - type: GrpcTranscode\n          grpcTranscode: { protoSet: types, services: [types.v1.Types] }\n      backendRefs: [{ name: types }]\n".to_owned(),
        ]),
    );
    let dp = DataPlane::start(DataPlaneOpts::standalone(&file)).await;
    dp.wait_ready().await;
    let post = |body: String| {
        let url = dp.url("/v1/types");
        async move {
            let response = request(Method::POST, &url, &[], Bytes::from(body))
                .await
                .unwrap();
            let json: Value = serde_json::from_slice(&response.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", response.text()));
            (response.status, json)
        }
    };

    // (what the client sends, what comes back)
    let table = [
        (
            json!({ "i32": -1, "i64": "-9007199254740993", "u32": 4294967295u32, "u64": "18446744073709551615" }),
            json!({ "i32": -1, "i64": "-9007199254740993", "u32": 4294967295u32, "u64": "18446744073709551615" }),
        ),
        (
            json!({ "s32": -2, "s64": -3, "f32": 4, "f64": "5", "sf32": -6, "sf64": "-7" }),
            json!({ "s32": -2, "s64": "-3", "f32": 4, "f64": "5", "sf32": -6, "sf64": "-7" }),
        ),
        (
            json!({ "fl": "NaN", "db": "-Infinity", "b": true, "s": "text", "by": "_-8" }),
            json!({ "fl": "NaN", "db": "-Infinity", "b": true, "s": "text", "by": "/+8=" }),
        ),
        (
            json!({ "genre": 2, "inner": { "name": "a" }, "inners": [{ "name": "b" }], "numbers": [1, "2"] }),
            json!({ "genre": "HISTORY", "inner": { "name": "a" }, "inners": [{ "name": "b" }], "numbers": ["1", "2"] }),
        ),
        (
            json!({ "by_name": { "k": { "name": "v" } }, "maybe": 0, "display": "proto name in", "room": "A" }),
            json!({ "byName": { "k": { "name": "v" } }, "maybe": 0, "title": "proto name in", "room": "A" }),
        ),
        (
            json!({ "at": "2026-12-01T10:00:00.5Z", "took": "1.5s", "mask": "i32,byName" }),
            json!({ "at": "2026-12-01T10:00:00.500Z", "took": "1.500s", "mask": "i32,byName" }),
        ),
        (
            json!({ "st": { "a": [1, "x", null, true] }, "value": { "n": 1 }, "list": [1, "y"] }),
            json!({ "st": { "a": [1.0, "x", null, true] }, "value": { "n": 1.0 }, "list": [1.0, "y"] }),
        ),
        (
            json!({ "wrapped": "42", "wrappedS": "w", "empty": {},
                    "any": { "@type": "type.googleapis.com/types.v1.Inner", "name": "in-any" } }),
            json!({ "wrapped": "42", "wrappedS": "w", "empty": {},
                    "any": { "@type": "type.googleapis.com/types.v1.Inner", "name": "in-any" } }),
        ),
    ];
    for (sent, expected) in &table {
        assert_eq!(
            post(sent.to_string()).await,
            (200, expected.clone()),
            "sent {sent}"
        );
    }
    assert_eq!(backend.unary_calls(), table.len());

    for bad in [
        "{not json",
        r#"{"i32": "ten"}"#,
        r#"{"i32": 2147483648}"#,
        r#"{"u32": -1}"#,
        r#"{"genre": "POETRY"}"#,
        r#"{"at": "yesterday"}"#,
        r#"{"took": "soon"}"#,
        r#"{"room": "A", "floor": 2}"#,
        r#"{"unknown": 1}"#,
        r#"{"any": {"@type": "type.googleapis.com/no.Such"}}"#,
    ] {
        let (status, json) = post(bad.to_owned()).await;
        assert_eq!((status, &json["code"]), (400, &json!(3)), "{bad}: {json}");
    }
    assert_eq!(
        backend.unary_calls(),
        table.len(),
        "no bad request reached the backend"
    );
}

/// A JSON POST over h2c (HTTP/2 with prior knowledge): the status and the JSON answer.
async fn h2c_post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, Value) {
    use http_body_util::{BodyExt as _, Full};

    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let request = http::Request::post(format!("http://gw.test{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    };
    tokio::time::timeout(integration_tests::patience(), exchange)
        .await
        .expect("answered in time")
}

/// Policies run before the transcoder (nothing reaches the backend when one refuses), and
/// their response headers (CORS, RateLimit) are on the transcoded answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_run_before_transcoding_and_their_headers_reach_its_answers() {
    let backend = GrpcBackend::start("guarded").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    write_file(
        &file,
        docs(&[
            proto_set(ECHO),
            upstream_with("echo", &[backend.addr()], "  protocol: H2C\n"),
            "kind: Consumer\nname: acme\nspec:\n  apiKeys: [{ key: acme-key-1 }]\n".to_owned(),
            "kind: Policy\nname: keys\nspec:\n  apiKey: { from: [{ header: x-api-key }] }\n".to_owned(),
            "kind: Policy\nname: two\nspec:\n  rateLimit: { limits: [{ requests: 2, per: 3600s }], key: Consumer }\n".to_owned(),
            "kind: Policy\nname: web\nspec:\n  cors: { allowOrigins: [https://app.test] }\n".to_owned(),
            "kind: Route\nname: rest\nspec:\n  policies: [two, web, keys]\n  rules:\n    - matches: [{ path: { type: PathPrefix, value: /v1 } }]\n      filters:\n        - type: GrpcTranscode\n          grpcTranscode: { protoSet: echo, services: [echo.v1.Echo] }\n      backendRefs: [{ name: echo }]\n".to_owned(),
        ]),
    );
    let dp = DataPlane::start(DataPlaneOpts::standalone(&file)).await;
    dp.wait_ready().await;
    let call = |key: Option<&'static str>| {
        let url = dp.url("/v1/echo");
        async move {
            let mut headers = vec![
                ("content-type", "application/json"),
                ("origin", "https://app.test"),
            ];
            headers.extend(key.map(|k| ("x-api-key", k)));
            request(
                Method::POST,
                &url,
                &headers,
                Bytes::from_static(br#"{"message":"hi"}"#),
            )
            .await
            .unwrap()
        }
    };

    let refused = call(None).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    // The gateway's error in the shape the route's clients get from the backend.
    assert_eq!(refused.json().unwrap()["code"], 16, "{}", refused.text());
    assert_eq!(
        backend.unary_calls(),
        0,
        "a refused request reached the backend"
    );

    // Two per hour: one every 1800 s, both at once.
    for limit in ["\"two\";r=1;t=1800", "\"two\";r=0;t=3600"] {
        let answered = call(Some("acme-key-1")).await;
        assert_eq!(answered.status, 200, "{}", answered.text());
        assert_eq!(answered.json().unwrap()["message"], "hi");
        assert_eq!(
            answered.header("ratelimit"),
            Some(limit),
            "the RateLimit header on a transcoded answer"
        );
        assert_eq!(
            answered.header("access-control-allow-origin"),
            Some("https://app.test")
        );
    }
    let limited = call(Some("acme-key-1")).await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert!(limited.header("retry-after").is_some());
    assert_eq!(backend.unary_calls(), 2);
}

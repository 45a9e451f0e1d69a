//! Framing, smuggling and limits: refused before anything goes upstream.

use super::*;

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

/// A refused request whose body is still arriving, from a client that reads only after it
/// has sent everything (as most do): it gets the error and a clean close, and the body goes
/// nowhere. (Whether an unread body would have turned the close into a reset depends on socket
/// buffer sizes; the gateway drains it either way, see `linger`.)
#[tokio::test]
async fn refused_body_is_drained_so_the_error_arrives() {
    let (backend, gw) = echo().await;
    let mut client = Conn::client(gw).await;
    let body = vec![b'x'; 512 * 1024];
    let head = format!(
        "POST /nowhere HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    client.send(head).await;
    timeout(PATIENCE, client.stream.write_all(&body))
        .await
        .expect("the body is taken in time")
        .expect("the gateway reads the body instead of resetting the connection");
    let mut response = Vec::new();
    timeout(PATIENCE, client.stream.read_to_end(&mut response))
        .await
        .expect("the gateway closes in time")
        .expect("a clean close, not a reset");
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 404 "), "{text}");
    assert!(text.contains("\"route_not_found\""), "{text}");
    assert!(backend.seen().is_empty());
}

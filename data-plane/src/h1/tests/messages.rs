//! HTTP/1.0, Expect, pipelining, HEAD, chunked bodies, absolute-form targets.

use super::*;

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

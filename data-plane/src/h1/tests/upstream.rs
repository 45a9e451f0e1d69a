//! Upstream connections (pooling, stale connections, failures) and hop-by-hop headers.

use super::*;

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

//! RFC 9113 conformance over raw frames on real TCP: what hyper (in `super`) never sends, and
//! the exact frames and error codes the server must answer with.

mod client;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::watch;

use self::client::*;
use crate::server;

/// A gateway routing everything to a backend of its own: `/hold` answers once `release` turns
/// true, `/len` answers with the length of the body it received, `/bytes/N` with N bytes of
/// `pattern`, anything else with `ok`.
struct Gateway {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    release: watch::Sender<bool>,
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

async fn gateway() -> Gateway {
    let (release, held) = watch::channel(false);
    let backend = crate::test_backend::serve(move |req: Request<Incoming>| {
        let mut held = held.clone();
        async move {
            let path = req.uri().path().to_owned();
            let body = if path == "/hold" {
                let _ = held.wait_for(|released| *released).await;
                b"held".to_vec()
            } else if path == "/len" {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                body.len().to_string().into_bytes()
            } else if let Some(n) = path.strip_prefix("/bytes/") {
                pattern(n.parse().unwrap())
            } else {
                b"ok".to_vec()
            };
            Response::new(Full::new(Bytes::from(body)))
        }
    })
    .await;
    let yaml = format!(
        "kind: Upstream\nname: b\nspec: {{ endpoints: [{{ address: '{backend}' }}] }}\n---\nkind: Route\nname: r\nspec: {{ rules: [{{ backendRefs: [{{ name: b }}] }}] }}\n"
    );
    let (addr, stop) = server::serve_for_test(Some(&yaml), &[]).await;
    Gateway {
        addr,
        stop,
        release,
    }
}

#[tokio::test]
async fn settings_come_first_and_settings_and_ping_are_acknowledged() {
    let gw = gateway().await;
    let mut c = Client::connect(gw.addr).await;
    let mut hello = PREFACE.to_vec();
    hello.extend(settings(&[(INITIAL_WINDOW_SIZE, 100_000)]));
    c.send(&hello).await;
    let first = c.expect().await;
    assert!(
        first.is(SETTINGS, 0) && !first.has(ACK) && first.len % 6 == 0,
        "the server's preface is SETTINGS (RFC 9113 §3.4): {first:?}"
    );
    c.send(&frame(SETTINGS, ACK, 0, &[])).await;
    loop {
        let next = c.expect().await;
        if next.is(SETTINGS, 0) {
            assert!(next.has(ACK) && next.len == 0, "{next:?}");
            break;
        }
        assert!(next.is(WINDOW_UPDATE, 0), "before the ACK: {next:?}");
    }
    c.send(&frame(PING, 0, 0, b"h2-ping!")).await;
    let pong = c.expect().await;
    assert!(pong.is(PING, 0) && pong.has(ACK), "{pong:?}");
    assert_eq!(pong.payload, b"h2-ping!");
}

#[tokio::test]
async fn a_get_is_answered_with_headers_then_data_to_end_stream() {
    let gw = gateway().await;
    let mut c = Client::open(gw.addr, &[]).await;
    c.get(1, "/bytes/3000").await;
    let response = c.response(1).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, pattern(3000));
    let frames = &response.frames;
    assert!(frames.len() > 1, "{frames:?}");
    assert_eq!(frames[0], (HEADERS, END_HEADERS), "{frames:?}");
    assert!(frames[1..].iter().all(|f| f.0 == DATA), "{frames:?}");
    assert!(frames.last().unwrap().1 & END_STREAM != 0, "{frames:?}");
}

/// A malformed request (RFC 9113 §8.1.1) is a stream error PROTOCOL_ERROR: RST_STREAM on its
/// stream, perhaps after a response, and the connection goes on serving the next stream.
async fn assert_stream_error(block: Block) {
    let gw = gateway().await;
    let mut c = Client::open(gw.addr, &[]).await;
    c.send(&header_frames(1, &block.0, true)).await;
    let before = c.ping(*b"malform!").await;
    let on_1: Vec<_> = before.iter().filter(|f| f.stream == 1).collect();
    let reset = on_1.iter().position(|f| f.kind == RST_STREAM);
    match reset {
        Some(at) => {
            assert_eq!(on_1[at].code(), PROTOCOL_ERROR, "{on_1:?}");
            assert_eq!(at + 1, on_1.len(), "nothing after RST_STREAM: {on_1:?}");
            // A response may come first, but not one that closes the stream: nothing may be
            // sent on a closed stream (§5.1), the RST_STREAM included.
            let response = &on_1[..at];
            assert!(
                response
                    .iter()
                    .all(|f| matches!(f.kind, HEADERS | DATA) && !f.has(END_STREAM)),
                "{on_1:?}"
            );
        }
        None => panic!("no RST_STREAM PROTOCOL_ERROR on stream 1, only {on_1:?}"),
    }
    assert!(
        !before.iter().any(|f| f.kind == GOAWAY),
        "a stream error, not a connection error: {before:?}"
    );
    c.get(3, "/").await;
    let next = c.response(3).await;
    assert_eq!((next.status, &next.body[..]), (200, &b"ok"[..]));
}

#[tokio::test]
async fn an_uppercase_header_name_is_a_stream_error() {
    assert_stream_error(Block::get("/").field(b"X-Upper", b"1")).await;
}

#[tokio::test]
async fn a_connection_header_is_a_stream_error() {
    assert_stream_error(Block::get("/").field(b"connection", b"keep-alive")).await;
}

#[tokio::test]
async fn a_missing_path_is_a_stream_error() {
    let block = Block::default().indexed(2).indexed(6).named(1, b"gw.test");
    assert_stream_error(block).await;
}

#[tokio::test]
async fn a_pseudo_header_after_a_regular_one_is_a_stream_error() {
    let block = Block::default()
        .indexed(2)
        .indexed(6)
        .field(b"x-first", b"1")
        .named(4, b"/");
    assert_stream_error(block).await;
}

#[tokio::test]
async fn te_other_than_trailers_is_a_stream_error() {
    assert_stream_error(Block::get("/").field(b"te", b"gzip")).await;
}

#[tokio::test]
async fn a_content_length_the_data_does_not_match_is_a_stream_error() {
    // 28 is content-length in the static table; END_STREAM on HEADERS means no DATA follows.
    assert_stream_error(Block::post("/").named(28, b"5")).await;
}

#[tokio::test]
async fn a_header_list_over_the_limit_is_answered_431() {
    let gw = gateway().await;
    let mut c = Client::open(gw.addr, &[]).await;
    // Over the 64 KiB list limit, under the 128 KiB block limit.
    let block = Block::get("/").field(b"x-big", &vec![b'v'; 70_000]);
    c.send(&header_frames(1, &block.0, true)).await;
    let response = c.response(1).await;
    assert_eq!(response.status, 431);
    c.get(3, "/").await;
    assert_eq!(c.response(3).await.status, 200);
    assert!(!c.stray.iter().any(|f| f.kind == GOAWAY), "{:?}", c.stray);
}

#[tokio::test]
async fn a_header_block_over_twice_the_limit_is_enhance_your_calm() {
    let gw = gateway().await;
    let mut c = Client::open(gw.addr, &[]).await;
    let block = Block::get("/").field(b"x-big", &vec![b'v'; 140_000]);
    let goaway = c.flood_to_goaway(&header_frames(1, &block.0, true)).await;
    assert_eq!(goaway.code(), ENHANCE_YOUR_CALM, "{goaway:?}");
    c.expect_closed().await;
}

/// Sends `bytes` after the handshake and returns the GOAWAY's code, checking that nothing was
/// said on a stream before it and that the connection closes after it.
async fn connection_error(bytes: &[u8]) -> u32 {
    let gw = gateway().await;
    let mut c = Client::open(gw.addr, &[]).await;
    c.send(bytes).await;
    let goaway = c.goaway().await;
    assert!(c.stray.iter().all(|f| f.stream == 0), "{:?}", c.stray);
    c.expect_closed().await;
    goaway.code()
}

#[tokio::test]
async fn a_frame_before_settings_is_a_protocol_error() {
    let gw = gateway().await;
    let mut c = Client::connect(gw.addr).await;
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(PING, 0, 0, &[0; 8]));
    c.send(&hello).await;
    let goaway = c.goaway().await;
    assert_eq!(goaway.code(), PROTOCOL_ERROR, "{goaway:?}");
    assert!(
        !c.stray.iter().any(|f| f.kind == PING),
        "the PING is not answered: {:?}",
        c.stray
    );
    c.expect_closed().await;
}

#[tokio::test]
async fn data_on_stream_zero_is_a_protocol_error() {
    let code = connection_error(&frame(DATA, 0, 0, b"x")).await;
    assert_eq!(code, PROTOCOL_ERROR);
}

#[tokio::test]
async fn a_frame_over_the_max_frame_size_is_a_frame_size_error() {
    // A frame that carries a header block: a connection error, not a stream error (§4.2).
    // The value's length takes 3 bytes of HPACK integer at this size.
    let pad = MAX_FRAME + 1 - Block::get("/").field(b"x-pad", &[]).0.len() - 2;
    let block = Block::get("/").field(b"x-pad", &vec![b'v'; pad]).0;
    assert_eq!(block.len(), MAX_FRAME + 1);
    let code = connection_error(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block)).await;
    assert_eq!(code, FRAME_SIZE_ERROR);
}

#[tokio::test]
async fn a_zero_connection_window_increment_is_a_protocol_error() {
    let code = connection_error(&window_update(0, 0)).await;
    assert_eq!(code, PROTOCOL_ERROR);
}

#[tokio::test]
async fn an_undecodable_header_block_is_a_compression_error() {
    // Indexed field 0: no such entry (RFC 7541 §6.1).
    let code = connection_error(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x80])).await;
    assert_eq!(code, COMPRESSION_ERROR);
}

#[tokio::test]
async fn an_even_stream_id_is_a_protocol_error() {
    let code = connection_error(&header_frames(2, &Block::get("/").0, true)).await;
    assert_eq!(code, PROTOCOL_ERROR);
}

#[tokio::test]
async fn an_interrupted_header_block_is_a_protocol_error() {
    let mut bytes = frame(HEADERS, END_STREAM, 1, &Block::get("/").0);
    bytes.extend(frame(PING, 0, 0, &[0; 8]));
    let code = connection_error(&bytes).await;
    assert_eq!(code, PROTOCOL_ERROR);
}

/// Reads DATA on stream 1 until `total` bytes have come (never more), refusing anything else
/// but connection-level frames; true if the stream ended.
async fn data_until(c: &mut Client, got: &mut Vec<u8>, total: usize) -> bool {
    while got.len() < total {
        let next = c.expect().await;
        if !next.is(DATA, 1) {
            assert_eq!(next.stream, 0, "{next:?}");
            continue;
        }
        assert!(next.len <= MAX_FRAME, "{next:?}");
        got.extend_from_slice(&next.payload);
        assert!(
            got.len() <= total,
            "{} bytes past a window of {total}",
            got.len()
        );
        if next.has(END_STREAM) {
            return true;
        }
    }
    false
}

fn no_data(frames: &[Frame]) {
    assert!(
        !frames.iter().any(|f| f.kind == DATA),
        "DATA past the window: {frames:?}"
    );
}

#[tokio::test]
async fn response_data_waits_for_window() {
    const BODY: usize = 100_000;
    // The connection window stays the default 65,535: the body needs both windows raised.
    const CONN: usize = 65_535;
    let gw = gateway().await;
    let mut c = Client::open(gw.addr, &[(INITIAL_WINDOW_SIZE, 0)]).await;
    c.get(1, &format!("/bytes/{BODY}")).await;
    let headers = loop {
        let next = c.expect().await;
        assert!(next.kind != DATA, "DATA with a window of 0: {next:?}");
        if next.stream == 1 {
            break next;
        }
    };
    assert!(
        headers.kind == HEADERS && !headers.has(END_STREAM),
        "{headers:?}"
    );
    assert_eq!(headers.fields[0], (":status".into(), "200".into()));
    // The response's HEADERS came, and by the PING's ACK its DATA would have too.
    no_data(&c.ping(*b"window:0").await);

    let mut got = Vec::new();
    c.send(&window_update(1, 1000)).await;
    assert!(!data_until(&mut c, &mut got, 1000).await);
    no_data(&c.ping(*b"stream:1").await);

    // The stream's window is now ample: the connection's is what holds the rest back.
    c.send(&window_update(1, 1_000_000)).await;
    assert!(!data_until(&mut c, &mut got, CONN).await);
    no_data(&c.ping(*b"conn:64k").await);

    c.send(&window_update(0, 1_000_000)).await;
    if !data_until(&mut c, &mut got, BODY).await {
        // The body's end may come on an empty DATA frame of its own.
        let end = c.expect().await;
        assert!(
            end.is(DATA, 1) && end.has(END_STREAM) && end.len == 0,
            "{end:?}"
        );
    }
    assert_eq!(got.len(), BODY);
    assert!(got == pattern(BODY), "the body arrives intact");
}

#[tokio::test]
async fn a_request_body_larger_than_the_window_arrives_whole() {
    const BODY: usize = 600 * 1024;
    let gw = gateway().await;
    let mut c = Client::open(gw.addr, &[]).await;
    assert!(
        (c.initial_window as usize) < BODY,
        "the test needs window given back"
    );
    let length = BODY.to_string();
    let block = Block::post("/len").named(28, length.as_bytes());
    c.send(&header_frames(1, &block.0, false)).await;
    let (mut stream_window, mut conn_window) = (c.initial_window, c.conn_window);
    let chunk = vec![b'b'; MAX_FRAME];
    let mut sent = 0;
    while sent < BODY {
        let room = stream_window.min(conn_window);
        if room <= 0 {
            let next = c.expect().await;
            match (next.kind, next.stream) {
                (WINDOW_UPDATE, 0) => conn_window += i64::from(next.u31()),
                (WINDOW_UPDATE, 1) => stream_window += i64::from(next.u31()),
                (_, 0) => {}
                _ => panic!("with {sent} bytes of the body sent: {next:?}"),
            }
            continue;
        }
        let n = (BODY - sent).min(MAX_FRAME).min(room as usize);
        let end = if sent + n == BODY { END_STREAM } else { 0 };
        c.send(&frame(DATA, end, 1, &chunk[..n])).await;
        sent += n;
        stream_window -= n as i64;
        conn_window -= n as i64;
    }
    let response = c.response(1).await;
    assert_eq!(response.status, 200);
    assert_eq!(String::from_utf8_lossy(&response.body), length);
}

#[tokio::test]
async fn a_reset_stream_leaves_the_others_alone() {
    let gw = gateway().await;
    let mut c = Client::open(gw.addr, &[]).await;
    c.get(1, "/hold").await;
    c.get(3, "/hold").await;
    c.send(&frame(RST_STREAM, 0, 1, &CANCEL.to_be_bytes()))
        .await;
    let before = c.ping(*b"reset:1!").await;
    assert!(before.iter().all(|f| f.stream == 0), "{before:?}");
    gw.release.send(true).unwrap();
    let held = c.response(3).await;
    assert_eq!((held.status, &held.body[..]), (200, &b"held"[..]));
    c.get(5, "/").await;
    assert_eq!(c.response(5).await.status, 200);
    // Nothing on the reset stream, not even a RST_STREAM back (RFC 9113 §5.4.2).
    let last = c.ping(*b"reset:2!").await;
    c.stray.extend(last);
    assert!(!c.stray.iter().any(|f| f.stream == 1), "{:?}", c.stray);
}

#[tokio::test]
async fn a_graceful_shutdown_finishes_the_streams_in_flight() {
    let gw = gateway().await;
    let mut c = Client::open(gw.addr, &[]).await;
    c.get(1, "/hold").await;
    // Stream 1 is open on the server before the shutdown begins.
    assert!(c.ping(*b"inflight").await.iter().all(|f| f.stream == 0));
    gw.stop.send(true).unwrap();
    let goaway = c.goaway().await;
    assert_eq!(goaway.code(), NO_ERROR, "{goaway:?}");
    assert_eq!(goaway.u31(), 1, "stream 1 is covered: {goaway:?}");
    gw.release.send(true).unwrap();
    let response = c.response(1).await;
    assert_eq!((response.status, &response.body[..]), (200, &b"held"[..]));
    c.expect_closed().await;
}

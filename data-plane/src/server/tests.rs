//! The listener under load while the table is swapped, and its connection limits.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt;

use super::*;
use crate::table::{Source, Table};

const PATIENCE: Duration = Duration::from_secs(20);

async fn backend(name: &'static str) -> SocketAddr {
    crate::test_backend::serve(
        move |_req| async move { Response::new(Full::new(Bytes::from(name))) },
    )
    .await
}

/// The configuration of swap `i`: /a split between both backends with weights that change,
/// /b on one, and a route that comes and goes.
fn config(i: usize, a: SocketAddr, b: SocketAddr) -> String {
    let extra = if i.is_multiple_of(2) {
        format!(
            "---\nkind: Route\nname: extra-{i}\nspec: {{ rules: [{{ matches: [{{ path: {{ value: /extra/{i} }} }}], backendRefs: [{{ name: b }}] }}] }}\n"
        )
    } else {
        String::new()
    };
    format!(
        "kind: Upstream\nname: a\nspec: {{ endpoints: [{{ address: '{a}' }}] }}\n---\nkind: Upstream\nname: b\nspec: {{ endpoints: [{{ address: '{b}' }}] }}\n---\nkind: Route\nname: main\nspec:\n  rules:\n    - matches: [{{ path: {{ value: /a }} }}]\n      backendRefs: [{{ name: a, weight: {} }}, {{ name: b, weight: {} }}]\n    - matches: [{{ path: {{ value: /b }} }}]\n      backendRefs: [{{ name: b }}]\n{extra}",
        i % 4 + 1,
        (i + 2) % 3 + 1,
    )
}

fn install(state: &State, version: usize, yaml: &str) {
    let resources = gateway_proto::document::parse_documents(yaml).unwrap();
    let table = Table::compile(version as i64, &resources, Source::File, state.side()).unwrap();
    state.install(table);
}

/// Sends requests on one keep-alive connection until `stop`; counts answers and failures.
async fn load(addr: SocketAddr, h2: bool, stop: Arc<AtomicBool>, done: Arc<AtomicUsize>) -> usize {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = TokioIo::new(stream);
    let mut failures = 0;
    macro_rules! drive {
        ($sender:expr) => {{
            let mut sender = $sender;
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let path = if i % 2 == 0 { "/a" } else { "/b" };
                i += 1;
                let req = Request::get(format!("http://gw.test{path}"))
                    .header("host", "gw.test")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                match sender.send_request(req).await {
                    Ok(response) if response.status() == 200 => {
                        match response.into_body().collect().await {
                            Ok(_) => {}
                            Err(_) => failures += 1,
                        }
                    }
                    _ => failures += 1,
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }};
    }
    if h2 {
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        drive!(sender);
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        drive!(sender);
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_swaps_under_load_fail_no_request() {
    let (a, b) = (backend("a").await, backend("b").await);
    let state = Arc::new(State::new(crate::state::Settings::default()));
    install(&state, 1, &config(0, a, b));
    let (addr, _stop) = serve_state_for_test(state.clone()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = [false, false, true, true]
        .into_iter()
        .map(|h2| tokio::spawn(load(addr, h2, stop.clone(), done.clone())))
        .collect();
    for i in 1..=50 {
        // Each swap lands among requests in flight: wait for traffic, not for time.
        let until = done.load(Ordering::Relaxed) + 20;
        tokio::time::timeout(PATIENCE, async {
            while done.load(Ordering::Relaxed) < until {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("traffic keeps flowing");
        install(&state, i + 1, &config(i, a, b));
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = 0;
    for client in clients {
        failures += tokio::time::timeout(PATIENCE, client)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(state.version(), 51);
    assert!(done.load(Ordering::Relaxed) >= 1000);
    assert_eq!(failures, 0, "requests failed during the swaps");
}

#[tokio::test]
async fn connections_over_the_limit_get_503_and_are_closed() {
    let state = Arc::new(State::new(crate::state::Settings {
        max_connections: 1,
        ..crate::state::Settings::default()
    }));
    install(
        &state,
        1,
        &config(1, backend("a").await, backend("b").await),
    );
    let (addr, _stop) = serve_state_for_test(state).await;
    // The first connection holds the only place.
    let _first = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The listener counts the first before it accepts the second: wait until it has.
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, second.read_to_end(&mut raw))
        .await
        .expect("closed in time")
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.contains("\"code\":\"overloaded\""), "{text}");
    assert!(text.contains("connection: close"), "{text}");
}

/// An HTTP/2 frame header and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn rapid_resets_get_goaway() {
    let state = Arc::new(State::new(crate::state::Settings::default()));
    install(
        &state,
        1,
        &config(1, backend("a").await, backend("b").await),
    );
    let (addr, _stop) = serve_state_for_test(state).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut flood = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    flood.extend(frame(0x4, 0, 0, &[]));
    // GET http://gw.test/a, as HPACK: indexed :method GET, :scheme http, :path /, then
    // :authority as a literal without indexing.
    let mut headers = vec![0x82, 0x86, 0x84, 0x01, 7];
    headers.extend_from_slice(b"gw.test");
    for i in 0..500u32 {
        let id = 2 * i + 1;
        flood.extend(frame(0x1, 0x5, id, &headers)); // HEADERS, END_STREAM | END_HEADERS
        flood.extend(frame(0x3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    // The server may stop reading (and close) before the whole flood is written.
    let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, &flood).await;
    let goaway = tokio::time::timeout(PATIENCE, async {
        let mut head = [0u8; 9];
        loop {
            if stream.read_exact(&mut head).await.is_err() {
                return false;
            }
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0u8; len];
            if stream.read_exact(&mut payload).await.is_err() {
                return false;
            }
            if head[3] == 0x7 {
                // GOAWAY: the last stream id, then the error code. ENHANCE_YOUR_CALM (0xb) is
                // the flood limit; anything else would mean the test's frames were wrong.
                return payload.get(4..8) == Some(&0xbu32.to_be_bytes()[..]);
            }
        }
    })
    .await
    .expect("the connection is answered in time");
    assert!(
        goaway,
        "a rapid-reset flood must end with GOAWAY ENHANCE_YOUR_CALM"
    );
}

mod timeouts;
mod tls;
mod upgrade;
mod upstream_dns;
mod upstream_h2;
mod upstream_h2_tls;
mod upstream_tls;

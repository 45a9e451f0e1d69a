//! A rule's `timeouts` on every path: a response head that does not come in time is a 504 (a
//! gRPC call's status 4), and a body still going at the deadline is cut off, over HTTP/1.1 and
//! H2C upstreams, from HTTP/1.1 and h2c clients alike. The upstreams' own timeout is left at
//! its 30 s default, so only the rule's 300 ms can end these exchanges in time.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{
    PATIENCE,
    upstream_h2::{Settings, h2c_backend},
    upstream_tls::{Gateway, get, h2c_client, send, upstream},
};

type Chunks = mpsc::Sender<Result<Frame<Bytes>, Infallible>>;
type Stalling = StreamBody<ReceiverStream<Result<Frame<Bytes>, Infallible>>>;

/// `/<upstream>/silent` never answers; `/<upstream>/stall` answers a head and a first piece,
/// then nothing (its body's sender goes to `keep`, so the body never ends either).
async fn respond(
    keep: mpsc::UnboundedSender<Chunks>,
    request: Request<Incoming>,
) -> Response<Stalling> {
    if request.uri().path().ends_with("/silent") {
        std::future::pending::<()>().await;
    }
    let (tx, rx) = mpsc::channel(1);
    tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
        .await
        .unwrap();
    keep.send(tx).unwrap();
    Response::new(StreamBody::new(ReceiverStream::new(rx)))
}

/// Each path prefix to the upstream of the same name, every rule with `timeouts.request`.
fn timed_route(upstreams: &[&str]) -> String {
    let mut yaml = "---\nkind: Route\nname: r\nspec:\n  rules:\n".to_owned();
    for name in upstreams {
        yaml.push_str(&format!(
            "    - matches: [{{ path: {{ type: PathPrefix, value: /{name} }} }}]\n      backendRefs: [{{ name: {name} }}]\n      timeouts: {{ request: 0.3s }}\n"
        ));
    }
    yaml
}

async fn gateway(keep: mpsc::UnboundedSender<Chunks>) -> Gateway {
    let http1 = {
        let keep = keep.clone();
        crate::test_backend::serve(move |request| respond(keep.clone(), request)).await
    };
    let h2c = h2c_backend(
        Settings::default(),
        Arc::new(Notify::new()),
        move |_, request| respond(keep.clone(), request),
    )
    .await;
    let yaml = timed_route(&["http1", "h2c"])
        + &upstream("http1", http1, "HTTP1", "")
        + &upstream("h2c", h2c.backend.addr, "H2C", "");
    Gateway::serve(&yaml).await
}

/// The response to `path` starts (200), and its body then fails instead of ending.
async fn cut_off(gw: SocketAddr, h2: bool, path: &str) {
    let response = if h2 {
        h2c_client(gw).await.send_request(get(path)).await.unwrap()
    } else {
        let io = hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(gw).await.unwrap());
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        sender.send_request(get(path)).await.unwrap()
    };
    assert_eq!(response.status(), 200, "{path} over h2 {h2}");
    let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .expect("the body ends at the rule's deadline");
    assert!(
        body.is_err(),
        "{path} over h2 {h2}: the body must be cut off, not end"
    );
}

#[tokio::test]
async fn a_head_not_in_time_is_504_and_a_body_past_the_deadline_is_cut_off() {
    let (keep, mut kept) = mpsc::unbounded_channel();
    let gateway = gateway(keep).await;
    for h2 in [false, true] {
        for upstream in ["http1", "h2c"] {
            let answer = send(gateway.addr, h2, get(&format!("/{upstream}/silent"))).await;
            assert_eq!(answer.status, 504, "{upstream} over h2 {h2}: {answer:?}");
            let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
            assert_eq!(json["error"]["code"], "upstream_timeout", "{json}");
            cut_off(gateway.addr, h2, &format!("/{upstream}/stall")).await;
        }
    }
    // Every stalled body was still open at the backend: the gateway ended them.
    assert_eq!(std::iter::from_fn(|| kept.try_recv().ok()).count(), 4);
}

#[tokio::test]
async fn a_grpc_call_past_the_rules_timeout_gets_deadline_exceeded() {
    let (keep, _kept) = mpsc::unbounded_channel();
    let gateway = gateway(keep).await;
    for upstream in ["http1", "h2c"] {
        let request = Request::post(format!("http://gw.test/{upstream}/silent"))
            .header("host", "gw.test")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = tokio::time::timeout(PATIENCE, async {
            h2c_client(gateway.addr)
                .await
                .send_request(request)
                .await
                .unwrap()
        })
        .await
        .expect("answered in time");
        // A trailers-only response: the status is in the head.
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/grpc");
        assert_eq!(response.headers()["grpc-status"], "4", "{upstream}");
    }
}

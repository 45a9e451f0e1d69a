//! HTTP/2 upstreams, continued: 100 streams over one TLS connection (H2), and a response body
//! that stalls fails after the upstream's timeout instead of hanging the client.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::{Notify, mpsc};

use super::{
    PATIENCE,
    tls::Ca,
    upstream_h2::{Settings, all_at_once, h2c_backend, pooled},
    upstream_tls::{Gateway, get, h2c_client, quoted, route, tls, tls_backend, upstream},
};

#[tokio::test]
async fn a_hundred_streams_share_one_h2_connection_over_tls() {
    let ca = Ca::new();
    let name = "upstream.test";
    let backend = tls_backend(ca.server(&[name], &[b"h2"], false)).await;
    let settings = tls(&[("sni", name), ("caCertificatePem", &quoted(&ca.pem()))]);
    let yaml = route(&["u"]) + &upstream("u", backend.addr, "H2", &settings);
    let gateway = Gateway::serve(&yaml).await;
    for h2 in [true, false] {
        let answers = all_at_once(gateway.addr, h2, "t", 100).await;
        for (i, answer) in answers.iter().enumerate() {
            assert_eq!(answer.status, 200, "request {i}: {answer:?}");
            assert_eq!(answer.text(), format!("h2 /u/t/{i} client-cert:false"));
        }
    }
    let seen = backend.seen();
    assert_eq!((seen.handshakes, seen.requests), (1, 200), "{seen:?}");
    assert_eq!(pooled(&gateway), 1);
}

#[tokio::test]
async fn a_stalled_response_body_fails_after_the_upstreams_timeout() {
    // Headers and a first piece, then nothing (the sender is kept, so the body never ends).
    let (keep, mut kept) =
        mpsc::unbounded_channel::<mpsc::Sender<Result<Frame<Bytes>, Infallible>>>();
    let backend = h2c_backend(Settings::default(), Arc::new(Notify::new()), move |_, _| {
        let keep = keep.clone();
        async move {
            let (tx, rx) = mpsc::channel(1);
            tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
                .await
                .unwrap();
            keep.send(tx).unwrap();
            Response::new(StreamBody::new(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ))
        }
    })
    .await;
    let yaml = route(&["u"]) + &upstream("u", backend.backend.addr, "H2C", "  timeout: 0.3s\n");
    let gateway = Gateway::serve(&yaml).await;

    // HTTP/2 client: the head and the first piece, then the stream is reset.
    let response = h2c_client(gateway.addr)
        .await
        .send_request(get("/u/stall"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .expect("the stalled body ends in time");
    assert!(body.is_err(), "a stalled body must fail, not end cleanly");

    // HTTP/1.1 client: the chunked body never gets its last chunk; the connection closes.
    let io =
        hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(gateway.addr).await.unwrap());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(get("/u/stall")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .expect("the stalled body ends in time");
    assert!(body.is_err(), "a stalled body must fail, not end cleanly");
    // Both backend bodies were still open: the gateway gave up, not the backend.
    assert_eq!(std::iter::from_fn(|| kept.try_recv().ok()).count(), 2);
}

//! The circuit breaker: `maxRequests` in flight, then 503 `upstream_overloaded` at once.

use integration_tests::{HttpResponse, eventually, get};

use super::{Gateway, backend::TestBackend};
use crate::support::{check_echo, docs, route, upstream, upstream_with};

/// Checks that `response` is the breaker's refusal.
fn refused(response: &HttpResponse) -> anyhow::Result<()> {
    let json = response.json()?;
    anyhow::ensure!(
        response.status == 503
            && json["error"]["code"] == "upstream_overloaded"
            && response.header("retry-after") == Some("1"),
        "expected 503 upstream_overloaded with Retry-After: 1, got {} {:?}: {json}",
        response.status,
        response.headers
    );
    Ok(())
}

/// Two requests held at the backend fill `maxRequests: 2`: a third to the same upstream is
/// refused while they are still held (so it did not queue), another upstream on the same data
/// plane is not affected, and once they are answered the breaker lets requests through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_refuses_at_once_past_max_requests() {
    let slow = TestBackend::start("breaker-slow").await;
    let other = TestBackend::start("breaker-other").await;
    let gw = Gateway::start(
        &docs(&[
            upstream_with(
                "slow",
                &[slow.addr()],
                "  circuitBreaker: { maxRequests: 2 }\n",
            ),
            upstream("other", &[other.addr()]),
            route("slow", "/s", "slow"),
            route("other", "/o", "other"),
        ]),
        1,
    )
    .await;
    let dp = gw.dp();
    check_echo(&dp.get("/s/x").await.unwrap(), slow.name(), "/s/x").unwrap();
    check_echo(&dp.get("/o/x").await.unwrap(), other.name(), "/o/x").unwrap();

    for round in 1..=2 {
        let held: Vec<_> = (0..2)
            .map(|_| {
                let url = dp.url("/s/slow");
                tokio::spawn(async move { get(&url, &[]).await })
            })
            .collect();
        slow.wait_held(2).await;
        let arrivals = slow.slow_arrivals();

        let third = dp.get("/s/slow").await.unwrap();
        refused(&third).unwrap();
        refused(&dp.get("/s/x").await.unwrap()).unwrap();
        // Answered while the two are still held, and never sent to the backend.
        assert!(
            held.iter().all(|h| !h.is_finished()),
            "a held request ended"
        );
        assert_eq!(slow.held(), 2);
        assert_eq!(
            slow.slow_arrivals(),
            arrivals,
            "the third reached the backend"
        );
        check_echo(&dp.get("/o/x").await.unwrap(), other.name(), "/o/x").unwrap();

        slow.release();
        for h in held {
            let response = h.await.unwrap().unwrap();
            check_echo(&response, slow.name(), "/s/slow").unwrap();
        }
        // The two leave the count as their answers end, a moment after the client has them.
        eventually("the breaker to let requests through", || async {
            check_echo(&dp.get("/s/x").await?, slow.name(), "/s/x")
        })
        .await;
        let statuses: Vec<u16> = {
            let mut statuses = Vec::new();
            for _ in 0..10 {
                statuses.push(dp.get("/s/x").await.unwrap().status);
            }
            statuses
        };
        eprintln!(
            "round {round}: third {} {}; after the release: {statuses:?}",
            third.status,
            third.header("retry-after").unwrap_or_default()
        );
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    }
}

/// `maxPendingRequests: 2` on a TLS upstream whose endpoint takes connections and never
/// answers the handshake: two requests wait for their connections, and a third is refused at
/// once, without a third connection attempt; another upstream on the same data plane answers
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_max_pending_are_refused_at_once() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    // Accepts, counts, and holds each connection without a byte of TLS.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            held.push(stream);
        }
    });
    let other = TestBackend::start("pending-other").await;
    let gw = Gateway::start(
        &docs(&[
            upstream_with(
                "silent",
                &[silent],
                "  connectTimeout: 30s\n  tls: { insecureSkipVerify: true }\n  circuitBreaker: { maxPendingRequests: 2 }\n",
            ),
            upstream("other", &[other.addr()]),
            route("silent", "/s", "silent"),
            route("other", "/o", "other"),
        ]),
        1,
    )
    .await;
    let dp = gw.dp();
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let url = dp.url("/s/x");
            tokio::spawn(async move { get(&url, &[]).await })
        })
        .collect();
    eventually("two connections waiting on their handshakes", || async {
        let n = accepted.load(Ordering::Relaxed);
        anyhow::ensure!(n == 2, "{n} connections so far");
        Ok(())
    })
    .await;
    let third = dp.get("/s/x").await.unwrap();
    refused(&third).unwrap();
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "a waiting request ended"
    );
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        2,
        "the refused request opened a connection"
    );
    check_echo(&dp.get("/o/x").await.unwrap(), other.name(), "/o/x").unwrap();
    for w in waiting {
        w.abort();
    }
    holder.abort();
}

/// An upstream's `idleTimeout`: an HTTP/1.1 connection idle past it is not reused (a new one
/// is opened), and an HTTP/2 connection idle past it is closed by the gateway; within it, both
/// are reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_idle_past_the_idle_timeout_are_not_reused() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    /// Connections accepted, and open now.
    #[derive(Default)]
    struct Count {
        accepted: AtomicUsize,
        open: AtomicUsize,
    }
    async fn serve(count: Arc<Count>) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let count = count.clone();
                count.accepted.fetch_add(1, Ordering::Relaxed);
                count.open.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                        ))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                    count.open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        addr
    }
    let (h1, h2) = (Arc::new(Count::default()), Arc::new(Count::default()));
    let (h1_addr, h2_addr) = (serve(h1.clone()).await, serve(h2.clone()).await);
    let gw = Gateway::start(
        &docs(&[
            upstream_with("h1", &[h1_addr], "  idleTimeout: 1s\n"),
            upstream_with("h2", &[h2_addr], "  protocol: H2C\n  idleTimeout: 1s\n"),
            route("h1", "/one", "h1"),
            route("h2", "/two", "h2"),
        ]),
        1,
    )
    .await;
    let dp = gw.dp();
    // Within the timeout connections are reused. (A request may come a moment before the last
    // one's connection is given back and open another: so "fewer than one each", not "one".)
    for path in [
        "/one/a", "/one/b", "/one/c", "/one/d", "/two/a", "/two/b", "/two/c", "/two/d",
    ] {
        assert_eq!(dp.get(path).await.unwrap().status, 200, "{path}");
    }
    let (h1_before, h2_before) = (
        h1.accepted.load(Ordering::Relaxed),
        h2.accepted.load(Ordering::Relaxed),
    );
    assert!(
        h1_before < 4,
        "HTTP/1.1: {h1_before} connections for 4 requests"
    );
    assert!(
        h2_before < 4,
        "HTTP/2: {h2_before} connections for 4 requests"
    );
    // The gateway closes idle HTTP/2 connections itself.
    eventually("the idle HTTP/2 connections closed", || async {
        let open = h2.open.load(Ordering::Relaxed);
        anyhow::ensure!(open == 0, "{open} open");
        Ok(())
    })
    .await;
    // The HTTP/1.1 ones are past their time too by now: the next request opens another.
    assert_eq!(dp.get("/one/e").await.unwrap().status, 200);
    assert_eq!(
        h1.accepted.load(Ordering::Relaxed),
        h1_before + 1,
        "a stale HTTP/1.1 connection was reused"
    );
    assert_eq!(dp.get("/two/e").await.unwrap().status, 200);
    assert_eq!(h2.accepted.load(Ordering::Relaxed), h2_before + 1);
}

/// `maxConnections: 1` on an H2C upstream whose backend takes one stream per connection: a
/// request held on the one connection fills it, and the next is refused at once rather than
/// opening a second connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_past_max_connections_are_refused_at_once() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, holding, release) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(tokio::sync::Semaphore::new(0)),
    );
    let (count, held_here, hold) = (accepted.clone(), holding.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            let (hold, held_here) = (hold.clone(), held_here.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    let (hold, held_here) = (hold.clone(), held_here.clone());
                    async move {
                        // A permit comes with the release, whenever this asks for it.
                        if req.uri().path().ends_with("/hold") {
                            held_here.fetch_add(1, Ordering::Relaxed);
                            let _ = hold.acquire().await;
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                        ))
                    }
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .max_concurrent_streams(1)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    let gw = Gateway::start(
        &docs(&[
            upstream_with(
                "one",
                &[addr],
                "  protocol: H2C\n  circuitBreaker: { maxConnections: 1 }\n",
            ),
            route("one", "/h", "one"),
        ]),
        1,
    )
    .await;
    let dp = gw.dp();
    assert_eq!(dp.get("/h/x").await.unwrap().status, 200);
    // The held request, at the backend. It may itself be refused, if it comes before the last
    // request's stream is given back (a moment after its answer reached the client): again.
    let held = loop {
        let url = dp.url("/h/hold");
        let held = tokio::spawn(async move { get(&url, &[]).await });
        eventually("the held request held, or answered", || async {
            anyhow::ensure!(
                holding.load(Ordering::Relaxed) == 1 || held.is_finished(),
                "neither yet"
            );
            Ok(())
        })
        .await;
        if holding.load(Ordering::Relaxed) == 1 {
            break held;
        }
    };
    // Refused while the held request fills the one connection; answered once it is done.
    eventually("the held request to fill the connection", || async {
        refused(&dp.get("/h/x").await?)
    })
    .await;
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        1,
        "a second connection was opened"
    );
    release.add_permits(1);
    assert_eq!(held.await.unwrap().unwrap().status, 200);
    eventually("requests through again", || async {
        let response = dp.get("/h/x").await?;
        anyhow::ensure!(response.status == 200, "{}", response.status);
        Ok(())
    })
    .await;
    assert_eq!(accepted.load(Ordering::Relaxed), 1);
}

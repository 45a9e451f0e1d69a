//! A small HTTP/1.1 backend in the test process, for what demo-backend cannot do: `/healthz`
//! answers 200 or 503 as the test says, a path ending in `/slow` is held until released (or
//! answered at once if the backend does not hold), and anything else gets 200 (503 while it
//! is set failing) with `{"backend": NAME, "path": PATH}`, like demo-backend's echo.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use integration_tests::eventually;
use tokio::{net::TcpListener, sync::watch};

#[derive(Debug)]
pub(super) struct TestBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    healthy: AtomicBool,
    holds: AtomicBool,
    failing: AtomicBool,
    /// `/healthz` requests seen, and all others.
    checks: AtomicUsize,
    requests: AtomicUsize,
    /// `/slow` requests waiting now, and all that arrived.
    held: AtomicUsize,
    slow_arrivals: AtomicUsize,
    /// Bumped to release every held request.
    release: watch::Sender<u64>,
}

impl TestBackend {
    pub(super) async fn start(name: &str) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            healthy: AtomicBool::new(true),
            holds: AtomicBool::new(true),
            failing: AtomicBool::new(false),
            checks: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            slow_arrivals: AtomicUsize::new(0),
            release: watch::channel(0).0,
        });
        let accept = tokio::spawn(serve(listener, shared.clone()));
        TestBackend {
            addr,
            shared,
            accept,
        }
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(super) fn name(&self) -> &str {
        &self.shared.name
    }

    /// What `/healthz` answers from now on: 200 or 503.
    pub(super) fn set_healthy(&self, healthy: bool) {
        self.shared.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Whether `/slow` requests are held (else answered at once).
    pub(super) fn set_holds(&self, holds: bool) {
        self.shared.holds.store(holds, Ordering::Relaxed);
    }

    /// Whether requests other than `/healthz` get 503 from now on.
    pub(super) fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::Relaxed);
    }

    /// Requests other than `/healthz` seen.
    pub(super) fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::Relaxed)
    }

    pub(super) fn checks(&self) -> usize {
        self.shared.checks.load(Ordering::Relaxed)
    }

    pub(super) fn held(&self) -> usize {
        self.shared.held.load(Ordering::Relaxed)
    }

    pub(super) fn slow_arrivals(&self) -> usize {
        self.shared.slow_arrivals.load(Ordering::Relaxed)
    }

    /// Lets every held request answer.
    pub(super) fn release(&self) {
        self.shared
            .release
            .send_modify(|generation| *generation += 1);
    }

    pub(super) async fn wait_held(&self, n: usize) {
        eventually(&format!("{} to hold {n} requests", self.name()), || async {
            let held = self.held();
            anyhow::ensure!(held == n, "{held} held");
            Ok(())
        })
        .await;
    }

    pub(super) async fn wait_checked(&self) {
        let seen = self.checks();
        eventually(&format!("a health check of {}", self.name()), || async {
            anyhow::ensure!(self.checks() > seen, "{seen} checks so far");
            Ok(())
        })
        .await;
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.accept.abort();
        self.release();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(shared.clone(), request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Counts a held request out when it ends, answered or dropped.
struct Held(Arc<Shared>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let status = if path == "/healthz" {
        shared.checks.fetch_add(1, Ordering::Relaxed);
        if shared.healthy.load(Ordering::Relaxed) {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    } else {
        shared.requests.fetch_add(1, Ordering::Relaxed);
        if path.ends_with("/slow") {
            shared.slow_arrivals.fetch_add(1, Ordering::Relaxed);
            if shared.holds.load(Ordering::Relaxed) {
                // Subscribed before it counts as held: a release after that is never missed.
                let mut release = shared.release.subscribe();
                shared.held.fetch_add(1, Ordering::Relaxed);
                let _held = Held(shared.clone());
                let _ = release.changed().await;
            }
        }
        if shared.failing.load(Ordering::Relaxed) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    };
    let body = serde_json::json!({ "backend": shared.name, "path": path });
    let response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response");
    Ok(response)
}

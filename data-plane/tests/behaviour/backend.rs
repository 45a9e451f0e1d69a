//! Real backends (hyper; HTTP/1.1, and h2c for H2C upstreams) that record what reached them
//! and answer with it as JSON; `grpc` answers as a gRPC service (see [`grpc_answer`]).

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::net::TcpListener;

/// What one backend received.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) backend: String,
    #[allow(dead_code, reason = "shown when a case fails")]
    pub(crate) method: String,
    /// Path and query as received.
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    #[allow(dead_code, reason = "shown when a case fails")]
    pub(crate) body: Vec<u8>,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

/// Named backends on 127.0.0.1:0.
pub(crate) struct Backends {
    addrs: HashMap<String, SocketAddr>,
    seen: Arc<Mutex<Vec<Seen>>>,
    hold: Arc<tokio::sync::Notify>,
}

impl Backends {
    pub(crate) async fn start(names: &[&str]) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hold = Arc::new(tokio::sync::Notify::new());
        let mut addrs = HashMap::new();
        for name in names {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            addrs.insert((*name).to_owned(), listener.local_addr().expect("addr"));
            let shared = Shared {
                name: (*name).to_owned(),
                seen: seen.clone(),
                hold: hold.clone(),
            };
            tokio::spawn(serve(listener, shared));
        }
        Self { addrs, seen, hold }
    }

    /// The config with `{name}` placeholders replaced by backend addresses.
    pub(crate) fn render(&self, yaml: &str) -> String {
        let mut yaml = yaml.to_owned();
        for (name, addr) in &self.addrs {
            yaml = yaml.replace(&format!("{{{name}}}"), &addr.to_string());
        }
        yaml
    }

    /// Lets the requests held at `/hold` answer.
    pub(crate) fn release(&self) {
        self.hold.notify_waiters();
    }

    /// What the backends got so far, without taking it.
    pub(crate) fn seen(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn reset(&self) {
        self.lock().clear();
    }

    pub(crate) fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What every connection of one backend shares.
#[derive(Clone)]
struct Shared {
    name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    hold: Arc<tokio::sync::Notify>,
}

async fn serve(listener: TcpListener, shared: Shared) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(shared, req).await.map(BodyExt::boxed)) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The auth service of `externalAuth` rows: `Bearer ok` is allowed (as user u1), anything else
/// refused with a challenge. Its requests are not the table's to see: not recorded.
fn auth_answer(parts: &http::request::Parts) -> Response<Full<Bytes>> {
    let allowed = parts
        .headers
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == b"Bearer ok");
    let mut response = if allowed {
        Response::new(Full::new(Bytes::new()))
    } else {
        let mut refused = Response::new(Full::new(Bytes::from_static(b"{\"denied\":true}")));
        *refused.status_mut() = http::StatusCode::UNAUTHORIZED;
        refused
    };
    let headers = response.headers_mut();
    if allowed {
        headers.insert("x-auth-user", "u1".parse().expect("value"));
    } else {
        let challenge = "Bearer realm=\"table\"".parse().expect("value");
        headers.insert("www-authenticate", challenge);
    }
    response
}

async fn answer(shared: Shared, req: Request<Incoming>) -> Response<BoxBody<Bytes, Infallible>> {
    let (parts, body) = req.into_parts();
    if shared.name == "auth" {
        return auth_answer(&parts).map(BodyExt::boxed);
    }
    // A backend that always fails, behind rules that retry: not the table's to see either.
    if shared.name == "failing" {
        let mut failed = Response::new(Full::new(Bytes::from_static(b"failing")));
        *failed.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        return failed.map(BodyExt::boxed);
    }
    let hold = parts.uri.path().ends_with("/hold");
    // A request whose body was cut off never arrived as a request: not recorded.
    let Ok(body) = body.collect().await.map(|b| b.to_bytes().to_vec()) else {
        return Response::new(Full::new(Bytes::new()).boxed());
    };
    let record = Seen {
        backend: shared.name.clone(),
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string),
        headers: {
            let mut headers: Vec<(String, String)> = parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            // Over HTTP/2 the host is the :authority (RFC 9113 §8.3.1), not a header.
            if parts.version == http::Version::HTTP_2
                && let Some(authority) = parts.uri.authority()
            {
                headers.push(("host".to_owned(), authority.to_string()));
            }
            headers
        },
        body: body.clone(),
    };
    // Registered before the request is recorded, so a release after `seen` reaches it.
    let released = shared.hold.notified();
    shared
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(record);
    if hold {
        released.await;
    }
    if shared.name == "grpc" {
        return grpc_answer(parts.uri.path(), body);
    }
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert("x-backend-public", "1".parse().expect("value"));
    headers.insert("server", "backend".parse().expect("value"));
    // A hop-by-hop header named by Connection, for the gateway to drop. HTTP/2 has neither
    // (hyper would refuse the Connection header), so only HTTP/1.1 answers carry them.
    if parts.version != http::Version::HTTP_2 {
        headers.insert("connection", "x-backend-private".parse().expect("value"));
        headers.insert("x-backend-private", "1".parse().expect("value"));
    }
    response.map(BodyExt::boxed)
}

/// The `behaviour.Echo` service of the transcoding rows, on its gRPC framing alone: `Say`
/// answers the request's message back, `Count` (server streaming) twice, `Fail` with
/// NOT_FOUND and no message (trailers-only). Every answer carries two metadata entries, of
/// which the route allows only `x-grpc-meta` back to the client.
fn grpc_answer(path: &str, framed: Vec<u8>) -> Response<BoxBody<Bytes, Infallible>> {
    let mut head = Response::builder()
        .header("content-type", "application/grpc")
        .header("x-grpc-meta", "1")
        .header("x-grpc-secret", "1");
    if path.ends_with("/Fail") {
        head = head
            .header("grpc-status", "5")
            .header("grpc-message", "no%20such%20thing");
        return head
            .body(Full::new(Bytes::new()).boxed())
            .expect("response");
    }
    let replies = if path.ends_with("/Count") {
        [framed.as_slice(), framed.as_slice()].concat()
    } else {
        framed
    };
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().expect("value"));
    let body = Full::new(Bytes::from(replies))
        .with_trailers(async move { Some(Ok(trailers)) })
        .boxed();
    head.body(body).expect("response")
}

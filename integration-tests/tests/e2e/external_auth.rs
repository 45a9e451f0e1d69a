//! The `externalAuth` policy through a real standalone data plane: each test runs its own auth
//! service (a hyper HTTP/1.1 server in the test, which the gateway reaches over pooled
//! keep-alive connections) and records every auth request it hears, so that a test can count
//! the calls and read what the gateway told it.
//!
//! The auth service decides by `authorization`: `Bearer good` (and `Bearer good-2`) is allowed
//! with `x-user-id` and an unlisted `x-other`; `Bearer slow` is allowed too late;
//! `Bearer elsewhere` is a redirect; anything else is a 401 with a challenge and a JSON body.
//! Answers are told apart from the backend's echo by their exact bodies, and every denial is
//! also checked against the backend's request log.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use integration_tests::{HttpResponse, eventually, free_port, gatewayctl, patience, write_file};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::keys::{Gateway, assert_refused, guarded, merge, policy};
use crate::support::{docs, upstream};

/// The Upstream of the test's auth service.
const AUTH: &str = "auth-svc";
/// The Upstream of an auth service nobody listens for.
const DOWN: &str = "auth-down";
/// The policies' timeout, and how late `Bearer slow` is answered: far enough apart that a
/// gateway that waited for the slow answer cannot pass for one that gave up.
const TIMEOUT: &str = "0.5s";
const SLOW: Duration = Duration::from_secs(2);
const DENIED_BODY: &str = r#"{"denied":"by test"}"#;
const CHALLENGE: &str = r#"Bearer realm="test""#;
const LOGIN: &str = "https://login.test/start?back=%2Fext";

// === the auth service ===

/// One auth request, as the auth service heard it.
#[derive(Clone, Debug)]
struct Asked {
    method: String,
    path: String,
    headers: HeaderMap,
}

impl Asked {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn values(&self, name: &str) -> Vec<&str> {
        let values = self.headers.get_all(name).iter();
        values.filter_map(|v| v.to_str().ok()).collect()
    }
}

/// The test's auth service on `127.0.0.1:0`; stopped when dropped.
#[derive(Debug)]
struct AuthService {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<Asked>>>,
    task: JoinHandle<()>,
}

impl Drop for AuthService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuthService {
    async fn start() -> AuthService {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the auth service on 127.0.0.1:0");
        let addr = listener.local_addr().expect("the auth service's address");
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                let service = service_fn(move |request: Request<Incoming>| {
                    let log = log.clone();
                    async move { Ok::<_, Infallible>(decide(&log, request).await) }
                });
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        AuthService { addr, asked, task }
    }

    /// The auth requests about `uri` (by their `x-forwarded-uri`), so that the tests on one
    /// gateway keep their counts apart.
    fn asked_about(&self, uri: &str) -> Vec<Asked> {
        let asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
        let about = asked
            .iter()
            .filter(|a| a.header("x-forwarded-uri") == Some(uri));
        about.cloned().collect()
    }

    /// The one auth request about `uri`.
    #[track_caller]
    fn asked_once(&self, uri: &str) -> Asked {
        let mut asked = self.asked_about(uri);
        assert_eq!(asked.len(), 1, "auth requests about {uri}: {asked:#?}");
        asked.remove(0)
    }
}

/// Records the request, then answers by its `authorization`.
async fn decide(log: &Mutex<Vec<Asked>>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let asked = Asked {
        method: request.method().to_string(),
        path: request.uri().to_string(),
        headers: request.headers().clone(),
    };
    let authorization = asked.header("authorization").unwrap_or_default().to_owned();
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(asked);
    let allow = |user: &str| {
        Response::builder()
            .header("x-user-id", user)
            .header("x-other", "no")
            .body(Full::default())
    };
    let response = match authorization.as_str() {
        "Bearer good" => allow("u-1"),
        "Bearer good-2" => allow("u-2"),
        "Bearer slow" => {
            tokio::time::sleep(SLOW).await;
            allow("u-1")
        }
        "Bearer elsewhere" => Response::builder()
            .status(StatusCode::FOUND)
            .header("location", LOGIN)
            .body(Full::default()),
        _ => Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("www-authenticate", CHALLENGE)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(DENIED_BODY.as_bytes()))),
    };
    response.expect("a valid test answer")
}

// === resources and checks ===

/// An `externalAuth` policy asking `upstream` at `/check`, with `extra` fields.
fn ext_auth(name: &str, upstream: &str, extra: Value) -> String {
    let spec = json!({
        "backendRef": { "name": upstream },
        "path": "/check",
        "headersToAuth": ["authorization", "x-team"],
        "headersFromAuth": ["x-user-id"],
        "timeout": TIMEOUT,
    });
    policy(name, json!({ "externalAuth": merge(spec, extra) }))
}

/// Route `/ext` behind policy `ext`, the plain policy.
fn ext_route() -> [String; 2] {
    [
        ext_auth("ext", AUTH, json!({})),
        guarded("ext", "/ext", &["ext"]),
    ]
}

/// The auth service's upstream and a gateway serving it with `resources`.
async fn start(name: &str, resources: &[String]) -> (Gateway, AuthService) {
    let auth = AuthService::start().await;
    let mut all = vec![upstream(AUTH, &[auth.addr])];
    all.extend(resources.iter().cloned());
    (Gateway::start(name, &all).await, auth)
}

/// Asserts that `response` is the auth service's 401, relayed as sent.
#[track_caller]
fn assert_denied(response: &HttpResponse, what: &str) {
    let text = response.text();
    assert_eq!(response.status, 401, "{what}: status; body {text}");
    assert_eq!(
        response.header("www-authenticate"),
        Some(CHALLENGE),
        "{what}"
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    assert_eq!(
        text, DENIED_BODY,
        "{what}: the auth service's body, as sent"
    );
}

/// Asserts that no request for a path containing `needle` reached `gw`'s backend.
#[track_caller]
fn assert_never_forwarded(gw: &Gateway, needle: &str) {
    let log = gw.backend.process().stderr();
    let leaked: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
    assert!(
        leaked.is_empty(),
        "denied requests reached the backend: {leaked:#?}"
    );
}

/// `GET path` over HTTP/2 with prior knowledge, the gateway's other front end.
async fn h2c_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        let mut request = Request::get(format!("http://{addr}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = sender
            .send_request(request.body(Full::<Bytes>::default())?)
            .await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        anyhow::Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    };
    match tokio::time::timeout(patience(), exchange).await {
        Ok(result) => result.unwrap_or_else(|e| panic!("h2c GET {path}: {e:#}")),
        Err(_) => panic!("h2c GET {path}: no answer within {:?}", patience()),
    }
}

// === tests ===

/// A 2xx answer lets the request through with the listed answer headers only, in place of any
/// the client forged; the auth request carries the normalised URI, the listed request headers
/// (every value), the client's facts and the response's request id, and nothing unlisted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_request_reaches_the_backend_with_the_answers_headers() {
    let (gw, auth) = start("ext-allow", &ext_route()).await;
    let sent = [
        ("authorization", "Bearer good"),
        ("x-user-id", "forged"),
        ("x-secret", "s"),
        ("x-team", "blue"),
        ("x-team", "green"),
    ];
    let response = gw.call("/ext/a/../b?q=1", &sent).await;
    let what = "allowed, with a forged x-user-id";
    gw.echoed(&response, "/ext/b", what)
        .has("x-user-id", "u-1")
        .lacks("x-other")
        .has("x-secret", "s")
        .has("authorization", "Bearer good");

    let request_id = response.header("x-request-id").expect("x-request-id");
    let asked = auth.asked_once("/ext/b?q=1");
    let host = gw.dp.http_addr().to_string();
    assert_eq!(
        (asked.method.as_str(), asked.path.as_str()),
        ("GET", "/check")
    );
    for (name, value) in [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-host", host.as_str()),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-for", "127.0.0.1"),
        ("authorization", "Bearer good"),
        ("x-request-id", request_id),
    ] {
        assert_eq!(asked.header(name), Some(value), "auth's {name}: {asked:#?}");
    }
    assert_eq!(asked.values("x-team"), ["blue", "green"], "{asked:#?}");
    for unlisted in ["x-secret", "x-user-id"] {
        assert!(
            asked.header(unlisted).is_none(),
            "{unlisted} sent: {asked:#?}"
        );
    }
}

/// Any other answer is the client's, status, headers and body as sent, and the backend never
/// hears of the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_is_relayed_as_sent_and_never_reaches_the_backend() {
    let (gw, auth) = start("ext-deny", &ext_route()).await;
    let bad = [("authorization", "Bearer bad"), ("x-user-id", "u-1")];
    assert_denied(&gw.call("/ext/refused-bad", &bad).await, "bad token");
    assert_denied(&gw.call("/ext/refused-none", &[]).await, "no token");
    auth.asked_once("/ext/refused-bad");
    assert_eq!(
        auth.asked_once("/ext/refused-none").header("authorization"),
        None
    );

    let response = gw
        .call("/ext/refused-302", &[("authorization", "Bearer elsewhere")])
        .await;
    assert_eq!(response.status, 302, "redirect: {}", response.text());
    assert_eq!(response.header("location"), Some(LOGIN));
    assert!(
        response.body.is_empty(),
        "redirect body: {}",
        response.text()
    );

    assert_never_forwarded(&gw, "/ext/refused");
}

/// An auth service too slow or unreachable is 503 `auth_unavailable`, within the timeout;
/// `failOpen` lets such requests through (still without forged identity headers), but not
/// the denials of a service that does answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_unreachable_auth_service_is_503_unless_fail_open() {
    let closed: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let open = json!({ "failOpen": true });
    let (gw, auth) = start(
        "ext-down",
        &[
            upstream(DOWN, &[closed]),
            ext_auth("ext", AUTH, json!({})),
            ext_auth("down", DOWN, json!({})),
            ext_auth("down-open", DOWN, open.clone()),
            ext_auth("slow-open", AUTH, open),
            guarded("ext", "/ext", &["ext"]),
            guarded("down", "/down", &["down"]),
            guarded("down-open", "/down-open", &["down-open"]),
            guarded("slow-open", "/slow-open", &["slow-open"]),
        ],
    )
    .await;
    let slow = [("authorization", "Bearer slow"), ("x-user-id", "forged")];

    let started = Instant::now();
    let response = gw.call("/ext/slow", &slow).await;
    let took = started.elapsed();
    assert_refused(
        &response,
        503,
        "auth_unavailable",
        "auth answer after the timeout",
    );
    assert!(
        took < SLOW,
        "answered after {took:?}: the gateway waited for the slow answer"
    );
    eventually("the slow auth request to have arrived", || async {
        anyhow::ensure!(auth.asked_about("/ext/slow").len() == 1, "not yet");
        Ok(())
    })
    .await;

    let good = [("authorization", "Bearer good")];
    let response = gw.call("/down/x", &good).await;
    assert_refused(
        &response,
        503,
        "auth_unavailable",
        "unreachable auth service",
    );

    gw.pass("/down-open/x", &slow, "failOpen, unreachable service")
        .await
        .lacks("x-user-id");
    gw.pass(
        "/slow-open/x",
        &slow,
        "failOpen, auth answer after the timeout",
    )
    .await
    .lacks("x-user-id");
    let response = gw
        .call("/slow-open/refused", &[("authorization", "Bearer bad")])
        .await;
    assert_denied(&response, "failOpen, the service answered 401");
    assert_never_forwarded(&gw, "/refused");
}

/// With `cacheTtl`, a request that would send the same auth request is decided by the kept
/// answer, denials included; any difference in what would be sent (a header value, the URI)
/// asks again. Without it, every request asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_kept_for_cache_ttl_per_auth_request() {
    let (gw, auth) = start(
        "ext-cache",
        &[
            ext_auth("ext", AUTH, json!({})),
            ext_auth("cached", AUTH, json!({ "cacheTtl": "30s" })),
            guarded("ext", "/ext", &["ext"]),
            guarded("cached", "/cached", &["cached"]),
        ],
    )
    .await;
    let calls = |uri: &str| auth.asked_about(uri).len();
    let good = [("authorization", "Bearer good")];
    let path = "/cached/x";

    for round in ["first", "second"] {
        gw.pass(path, &good, round).await.has("x-user-id", "u-1");
    }
    assert_eq!(calls(path), 1, "two identical allowed requests");
    gw.pass(path, &[("authorization", "Bearer good-2")], "another token")
        .await
        .has("x-user-id", "u-2");
    assert_eq!(calls(path), 2, "another authorization asks again");
    let other_team = [("authorization", "Bearer good"), ("x-team", "red")];
    gw.pass(path, &other_team, "another x-team")
        .await
        .has("x-user-id", "u-1");
    assert_eq!(calls(path), 3, "another headersToAuth value asks again");
    for round in ["first", "second"] {
        let response = gw.call(path, &[("authorization", "Bearer bad")]).await;
        assert_denied(&response, &format!("{round} identical denied request"));
    }
    assert_eq!(calls(path), 4, "a denial is kept too");
    gw.pass("/cached/x?page=2", &good, "another query").await;
    assert_eq!(calls("/cached/x?page=2"), 1, "another URI asks");
    assert_eq!(calls(path), 4);

    for round in ["first", "second"] {
        gw.pass("/ext/x", &good, round)
            .await
            .has("x-user-id", "u-1");
        let response = gw.call("/ext/x", &[("authorization", "Bearer bad")]).await;
        assert_denied(&response, &format!("{round} denial, no cacheTtl"));
    }
    assert_eq!(calls("/ext/x"), 4, "without cacheTtl every request asks");
}

/// The HTTP/2 front end asks and obeys the auth service like the HTTP/1.1 one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_are_asked_and_answered_alike() {
    let (gw, auth) = start("ext-h2", &ext_route()).await;
    let addr = gw.dp.http_addr();
    let sent = [("authorization", "Bearer good"), ("x-user-id", "forged")];
    let response = h2c_get(addr, "/ext/h2/../two?q=1", &sent).await;
    gw.echoed(&response, "/ext/two", "h2c, allowed")
        .has("x-user-id", "u-1")
        .lacks("x-other");
    let asked = auth.asked_once("/ext/two?q=1");
    let request_id = response.header("x-request-id").expect("x-request-id");
    let host = addr.to_string();
    for (name, value) in [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-host", host.as_str()),
        ("authorization", "Bearer good"),
        ("x-request-id", request_id),
    ] {
        assert_eq!(asked.header(name), Some(value), "auth's {name}: {asked:#?}");
    }

    let response = h2c_get(addr, "/ext/refused", &[("authorization", "Bearer bad")]).await;
    assert_denied(&response, "h2c, denied");
    let response = h2c_get(addr, "/ext/slow", &[("authorization", "Bearer slow")]).await;
    assert_refused(
        &response,
        503,
        "auth_unavailable",
        "h2c, auth answer after the timeout",
    );
    assert_never_forwarded(&gw, "/ext/refused");
}

/// Offline validation names a missing auth Upstream, and a rule asking two auth services; the
/// same file with one existing service is valid (so the refusals are for what they say).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_auth_upstream_or_two_policies_on_one_rule_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = ["127.0.0.1:9".parse().unwrap()];
    let base = [upstream("echo", &nowhere), upstream(AUTH, &nowhere)];
    let cases = [
        (
            "valid",
            vec![
                ext_auth("a", AUTH, json!({})),
                guarded("one", "/one", &["a"]),
            ],
            None,
        ),
        (
            "missing upstream",
            vec![
                ext_auth("ext", "x", json!({})),
                guarded("r", "/r", &["ext"]),
            ],
            Some(r#"Policy/ext: spec.externalAuth.backendRef.name: upstream "x" does not exist"#),
        ),
        (
            "two on one rule",
            vec![
                ext_auth("a", AUTH, json!({})),
                ext_auth("b", AUTH, json!({})),
                guarded("two", "/two", &["a", "b"]),
            ],
            Some("Route/two: spec.rules[0].policies: applies more than one externalAuth policy"),
        ),
    ];
    for (case, resources, refusal) in cases {
        let file = dir.path().join(format!("{}.yaml", case.replace(' ', "-")));
        let all: Vec<String> = base.iter().cloned().chain(resources).collect();
        write_file(&file, docs(&all));
        let output = gatewayctl(&["validate", "-f", &file.display().to_string()], None).await;
        match refusal {
            None => output.success(),
            Some(needle) => output.code(1).stderr_contains(needle),
        };
    }
}

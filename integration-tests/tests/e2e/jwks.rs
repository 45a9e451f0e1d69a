//! Keys fetched from a URL: a `jwt` provider with `jwksUri` or `oidcDiscovery` takes its keys
//! from an identity provider (here a small HTTP server in the test), fetched in the
//! background as soon as the config is loaded, refreshed when the set goes stale
//! (`Cache-Control: max-age`) and on an unknown `kid` (at most once per 5 s per provider).
//!
//! What the tests hold the data plane to: a rotated key is accepted and a retired one refused
//! once the set is refetched; an outage of the identity provider serves the last good keys for
//! `max-age + keysGracePeriod`, then answers 503 `auth_unavailable` (never 401, which would
//! tell a client its valid token is bad); keys never obtained are 503 too; a flood of random
//! kids cannot hammer the identity provider.

use crate::keys;

use std::{
    cell::RefCell,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use integration_tests::{
    DataPlane, DataPlaneOpts, DemoBackend, HttpResponse, eventually, free_port, get, holds_for,
    write_file,
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::support::{check_echo, docs, upstream};
use keys::{
    AUDIENCE, Gateway, ISSUER, Key, assert_refused, assert_unauthorized, claims, claims_with,
    guarded, jwt, merge, token,
};

/// Where the test identity provider serves its key set, and its discovery document.
const JWKS_PATH: &str = "/jwks.json";
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// The contract's bound on refetches triggered by unknown kids: one per this long.
const UNKNOWN_KID_REFETCH_EVERY: Duration = Duration::from_secs(5);

// === the identity provider ===

/// What the test identity provider serves, and what it saw.
#[derive(Debug)]
struct IdpState {
    /// The JWKS document served at [`JWKS_PATH`].
    jwks: String,
    /// The `Cache-Control` of the JWKS response, if any.
    cache_control: Option<String>,
    /// Answer 500 to everything.
    outage: bool,
    /// Requests for the JWKS (answered or not).
    jwks_fetches: usize,
    /// Requests for the discovery document.
    discovery_fetches: usize,
    /// When the JWKS was last answered 200.
    last_good: Option<Instant>,
    /// Every request, for failure messages.
    log: Vec<String>,
}

/// A JWKS server on `127.0.0.1:0`, with an OIDC discovery document naming its JWKS; stopped
/// when dropped.
#[derive(Debug)]
struct Idp {
    addr: SocketAddr,
    state: Arc<Mutex<IdpState>>,
    task: JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Idp {
    async fn start(jwks: String, cache_control: Option<&str>) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the test identity provider on 127.0.0.1:0");
        let addr = listener.local_addr().expect("the IdP's address");
        let state = Arc::new(Mutex::new(IdpState {
            jwks,
            cache_control: cache_control.map(str::to_owned),
            outage: false,
            jwks_fetches: 0,
            discovery_fetches: 0,
            last_good: None,
            log: Vec::new(),
        }));
        let shared = state.clone();
        let base = format!("http://{addr}");
        let started = Instant::now();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (state, base) = (shared.clone(), base.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let response = answer(&state, &base, request.uri().path(), started);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Idp { addr, state, task }
    }

    fn state(&self) -> MutexGuard<'_, IdpState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `http://127.0.0.1:PORT`: the issuer of the discovery test.
    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn jwks_url(&self) -> String {
        format!("{}{JWKS_PATH}", self.base_url())
    }

    fn set_jwks(&self, jwks: String) {
        self.state().jwks = jwks;
    }

    /// Switches the outage (every answer a 500) on or off; returns when the JWKS was last
    /// served 200.
    fn set_outage(&self, on: bool) -> Option<Instant> {
        let mut state = self.state();
        state.outage = on;
        state.last_good
    }

    fn jwks_fetches(&self) -> usize {
        self.state().jwks_fetches
    }

    fn discovery_fetches(&self) -> usize {
        self.state().discovery_fetches
    }

    /// The requests the IdP saw, one a line.
    fn log(&self) -> String {
        self.state().log.join("\n")
    }
}

/// The IdP's answer to `GET path` (any method is treated as a GET).
fn answer(
    state: &Mutex<IdpState>,
    base: &str,
    path: &str,
    started: Instant,
) -> Response<Full<Bytes>> {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    let (status, body, cache_control) = match path {
        _ if state.outage => {
            if path == JWKS_PATH {
                state.jwks_fetches += 1;
            } else if path == DISCOVERY_PATH {
                state.discovery_fetches += 1;
            }
            (
                500,
                r#"{"error":"the identity provider is down"}"#.to_owned(),
                None,
            )
        }
        JWKS_PATH => {
            state.jwks_fetches += 1;
            state.last_good = Some(Instant::now());
            (200, state.jwks.clone(), state.cache_control.clone())
        }
        DISCOVERY_PATH => {
            state.discovery_fetches += 1;
            let document = json!({
                "issuer": base,
                "jwks_uri": format!("{base}{JWKS_PATH}"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            });
            (200, document.to_string(), None)
        }
        _ => (404, r#"{"error":"not found"}"#.to_owned(), None),
    };
    let at = started.elapsed().as_secs_f64();
    state.log.push(format!("{at:>8.3}s GET {path} -> {status}"));
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(value) = cache_control {
        response = response.header("cache-control", value);
    }
    response
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

// === documents and requests ===

/// A `jwt` provider of the test issuer and audience taking its keys from `jwks_uri`, RS256
/// and ES256, with `extra` fields.
fn uri_provider(jwks_uri: &str, extra: Value) -> Value {
    merge(
        json!({
            "name": "corp",
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "jwksUri": jwks_uri,
            "algorithms": ["RS256", "ES256"],
            "forwardClaims": [{ "claim": "sub", "header": "x-user" }],
        }),
        extra,
    )
}

/// The `corp-jwt` policy of `provider` and the route `/api` it guards.
fn guarded_by(provider: Value) -> Vec<String> {
    vec![
        jwt("corp-jwt", &[provider], json!({})),
        guarded("api", "/api", &["corp-jwt"]),
    ]
}

/// Sends `token` to `path` until the answer is `want`, and returns it. Every other status
/// seen on the way must be one of `allowed`: the test fails at once on any other.
async fn until_status(
    gw: &Gateway,
    path: &str,
    token: &str,
    want: u16,
    allowed: &[u16],
    what: &str,
) -> HttpResponse {
    let seen = RefCell::new(Vec::new());
    let seen = &seen;
    eventually(what, move || async move {
        let response = gw.bearer(path, token).await;
        let status = response.status;
        seen.borrow_mut().push(status);
        if status != want && !allowed.contains(&status) {
            panic!(
                "{what}: answered {status} ({}); only {want} or {allowed:?} may appear on the \
                 way; statuses so far: {:?}",
                response.text(),
                seen.borrow()
            );
        }
        anyhow::ensure!(
            status == want,
            "status {status}: {}; statuses so far: {:?}",
            response.text(),
            seen.borrow()
        );
        Ok(response)
    })
    .await
}

/// `token` on `path` is the backend's echo, with `sub` forwarded as `x-user`.
#[track_caller]
fn assert_passed(gw: &Gateway, response: &HttpResponse, path: &str, sub: &str, what: &str) {
    gw.echoed(response, path, what).has("x-user", sub);
}

// === the tests ===

/// The data plane fetches the JWKS on loading the config, before any request needs it; a
/// token signed by a key of the set then passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_a_jwks_uri_are_fetched_before_the_first_request() {
    let k1 = Key::rsa();
    let idp = Idp::start(keys::jwks(&[k1.jwk("k1")]), None).await;

    // Not `Gateway::start`, which sends requests until the config is served: here no request
    // at all reaches the data plane until the IdP has seen the fetch.
    let backend = DemoBackend::start("echo-jwks-prefetch").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    let mut resources = vec![upstream("echo", &[backend.addr()])];
    resources.extend(guarded_by(uri_provider(&idp.jwks_url(), json!({}))));
    write_file(&file, docs(&resources));
    let dp = DataPlane::start(DataPlaneOpts::standalone(&file)).await;

    eventually(
        "the data plane to fetch the JWKS on its own, before any request",
        || async {
            let fetches = idp.jwks_fetches();
            anyhow::ensure!(
                fetches >= 1,
                "the IdP has seen no JWKS request yet; its log:\n{}",
                idp.log()
            );
            Ok(())
        },
    )
    .await;
    // `/ready` is the admin listener: still no request through the gateway.
    dp.wait_ready().await;

    let token = token(&k1, "RS256", Some("k1"), &claims("acme"));
    let authorization = format!("Bearer {token}");
    // The set may still be being installed when the fetch has just been seen: 503 (keys not
    // there yet) may answer for a moment, but never 401.
    let response = eventually("a k1 token to pass", || async {
        let response = get(&dp.url("/api/first"), &[("authorization", &authorization)]).await?;
        if response.status == 401 {
            panic!(
                "a token of a key the data plane had fetched before the first request was \
                 refused 401: {}\nIdP log:\n{}",
                response.text(),
                idp.log()
            );
        }
        check_echo(&response, backend.name(), "/api/first")?;
        Ok(response)
    })
    .await;
    let seen = response.json().unwrap();
    assert_eq!(
        seen["headers"]["x-user"], "acme",
        "the token's sub forwarded as x-user: {seen}"
    );
}

/// With `max-age=1`, a key added to the set is accepted (an unknown kid refetches), and a key
/// removed from it is refused once the set is refetched, even a token it verified before;
/// the remaining key keeps verifying throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_accepted_and_a_retired_one_refused() {
    let (k1, k2) = (Key::rsa(), Key::p256());
    let idp = Idp::start(keys::jwks(&[k1.jwk("k1")]), Some("max-age=1")).await;
    let gw = Gateway::start(
        "jwks-rotate",
        &guarded_by(uri_provider(&idp.jwks_url(), json!({}))),
    )
    .await;
    let t1 = token(&k1, "RS256", Some("k1"), &claims("one"));
    let t2 = token(&k2, "ES256", Some("k2"), &claims("two"));

    let response = until_status(&gw, "/api/k1", &t1, 200, &[503], "a k1 token to pass").await;
    assert_passed(&gw, &response, "/api/k1", "one", "k1 token, set {k1}");
    let before = gw.bearer("/api/k2-before", &t2).await;
    assert_unauthorized(&before, "a k2 token before k2 is in the set", true);

    // Rotation, step 1: the new key is published beside the old one.
    idp.set_jwks(keys::jwks(&[k1.jwk("k1"), k2.jwk("k2")]));
    let started = Instant::now();
    let what = "a k2 token to pass once k2 is published";
    let response = until_status(&gw, "/api/k2", &t2, 200, &[401], what).await;
    assert_passed(&gw, &response, "/api/k2", "two", "k2 token, set {k1, k2}");
    println!("k2 accepted {:?} after it was published", started.elapsed());
    let response = gw.bearer("/api/k1-still", &t1).await;
    assert_passed(
        &gw,
        &response,
        "/api/k1-still",
        "one",
        "k1 token, set {k1, k2}",
    );

    // Step 2: the old key is retired. The k1 token is the very one that passed before: a
    // verification remembered from then must not outlive the refetch.
    idp.set_jwks(keys::jwks(&[k2.jwk("k2")]));
    let started = Instant::now();
    let k2_keeps_passing = || async {
        let response = gw.bearer("/api/k2-during", &t2).await;
        assert_passed(
            &gw,
            &response,
            "/api/k2-during",
            "two",
            "k2 while k1 is retired",
        );
    };
    let refused = eventually("the retired k1 to be refused 401", || async {
        k2_keeps_passing().await;
        let response = gw.bearer("/api/k1-retired", &t1).await;
        match response.status {
            401 => Ok(response),
            200 => anyhow::bail!("the k1 token still passes"),
            other => panic!(
                "a token of a retired key must pass until the refetch, then be 401; got \
                 {other}: {}\nIdP log:\n{}",
                response.text(),
                idp.log()
            ),
        }
    })
    .await;
    assert_unauthorized(&refused, "k1 token, set {k2}", true);
    println!("k1 refused {:?} after it was retired", started.elapsed());

    // Across further refetches (max-age=1): k2 passes, k1 stays refused, however signed.
    let fresh_t1 = token(&k1, "RS256", Some("k1"), &claims("one-again"));
    holds_for(
        "k2 passing and k1 refused after the rotation",
        Duration::from_secs(2),
        || async {
            k2_keeps_passing().await;
            for (i, t) in [&t1, &fresh_t1].into_iter().enumerate() {
                let response = gw.bearer(&format!("/api/k1-after-{i}"), t).await;
                anyhow::ensure!(
                    response.status == 401,
                    "a k1 token answered {}: {}",
                    response.status,
                    response.text()
                );
            }
            Ok(())
        },
    )
    .await;
}

/// An IdP outage: the last good set keeps verifying until `max-age + keysGracePeriod` after it
/// was fetched, then valid tokens get 503 `auth_unavailable`, never 401; when the IdP is back,
/// they pass again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_outage_serves_the_last_good_keys_then_503() {
    const MAX_AGE: Duration = Duration::from_secs(1);
    const GRACE: Duration = Duration::from_secs(2);
    let k1 = Key::rsa();
    let idp = Idp::start(keys::jwks(&[k1.jwk("k1")]), Some("max-age=1")).await;
    let provider = uri_provider(&idp.jwks_url(), json!({ "keysGracePeriod": "2s" }));
    let gw = Gateway::start("jwks-outage", &guarded_by(provider)).await;
    let t1 = token(&k1, "RS256", Some("k1"), &claims("acme"));

    let response = until_status(&gw, "/api/up", &t1, 200, &[503], "a k1 token to pass").await;
    assert_passed(&gw, &response, "/api/up", "acme", "before the outage");

    // Start the outage right after a good refetch (max-age=1: one comes every second or so,
    // whether the data plane refetches on its own or on the requests it serves), so that the
    // whole grace period lies ahead.
    let fetched = idp.jwks_fetches();
    eventually("a refetch of the JWKS (max-age=1)", || async {
        let response = gw.bearer("/api/refetch", &t1).await;
        anyhow::ensure!(
            response.status == 200,
            "a k1 token answered {} while the IdP is up: {}",
            response.status,
            response.text()
        );
        anyhow::ensure!(
            idp.jwks_fetches() > fetched,
            "no refetch yet; IdP log:\n{}",
            idp.log()
        );
        Ok(())
    })
    .await;
    let last_good = idp
        .set_outage(true)
        .expect("the IdP served the JWKS at least once");
    let outage_from = Instant::now();

    let response = gw.bearer("/api/outage-0", &t1).await;
    assert_passed(
        &gw,
        &response,
        "/api/outage-0",
        "acme",
        "right after the outage began",
    );

    // Every status until the 503: 200 (the last good keys), then 503; a 401 would tell the
    // client that its valid token is bad.
    let statuses = RefCell::new(Vec::new());
    let statuses = &statuses;
    let unavailable = eventually("valid tokens to get 503 once the grace is over", || async {
        let response = gw.bearer("/api/outage", &t1).await;
        statuses.borrow_mut().push(response.status);
        match response.status {
            503 => Ok(response),
            200 => anyhow::bail!("still served by the last good keys"),
            other => panic!(
                "during an IdP outage a valid token must pass, then get 503, never anything \
                 else; got {other} {:.1?} into the outage: {}\nstatuses so far: {:?}\nIdP \
                 log:\n{}",
                outage_from.elapsed(),
                response.text(),
                statuses.borrow(),
                idp.log()
            ),
        }
    })
    .await;
    let first_503 = last_good.elapsed();
    assert_refused(
        &unavailable,
        503,
        "auth_unavailable",
        "a valid token past max-age + keysGracePeriod",
    );
    let statuses = statuses.borrow().clone();
    assert!(
        statuses.iter().all(|s| [200, 503].contains(s)),
        "statuses during the outage: {statuses:?}"
    );
    // The contract serves the last good set until max-age + grace after its fetch (measured
    // here from when the IdP answered it, which is before the data plane got it); the margin
    // is for timer granularity.
    let earliest = MAX_AGE + GRACE - Duration::from_millis(300);
    assert!(
        first_503 >= earliest,
        "the first 503 came {first_503:.2?} after the last good fetch, before max-age 1s + \
         keysGracePeriod 2s; statuses: {statuses:?}\nIdP log:\n{}",
        idp.log()
    );
    println!(
        "503 {first_503:.2?} after the last good fetch ({:.2?} into the outage), statuses \
         {statuses:?}",
        outage_from.elapsed()
    );

    // A request without a token is still 401: it is not an identity-provider matter.
    let none = gw.call("/api/no-token", &[]).await;
    assert_unauthorized(&none, "no token during the outage", false);

    // The IdP is back: the same token passes again, with nothing but 503 on the way.
    idp.set_outage(false);
    let what = "a k1 token to pass once the IdP is back";
    let response = until_status(&gw, "/api/back", &t1, 200, &[503], what).await;
    assert_passed(&gw, &response, "/api/back", "acme", "after the outage");
}

/// Keys never obtained (nothing listens on the JWKS URL): a well-formed token gets 503
/// `auth_unavailable`, not 401; a request without a token is still 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_never_obtained_are_503_not_401() {
    let k1 = Key::rsa();
    // A port that was just bound and released: connections to it are refused.
    let nowhere = format!("http://127.0.0.1:{}{JWKS_PATH}", free_port());
    let gw = Gateway::start("jwks-never", &guarded_by(uri_provider(&nowhere, json!({})))).await;

    let with_kid = token(&k1, "RS256", Some("k1"), &claims("acme"));
    let without_kid = token(&k1, "RS256", None, &claims("acme"));
    let ec = token(&Key::p256(), "ES256", Some("ec-1"), &claims("acme"));
    for (i, (what, t)) in [
        ("an RS256 token with a kid", &with_kid),
        ("an RS256 token without a kid", &without_kid),
        ("an ES256 token with a kid", &ec),
        ("the RS256 token with a kid, again", &with_kid),
    ]
    .into_iter()
    .enumerate()
    {
        let response = gw.bearer(&format!("/api/never-{i}"), t).await;
        assert_refused(
            &response,
            503,
            "auth_unavailable",
            &format!("{what}, keys never obtained"),
        );
    }
    let none = gw.call("/api/no-token", &[]).await;
    assert_unauthorized(&none, "no token, keys never obtained", false);
    // The rest of the gateway serves.
    gw.pass("/open/still", &[], "the open route").await;
}

/// 200 tokens naming random kids, sent over a second or two from several connections at once:
/// all 401, and the IdP is asked for the set at most twice (once per 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_fetches_a_bounded_number_of_times() {
    const TOKENS: usize = 200;
    const AT_ONCE: usize = 10;
    let k1 = Key::rsa();
    // max-age=3600: no refetch but those the unknown kids trigger.
    let idp = Idp::start(keys::jwks(&[k1.jwk("k1")]), Some("max-age=3600")).await;
    let gw = Gateway::start(
        "jwks-flood",
        &guarded_by(uri_provider(&idp.jwks_url(), json!({}))),
    )
    .await;
    let t1 = token(&k1, "RS256", Some("k1"), &claims("acme"));
    until_status(&gw, "/api/k1", &t1, 200, &[503], "a k1 token to pass").await;

    let before = idp.jwks_fetches();
    let tokens: Vec<String> = (0..TOKENS)
        .map(|i| {
            let kid = format!("random-{i}-{:016x}", fastrand::u64(..));
            token(
                &k1,
                "RS256",
                Some(&kid),
                &claims_with("acme", json!({ "n": i })),
            )
        })
        .collect();
    let started = Instant::now();
    // Paced, so that the flood lasts a second or two rather than one burst: the bound is per
    // unit of time.
    let mut pace = tokio::time::interval(Duration::from_millis(75));
    let mut responses = Vec::new();
    for batch in tokens.chunks(AT_ONCE) {
        pace.tick().await;
        let sent = batch.iter().map(|t| gw.bearer("/api/flood", t));
        responses.extend(futures_util::future::join_all(sent).await);
    }
    let took = started.elapsed();
    for (i, response) in responses.iter().enumerate() {
        assert_unauthorized(response, &format!("flood token {i}, a random kid"), true);
    }
    // The gateway still verifies the known key.
    let response = gw.bearer("/api/k1-after", &t1).await;
    assert_passed(
        &gw,
        &response,
        "/api/k1-after",
        "acme",
        "k1 after the flood",
    );

    // One refetch per 5 s: at most 2 in a flood shorter than that (it may straddle a window).
    let windows = took.as_secs_f64() / UNKNOWN_KID_REFETCH_EVERY.as_secs_f64();
    let bound = 1 + windows.ceil().max(1.0) as usize;
    let check = || async {
        let rose = idp.jwks_fetches() - before;
        anyhow::ensure!(
            rose <= bound,
            "{TOKENS} tokens with unknown kids over {took:.2?} made {rose} JWKS fetches, more \
             than {bound}; IdP log:\n{}",
            idp.log()
        );
        Ok(())
    };
    if let Err(error) = check().await {
        panic!("{error:#}");
    }
    // And no backlog of refetches follows.
    holds_for(
        "the bound on fetches after the flood",
        Duration::from_secs(1),
        check,
    )
    .await;
    println!(
        "flood of {TOKENS} over {took:.2?}: {} JWKS fetches",
        idp.jwks_fetches() - before
    );
}

/// `oidcDiscovery: true`: the issuer's `/.well-known/openid-configuration` names the JWKS,
/// whose keys then verify the issuer's tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_discovery_finds_the_jwks() {
    let k1 = Key::p256();
    let idp = Idp::start(keys::jwks(&[k1.jwk("ec-1")]), None).await;
    let issuer = idp.base_url();
    let provider = json!({
        "name": "corp",
        "issuer": issuer,
        "audiences": [AUDIENCE],
        "oidcDiscovery": true,
        "algorithms": ["RS256", "ES256"],
        "forwardClaims": [{ "claim": "sub", "header": "x-user" }],
    });
    let gw = Gateway::start("jwks-oidc", &guarded_by(provider)).await;
    let claims = claims_with("acme", json!({ "iss": issuer }));
    let t1 = token(&k1, "ES256", Some("ec-1"), &claims);

    let what = "a token of the discovered keys to pass";
    let response = until_status(&gw, "/api/oidc", &t1, 200, &[503], what).await;
    assert_passed(
        &gw,
        &response,
        "/api/oidc",
        "acme",
        "ES256 token, discovered keys",
    );
    let log = idp.log();
    assert!(
        idp.discovery_fetches() >= 1,
        "the discovery document was never fetched; IdP log:\n{log}"
    );
    assert!(
        idp.jwks_fetches() >= 1,
        "the JWKS it names was never fetched; IdP log:\n{log}"
    );
    // Another issuer's token is still refused, by its `iss`.
    let other = claims_with("acme", json!({ "iss": "https://elsewhere.test" }));
    let response = gw
        .bearer("/api/other", &token(&k1, "ES256", Some("ec-1"), &other))
        .await;
    assert_unauthorized(&response, "a token of another issuer", true);
}

//! Helpers of the identity tests: keys generated per run with aws-lc-rs (no key is checked
//! in); JWS compact tokens assembled by hand, so that a test can put anything in the header
//! (`alg: none`, a foreign `kid`, `jku`, `jwk`) or break any part; the resource documents that
//! name them; and the gateway under test with the checks of what reached its backend.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    encoding::AsDer as _,
    hmac,
    rand::SystemRandom,
    rsa::KeySize,
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair},
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use integration_tests::{DataPlane, DataPlaneOpts, DemoBackend, HttpResponse, get, write_file};
use serde_json::{Map, Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{check_echo, docs, route, upstream, wait_served};

/// The issuer and audience of the providers under test.
pub(crate) const ISSUER: &str = "https://idp.test";
pub(crate) const AUDIENCE: &str = "api";

/// base64url without padding, as JWS uses it.
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the epoch.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs() as i64
}

/// Valid claims for `sub`: the providers' issuer and audience, issued now, 5 minutes left.
pub(crate) fn claims(sub: &str) -> Value {
    let now = now();
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300 })
}

/// `claims(sub)` with `extra`'s fields set (a `null` removes the field).
pub(crate) fn claims_with(sub: &str, extra: Value) -> Value {
    let mut claims = claims(sub);
    let map = claims.as_object_mut().expect("claims are an object");
    for (name, value) in extra.as_object().expect("extra claims are an object") {
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.clone(), value.clone());
        }
    }
    claims
}

/// A signing key: an HMAC secret or a key pair.
pub(crate) enum Key {
    Hmac(Vec<u8>),
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Key {
    pub(crate) fn hmac(secret: &[u8]) -> Key {
        Key::Hmac(secret.to_vec())
    }

    /// A fresh RSA 2048 key.
    pub(crate) fn rsa() -> Key {
        Key::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("generate an RSA key"))
    }

    pub(crate) fn p256() -> Key {
        Key::P256(
            EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .expect("generate a P-256 key"),
        )
    }

    pub(crate) fn p384() -> Key {
        Key::P384(
            EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING)
                .expect("generate a P-384 key"),
        )
    }

    pub(crate) fn ed25519() -> Key {
        Key::Ed25519(Ed25519KeyPair::generate().expect("generate an Ed25519 key"))
    }

    /// The public JWK (the secret itself for HMAC), named `kid`.
    pub(crate) fn jwk(&self, kid: &str) -> Value {
        match self {
            Key::Hmac(secret) => json!({ "kty": "oct", "kid": kid, "k": b64(secret) }),
            Key::Rsa(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "kid": kid,
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Key::P256(pair) | Key::P384(pair) => {
                // SEC1 uncompressed: 0x04 || x || y.
                let point = pair.public_key().as_ref();
                assert_eq!(point[0], 4, "an uncompressed EC point");
                let (x, y) = point[1..].split_at((point.len() - 1) / 2);
                let crv = if matches!(self, Key::P256(_)) {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({ "kty": "EC", "kid": kid, "crv": crv, "x": b64(x), "y": b64(y) })
            }
            Key::Ed25519(pair) => json!({
                "kty": "OKP",
                "kid": kid,
                "crv": "Ed25519",
                "x": b64(pair.public_key().as_ref()),
            }),
        }
    }

    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub(crate) fn public_pem(&self) -> String {
        let der = match self {
            Key::Hmac(_) => panic!("an HMAC secret has no public key"),
            Key::Rsa(pair) => pair.public_key().as_der().map(|d| d.as_ref().to_vec()),
            Key::P256(pair) | Key::P384(pair) => {
                pair.public_key().as_der().map(|d| d.as_ref().to_vec())
            }
            Key::Ed25519(pair) => pair.public_key().as_der().map(|d| d.as_ref().to_vec()),
        }
        .expect("encode the public key");
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    /// The JWS signature of `message` with `alg` (which must suit the key).
    fn sign(&self, alg: &str, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match (self, alg) {
            (Key::Hmac(secret), "HS256" | "HS384" | "HS512") => {
                let algorithm = match alg {
                    "HS256" => hmac::HMAC_SHA256,
                    "HS384" => hmac::HMAC_SHA384,
                    _ => hmac::HMAC_SHA512,
                };
                hmac::sign(&hmac::Key::new(algorithm, secret), message)
                    .as_ref()
                    .to_vec()
            }
            (Key::Rsa(pair), _) => {
                let padding: &'static dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    other => panic!("test bug: {other} with an RSA key"),
                };
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(padding, &rng, message, &mut signature)
                    .expect("RSA signature");
                signature
            }
            (Key::P256(pair), "ES256") | (Key::P384(pair), "ES384") => pair
                .sign(&rng, message)
                .expect("ECDSA signature")
                .as_ref()
                .to_vec(),
            (Key::Ed25519(pair), "EdDSA") => pair.sign(message).as_ref().to_vec(),
            (_, other) => panic!("test bug: {other} does not suit this key"),
        }
    }
}

/// `base64url(header).base64url(claims)`.
pub(crate) fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64(header.to_string()), b64(claims.to_string()))
}

/// A compact JWS of `claims` with `header` (which names the `alg`), signed by `key`.
pub(crate) fn token_with_header(key: &Key, header: Value, claims: &Value) -> String {
    let alg = header["alg"]
        .as_str()
        .expect("the header names an alg")
        .to_owned();
    let input = signing_input(&header, claims);
    let signature = key.sign(&alg, input.as_bytes());
    format!("{input}.{}", b64(signature))
}

/// A compact JWS of `claims` signed by `key` with `alg`, naming `kid` if given.
pub(crate) fn token(key: &Key, alg: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({ "alg": alg, "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    token_with_header(key, header, claims)
}

/// An unsecured token: `header.claims.` with an empty signature.
pub(crate) fn unsigned(header: Value, claims: &Value) -> String {
    format!("{}.", signing_input(&header, claims))
}

/// A JWKS document as JSON text.
pub(crate) fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// Verifies `token` against `jwk` with jsonwebtoken, an implementation independent of the
/// gateway's use of it, so that a refused valid token is the gateway's fault, not this file's.
pub(crate) fn self_check(token: &str, jwk: &Value) {
    let parsed: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(jwk.clone()).unwrap_or_else(|e| panic!("test bug: JWK {jwk}: {e}"));
    let key = jsonwebtoken::DecodingKey::from_jwk(&parsed)
        .unwrap_or_else(|e| panic!("test bug: JWK {jwk}: {e}"));
    let header = jsonwebtoken::decode_header(token)
        .unwrap_or_else(|e| panic!("test bug: header of {token}: {e}"));
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("test bug: {:?} token does not verify: {e}", header.alg));
}

/// `value` with `extra`'s fields set.
pub(crate) fn merge(mut value: Value, extra: Value) -> Value {
    for (field, v) in extra.as_object().expect("extra is an object") {
        value[field] = v.clone();
    }
    value
}

/// A `jwt` provider of the test issuer and audience with JWKS `keys`, forwarding `sub` as
/// `x-user`.
pub(crate) fn jwks_provider(name: &str, keys: &[Value], algorithms: &[&str]) -> Value {
    json!({
        "name": name,
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "jwks": jwks(keys),
        "algorithms": algorithms,
        "forwardClaims": [{ "claim": "sub", "header": "x-user" }],
    })
}

/// Like [`jwks_provider`], with one PEM public key.
pub(crate) fn pem_provider(name: &str, pem: &str, algorithms: &[&str]) -> Value {
    json!({
        "name": name,
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "keyPem": pem,
        "algorithms": algorithms,
        "forwardClaims": [{ "claim": "sub", "header": "x-user" }],
    })
}

/// An RS256 token for `acme` (kid `rsa-1`) about `bytes` long, padded with a claim.
pub(crate) fn padded(key: &Key, bytes: usize) -> String {
    let pad = "p".repeat((bytes - 600) * 3 / 4);
    let claims = claims_with("acme", json!({ "pad": pad }));
    token(key, "RS256", Some("rsa-1"), &claims)
}

/// A server answering any request with `body`, counting connections: where a forged token's
/// `jku` points. The gateway must never connect.
pub(crate) async fn attacker_server(body: String) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0; 4096];
                let _ = stream.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all((head + &body).as_bytes()).await;
            });
        }
    });
    (addr, hits)
}

// === resource documents (JSON, which resource files accept) ===

pub(crate) fn consumer(name: &str, groups: &[&str], api_keys: &[&str]) -> String {
    let api_keys: Vec<Value> = api_keys.iter().map(|k| json!({ "key": k })).collect();
    let spec = json!({ "groups": groups, "apiKeys": api_keys });
    json!({ "kind": "Consumer", "name": name, "spec": spec }).to_string()
}

pub(crate) fn policy(name: &str, spec: Value) -> String {
    json!({ "kind": "Policy", "name": name, "spec": spec }).to_string()
}

/// A `jwt` policy of these providers, with `extra` fields (e.g. `stripToken`).
pub(crate) fn jwt(name: &str, providers: &[Value], extra: Value) -> String {
    policy(
        name,
        json!({ "jwt": merge(json!({ "providers": providers }), extra) }),
    )
}

/// The `keys` policy: API keys from `x-api-key` or `?api_key=`.
pub(crate) fn api_keys() -> String {
    let from = json!([{ "header": "x-api-key" }, { "query": "api_key" }]);
    policy("keys", json!({ "apiKey": { "from": from } }))
}

pub(crate) fn authorization(name: &str, rules: Value) -> String {
    policy(name, json!({ "authorization": { "rules": rules } }))
}

/// A Route: `PathPrefix prefix` to the echo upstream, with route-level `policies`.
pub(crate) fn guarded(name: &str, prefix: &str, policies: &[&str]) -> String {
    let rule = json!({
        "matches": [{ "path": { "type": "PathPrefix", "value": prefix } }],
        "backendRefs": [{ "name": "echo" }],
    });
    let spec = json!({ "policies": policies, "rules": [rule] });
    json!({ "kind": "Route", "name": name, "spec": spec }).to_string()
}

// === the gateway under test ===

/// An echo backend and a standalone data plane serving `resources`, the `echo` upstream and an
/// open route `/open` (served once the whole file is).
pub(crate) struct Gateway {
    pub(crate) dp: DataPlane,
    pub(crate) backend: DemoBackend,
    _dir: TempDir,
}

/// What reached the backend.
pub(crate) struct Seen {
    pub(crate) headers: Map<String, Value>,
    pub(crate) query: Value,
    what: String,
}

impl Seen {
    #[track_caller]
    pub(crate) fn has(&self, name: &str, value: &str) -> &Self {
        let got = self.headers.get(name).and_then(Value::as_str);
        let what = &self.what;
        assert_eq!(
            got,
            Some(value),
            "{what}: backend's {name}; it saw {:?}",
            self.headers
        );
        self
    }

    #[track_caller]
    pub(crate) fn lacks(&self, name: &str) -> &Self {
        let what = &self.what;
        let seen = &self.headers;
        assert!(
            !seen.contains_key(name),
            "{what}: {name} reached the backend: {seen:?}"
        );
        self
    }
}

impl Gateway {
    pub(crate) async fn start(name: &str, resources: &[String]) -> Gateway {
        let backend = DemoBackend::start(&format!("echo-id-{name}")).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.yaml");
        let mut all = vec![
            upstream("echo", &[backend.addr()]),
            route("open", "/open", "echo"),
        ];
        all.extend(resources.iter().cloned());
        write_file(&file, docs(&all));
        let dp = DataPlane::start(DataPlaneOpts::standalone(&file)).await;
        wait_served(&dp, "/open/ready", backend.name()).await;
        Gateway {
            dp,
            backend,
            _dir: dir,
        }
    }

    pub(crate) async fn call(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        let url = self.dp.url(path);
        get(&url, headers)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
    }

    pub(crate) async fn bearer(&self, path: &str, token: &str) -> HttpResponse {
        let authorization = format!("Bearer {token}");
        self.call(path, &[("authorization", &authorization)]).await
    }

    /// What the backend saw, once `response` is checked to be its echo of `path`.
    #[track_caller]
    pub(crate) fn echoed(&self, response: &HttpResponse, path: &str, what: &str) -> Seen {
        let path = path.split('?').next().unwrap_or(path);
        if let Err(e) = check_echo(response, self.backend.name(), path) {
            panic!("{what}: expected the backend's echo of {path}: {e:#}");
        }
        let json = response.json().unwrap();
        let headers = json["headers"].as_object().cloned().unwrap_or_default();
        Seen {
            headers,
            query: json["query"].clone(),
            what: what.to_owned(),
        }
    }

    /// `GET path` with `headers`, which must reach the backend.
    pub(crate) async fn pass(&self, path: &str, headers: &[(&str, &str)], what: &str) -> Seen {
        self.echoed(&self.call(path, headers).await, path, what)
    }

    /// `GET path` with `token`, which must reach the backend.
    pub(crate) async fn pass_token(&self, path: &str, token: &str, what: &str) -> Seen {
        self.echoed(&self.bearer(path, token).await, path, what)
    }
}

/// Asserts that `response` is the gateway's error `status`/`code`, not the backend's echo.
#[track_caller]
pub(crate) fn assert_refused(response: &HttpResponse, status: u16, code: &str, what: &str) {
    let text = response.text();
    assert_eq!(
        response.status, status,
        "{what}: expected {status} {code}, got: {text}"
    );
    let json = response
        .json()
        .unwrap_or_else(|e| panic!("{what}: the {status} has no JSON error body: {e:#}"));
    assert!(
        json.get("backend").is_none(),
        "{what}: reached the backend: {text}"
    );
    assert_eq!(json["error"]["status"], status, "{what}: error body {text}");
    assert_eq!(json["error"]["code"], code, "{what}: error body {text}");
}

/// 401 `unauthorized` with a `Bearer` challenge, `error="invalid_token"` if `invalid_token`.
#[track_caller]
pub(crate) fn assert_unauthorized(response: &HttpResponse, what: &str, invalid_token: bool) {
    assert_refused(response, 401, "unauthorized", what);
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer"),
        "{what}: WWW-Authenticate should be a Bearer challenge, got {challenge:?}"
    );
    assert!(
        !invalid_token || challenge.contains(r#"error="invalid_token""#),
        "{what}: a present but invalid token gets error=\"invalid_token\", got {challenge:?}"
    );
}

// === rate limits ===

/// 5 requests per 60 s, burst 0, with the `key` fields given.
pub(crate) fn rate_limit(name: &str, key: Value) -> String {
    let limits = json!([{ "requests": 5, "per": "60s", "burst": 0 }]);
    let spec = merge(json!({ "limits": limits, "scope": "Local" }), key);
    policy(name, json!({ "rateLimit": spec }))
}

/// `n` requests one after another.
pub(crate) async fn burst(
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> Vec<HttpResponse> {
    let mut responses = Vec::new();
    for _ in 0..n {
        responses.push(gw.call(path, headers).await);
    }
    responses
}

/// Asserts the first 5 of `responses` passed and the rest were limited.
#[track_caller]
pub(crate) fn assert_five_pass(responses: &[HttpResponse], what: &str) {
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    let mut expected = vec![200; 5];
    expected.resize(responses.len(), 429);
    assert_eq!(statuses, expected, "{what}: 5 requests per 60s, burst 0");
}

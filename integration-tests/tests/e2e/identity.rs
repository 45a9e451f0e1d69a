//! Identity at the gateway: JWT providers (every algorithm, JWKS and PEM keys, the classic
//! attacks), API keys, Consumers and their groups, authorization rules and rate limits, through
//! real standalone data planes and the demo backend, whose echo shows what reached it.
//!
//! A refused request must never reach the backend: each refusal is checked to be the
//! gateway's JSON error body (not the echo), and the bad tokens use their own paths, which the
//! backend's request log must never show.

use crate::keys;

use std::sync::atomic::Ordering;

use integration_tests::{
    ControlPlane, ControlPlaneOpts, DataPlane, DataPlaneOpts, DemoBackend, eventually, get,
};
use serde_json::{Value, json};

use crate::support::{check_echo, docs, upstream};
use keys::{
    Gateway, Key, api_keys, assert_five_pass, assert_refused, assert_unauthorized, authorization,
    b64, burst, claims, claims_with, consumer, guarded, jwks_provider, jwt, merge, now,
    pem_provider, rate_limit, token,
};

// === JWT ===

/// A valid token passes; its `sub` goes upstream as `x-user`, its Consumer as `x-consumer` and
/// `x-consumer-groups`; forged copies of those headers never reach the backend; the token is
/// read from a header, a query parameter or a cookie, and stripped when told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_tokens_pass_with_their_claims_and_consumer_forwarded() {
    let rsa = Key::rsa();
    let jwks = [rsa.jwk("rsa-1")];
    let corp = merge(
        jwks_provider("corp", &jwks, &["RS256"]),
        json!({ "clockSkew": "30s", "consumerClaim": "sub" }),
    );
    let from_query = merge(
        corp.clone(),
        json!({ "tokenFrom": [{ "query": "access_token" }] }),
    );
    let from_cookie = merge(
        corp.clone(),
        json!({ "tokenFrom": [{ "cookie": "session" }] }),
    );
    // No consumer claim, and a forwarded claim the tokens do not have.
    let plain = merge(
        jwks_provider("plain", &jwks, &["RS256"]),
        json!({ "forwardClaims": [{ "claim": "email", "header": "x-user" }] }),
    );
    let gw = Gateway::start(
        "claims",
        &[
            consumer("acme", &["partners", "beta"], &[]),
            jwt(
                "corp-jwt",
                std::slice::from_ref(&corp),
                json!({ "stripToken": false }),
            ),
            jwt("strip-jwt", &[corp], json!({ "stripToken": true })),
            jwt("query-jwt", &[from_query], json!({ "stripToken": true })),
            jwt("cookie-jwt", &[from_cookie], json!({})),
            jwt("plain-jwt", &[plain], json!({})),
            guarded("api", "/api", &["corp-jwt"]),
            guarded("strip", "/strip", &["strip-jwt"]),
            guarded("query", "/query", &["query-jwt"]),
            guarded("cookie", "/cookie", &["cookie-jwt"]),
            guarded("plain", "/plain", &["plain-jwt"]),
        ],
    )
    .await;
    let rs256 = token(&rsa, "RS256", Some("rsa-1"), &claims("acme"));
    let authorization = format!("Bearer {rs256}");
    let sent = [
        ("authorization", authorization.as_str()),
        ("x-user", "forged"),
        ("x-consumer", "forged"),
        ("x-consumer-groups", "admins"),
    ];

    gw.pass("/api/me", &sent, "RS256 token with forged identity headers")
        .await
        .has("x-user", "acme")
        .has("x-consumer", "acme")
        .has("x-consumer-groups", "partners,beta")
        .has("authorization", &authorization);
    gw.pass_token("/strip/x", &rs256, "stripToken: true")
        .await
        .has("x-user", "acme")
        .lacks("authorization");

    let path = format!("/query/x?access_token={rs256}&x=1");
    let seen = gw.pass(&path, &[], "token in the query, stripToken").await;
    seen.has("x-user", "acme");
    assert_eq!(
        seen.query, "x=1",
        "stripToken removes the token's query parameter only"
    );

    let cookie = format!("theme=dark; session={rs256}");
    let seen = gw
        .pass("/cookie/x", &[("cookie", &cookie)], "token in a cookie")
        .await;
    seen.has("x-user", "acme");
    // A token where the route does not read it is no token.
    let response = gw.bearer("/cookie/x", &rs256).await;
    assert_unauthorized(&response, "cookie route, token in the header", false);

    gw.pass("/plain/x", &sent, "no consumer claim, no email claim")
        .await
        .lacks("x-user")
        .lacks("x-consumer")
        .lacks("x-consumer-groups");
}

/// How a bad-token case must be answered.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// 401, `error="invalid_token"`.
    Invalid,
    /// 401 with a Bearer challenge (no token found).
    Missing,
    /// 401 (invalid_token) or 431 (the header is too large to read).
    TooLarge,
}

/// Every kind of bad token is refused 401 (never forwarded); the clock skew is a leeway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_401_and_never_forwarded() {
    let (rsa, ec, attacker) = (Key::rsa(), Key::p256(), Key::rsa());
    let hmac = Key::hmac(b"the-corp-hmac-secret-of-32-bytes");
    let pem = rsa.public_pem();
    let (jku_addr, jku_hits) = keys::attacker_server(keys::jwks(&[attacker.jwk("rsa-1")])).await;
    let jku = format!("http://{jku_addr}/jwks.json");
    let corp = merge(
        jwks_provider("corp", &[rsa.jwk("rsa-1")], &["RS256"]),
        json!({ "clockSkew": "30s" }),
    );
    // Several key types in one provider (checked last: see `MULTI`): RSA and EC keys; and
    // HS256 allowed beside RS256, an RSA key in the JWKS (beside the secret HS256 needs).
    let multi = jwks_provider(
        "multi",
        &[rsa.jwk("rsa-1"), ec.jwk("ec-1")],
        &["RS256", "ES256"],
    );
    let mixed_secret = Key::hmac(&[7; 32]);
    let mixed_keys = [rsa.jwk("rsa-1"), mixed_secret.jwk("hs-mixed")];
    let mixed = jwks_provider("mixed", &mixed_keys, &["HS256", "RS256"]);
    let by_pem = pem_provider("pem", &pem, &["RS256"]);
    let gw = Gateway::start(
        "bad",
        &[
            consumer("acme", &["partners"], &[]),
            jwt("corp-jwt", &[corp], json!({})),
            jwt("multi-jwt", &[multi], json!({})),
            jwt("mixed-jwt", &[mixed], json!({})),
            jwt("pem-jwt", &[by_pem], json!({})),
            jwt(
                "hmac-jwt",
                &[jwks_provider("hmac", &[hmac.jwk("hs-1")], &["HS256"])],
                json!({}),
            ),
            guarded("api", "/api", &["corp-jwt"]),
            guarded("multi", "/multi", &["multi-jwt"]),
            guarded("mixed", "/mixed", &["mixed-jwt"]),
            guarded("pem", "/pem", &["pem-jwt"]),
            guarded("hmac", "/hmac", &["hmac-jwt"]),
        ],
    )
    .await;
    let now = now();
    let acme = claims("acme");
    let rs = |extra: Value| token(&rsa, "RS256", Some("rsa-1"), &claims_with("acme", extra));
    let by = |key: &Key, alg: &str, kid: Option<&str>| token(key, alg, kid, &acme);
    let forged = |header: Value| keys::token_with_header(&attacker, header, &acme);
    let rsa_pem_as_secret = Key::hmac(pem.as_bytes());
    let trimmed_pem_as_secret = Key::hmac(pem.trim_end().as_bytes());
    let wrong_secret = Key::hmac(b"not-the-secret");

    // What must pass (so that the refusals below are not a route that refuses all).
    #[rustfmt::skip]
    let valid = [
        ("/api", rs(json!({})), "RS256"),
        ("/multi", rs(json!({})), "RS256 beside ES256"),
        ("/multi", by(&ec, "ES256", Some("ec-1")), "ES256 beside RS256"),
        ("/mixed", rs(json!({})), "RS256 beside HS256"),
        ("/mixed", by(&mixed_secret, "HS256", Some("hs-mixed")), "HS256 beside RS256"),
        ("/pem", by(&rsa, "RS256", None), "RS256 by keyPem"),
        ("/hmac", by(&hmac, "HS256", Some("hs-1")), "HS256"),
        ("/api", rs(json!({ "exp": now - 10 })), "expired 10 s ago, within clockSkew 30s"),
        ("/api", rs(json!({ "nbf": now + 10 })), "nbf 10 s ahead, within clockSkew 30s"),
    ];

    let good = rs(json!({}));
    let parts: Vec<&str> = good.split('.').collect();
    let other_signature = rs(json!({ "sub": "bob" }))
        .rsplit('.')
        .next()
        .unwrap()
        .to_owned();
    let admin = b64(claims("admin").to_string());
    let none = |alg: &str| keys::unsigned(json!({ "alg": alg, "kid": "rsa-1" }), &acme);
    use Expect::*;
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, String, Expect)> = vec![
        ("expired an hour ago", "/api", rs(json!({ "exp": now - 3600, "iat": now - 7200 })), Invalid),
        ("expired 45 s ago, clockSkew 30s", "/api", rs(json!({ "exp": now - 45 })), Invalid),
        ("nbf an hour ahead", "/api", rs(json!({ "nbf": now + 3600 })), Invalid),
        ("nbf 45 s ahead, clockSkew 30s", "/api", rs(json!({ "nbf": now + 45 })), Invalid),
        ("no exp", "/api", rs(json!({ "exp": null })), Invalid),
        ("wrong iss", "/api", rs(json!({ "iss": "https://evil.test" })), Invalid),
        ("no iss", "/api", rs(json!({ "iss": null })), Invalid),
        ("wrong aud", "/api", rs(json!({ "aud": "other" })), Invalid),
        ("aud list without api", "/api", rs(json!({ "aud": ["other", "more"] })), Invalid),
        ("RS384, not an allowed alg", "/api", by(&rsa, "RS384", Some("rsa-1")), Invalid),
        ("alg none", "/api", none("none"), Invalid),
        ("alg None", "/api", none("None"), Invalid),
        ("alg NONE", "/api", none("NONE"), Invalid),
        ("alg none, HS256 allowed", "/mixed", none("none"), Invalid),
        ("alg NONE, HS256 allowed", "/mixed", none("NONE"), Invalid),
        ("alg none, no kid", "/api", keys::unsigned(json!({ "alg": "none" }), &acme), Invalid),
        ("HS256 keyed by the RSA PEM, RS256 only", "/api",
            by(&rsa_pem_as_secret, "HS256", Some("rsa-1")), Invalid),
        ("HS256 keyed by the RSA PEM, JWKS allowing HS256", "/mixed",
            by(&rsa_pem_as_secret, "HS256", Some("rsa-1")), Invalid),
        ("HS256 keyed by the RSA PEM, JWKS allowing HS256, no kid", "/mixed",
            by(&rsa_pem_as_secret, "HS256", None), Invalid),
        ("HS256 keyed by the RSA PEM, keyPem provider", "/pem",
            by(&rsa_pem_as_secret, "HS256", None), Invalid),
        ("HS256 keyed by the trimmed RSA PEM, keyPem provider", "/pem",
            by(&trimmed_pem_as_secret, "HS256", None), Invalid),
        ("HS256, wrong secret", "/hmac", by(&wrong_secret, "HS256", Some("hs-1")), Invalid),
        ("HS256, wrong secret, no kid", "/hmac", by(&wrong_secret, "HS256", None), Invalid),
        ("unknown kid, right key", "/api", by(&rsa, "RS256", Some("rsa-2")), Invalid),
        ("RS256 naming the EC key", "/multi", by(&rsa, "RS256", Some("ec-1")), Invalid),
        ("ES256 naming the RSA key", "/multi", by(&ec, "ES256", Some("rsa-1")), Invalid),
        ("ES256 naming an unknown kid", "/multi", by(&ec, "ES256", Some("ec-2")), Invalid),
        ("jku to the attacker's JWKS", "/api",
            forged(json!({ "alg": "RS256", "kid": "rsa-1", "jku": jku })), Invalid),
        ("embedded jwk of the attacker", "/api",
            forged(json!({ "alg": "RS256", "kid": "rsa-1", "jwk": attacker.jwk("rsa-1") })), Invalid),
        ("embedded jwk of the attacker, no kid", "/api",
            forged(json!({ "alg": "RS256", "jwk": attacker.jwk("x") })), Invalid),
        ("tampered payload", "/api", format!("{}.{admin}.{}", parts[0], parts[2]), Invalid),
        ("another token's signature", "/api",
            format!("{}.{}.{other_signature}", parts[0], parts[1]), Invalid),
        ("no signature", "/api", format!("{}.{}.", parts[0], parts[1]), Invalid),
        ("two segments", "/api", "a.b".into(), Invalid),
        ("not a token", "/api", "not a token".into(), Invalid),
        ("three segments of garbage", "/api", "!!!.@@@.###".into(), Invalid),
        ("a good header, garbage after", "/api", format!("{}.e30garbage.c2ln", parts[0]), Invalid),
        ("9 KB, over the default maxTokenBytes", "/api", keys::padded(&rsa, 9_000), Invalid),
        ("22 KB", "/api", keys::padded(&rsa, 22_000), TooLarge),
        ("no Authorization", "/api", String::new(), Missing),
    ];
    let nine = keys::padded(&rsa, 9_000).len();
    assert!(
        (8_193..10_000).contains(&nine),
        "test bug: the 9 KB token has {nine} bytes"
    );

    let basic = gw
        .call("/api/bad-basic", &[("authorization", "Basic YTpi")])
        .await;
    assert_unauthorized(&basic, "Basic credentials, no bearer token", false);

    // Single-key-type providers first, then the providers that list several key types.
    const MULTI: [&str; 2] = ["/multi", "/mixed"];
    for multi in [false, true] {
        for (route, token, what) in valid.iter().filter(|c| MULTI.contains(&c.0) == multi) {
            gw.pass_token(&format!("{route}/ok"), token, what).await;
        }
        for (i, (what, route, token, expect)) in cases.iter().enumerate() {
            if MULTI.contains(route) != multi {
                continue;
            }
            let what = format!("case {i}, {what}");
            let path = format!("{route}/bad-{i}");
            let response = match expect {
                Missing => gw.call(&path, &[]).await,
                _ => gw.bearer(&path, token).await,
            };
            match expect {
                Invalid => assert_unauthorized(&response, &what, true),
                Missing => assert_unauthorized(&response, &what, false),
                TooLarge if response.status == 431 => {}
                TooLarge => assert_unauthorized(&response, &what, true),
            }
        }
        let log = gw.backend.process().stderr();
        let leaked: Vec<&str> = log.lines().filter(|l| l.contains("/bad-")).collect();
        assert!(
            leaked.is_empty(),
            "refused requests reached the backend: {leaked:#?}"
        );
        let fetched = jku_hits.load(Ordering::SeqCst);
        assert_eq!(fetched, 0, "the gateway fetched the jku URL a token named");
    }
}

/// Every algorithm verifies: HMAC by `oct` keys, RSA, EC and Ed25519 keys by JWKS and by PEM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_verifies_with_jwks_and_pem_keys() {
    let hs256 = Key::hmac(&[1; 32]);
    let hs384 = Key::hmac(&[2; 48]);
    let hs512 = Key::hmac(&[3; 64]);
    let (rsa, p256, p384, ed) = (Key::rsa(), Key::p256(), Key::p384(), Key::ed25519());
    // (alg, key, kid, whether the JWK names its alg)
    #[rustfmt::skip]
    let signers: Vec<(&str, &Key, &str, bool)> = vec![
        ("HS256", &hs256, "hs256", true), ("HS384", &hs384, "hs384", false),
        ("HS512", &hs512, "hs512", true),
        ("RS256", &rsa, "rsa", false), ("RS384", &rsa, "rsa", false),
        ("RS512", &rsa, "rsa", false), ("PS256", &rsa, "rsa", false),
        ("PS384", &rsa, "rsa", false), ("PS512", &rsa, "rsa", false),
        ("ES256", &p256, "p256", true), ("ES384", &p384, "p384", false),
        ("EdDSA", &ed, "ed", true),
    ];
    let jwk_of = |key: &Key, kid: &str, alg: &str, named: bool| {
        let jwk = key.jwk(kid);
        if named {
            merge(jwk, json!({ "alg": alg }))
        } else {
            jwk
        }
    };
    // One provider per key type, all in one policy: a token passes with any of them.
    let providers: Vec<Value> = [(0, 3), (3, 9), (9, 11), (11, 12)]
        .iter()
        .map(|&(from, to)| {
            let family = &signers[from..to];
            let mut jwks: Vec<Value> = family
                .iter()
                .map(|&(a, k, kid, n)| jwk_of(k, kid, a, n))
                .collect();
            jwks.dedup();
            let algorithms: Vec<&str> = family.iter().map(|s| s.0).collect();
            jwks_provider(family[0].0, &jwks, &algorithms)
        })
        .collect();
    let rsa_pem = pem_provider("pem-rsa", &rsa.public_pem(), &["RS256", "PS512"]);
    let ed_pem = pem_provider("pem-ed", &ed.public_pem(), &["EdDSA"]);
    // Two providers in one policy: a token passes with either.
    let ec_pems = [
        pem_provider("pem-p256", &p256.public_pem(), &["ES256"]),
        pem_provider("pem-p384", &p384.public_pem(), &["ES384"]),
    ];
    let gw = Gateway::start(
        "algs",
        &[
            jwt("all", &providers, json!({})),
            jwt("pem-rsa", &[rsa_pem], json!({})),
            jwt("pem-ec", &ec_pems, json!({})),
            jwt("pem-ed", &[ed_pem], json!({})),
            guarded("jwks", "/jwks", &["all"]),
            guarded("pem-rsa", "/pem-rsa", &["pem-rsa"]),
            guarded("pem-ec", "/pem-ec", &["pem-ec"]),
            guarded("pem-ed", "/pem-ed", &["pem-ed"]),
        ],
    )
    .await;

    for &(alg, key, kid, named) in &signers {
        let sub = format!("user-{alg}");
        let token = token(key, alg, Some(kid), &claims(&sub));
        let jwk = jwk_of(key, kid, alg, named);
        keys::self_check(&token, &jwk);
        let what = format!("{alg} with a JWKS {} key", jwk["kty"]);
        gw.pass_token(&format!("/jwks/{alg}"), &token, &what)
            .await
            .has("x-user", &sub);
    }
    for (route, alg, key) in [
        ("/pem-rsa", "RS256", &rsa),
        ("/pem-rsa", "PS512", &rsa),
        ("/pem-ec", "ES256", &p256),
        ("/pem-ec", "ES384", &p384),
        ("/pem-ed", "EdDSA", &ed),
    ] {
        let sub = format!("pem-{alg}");
        let token = token(key, alg, None, &claims(&sub));
        let what = format!("{alg} with a keyPem key");
        gw.pass_token(&format!("{route}/{alg}"), &token, &what)
            .await
            .has("x-user", &sub);
    }
}

/// One provider may list algorithms of several key types (as `[RS256, ES256]`): each token
/// verifies with the key its `kid` names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_provider_accepts_algorithms_of_several_key_types() {
    let (hmac, rsa, ec, ed) = (Key::hmac(&[9; 32]), Key::rsa(), Key::p256(), Key::ed25519());
    #[rustfmt::skip]
    let signers = [
        ("HS256", &hmac, "hs"), ("RS256", &rsa, "rsa"), ("PS256", &rsa, "rsa"),
        ("ES256", &ec, "ec"), ("EdDSA", &ed, "ed"),
    ];
    let jwks = [hmac.jwk("hs"), rsa.jwk("rsa"), ec.jwk("ec"), ed.jwk("ed")];
    let algorithms: Vec<&str> = signers.iter().map(|s| s.0).collect();
    let corp = jwks_provider("corp", &jwks, &algorithms);
    let gw = Gateway::start(
        "multi",
        &[
            jwt("corp-jwt", &[corp], json!({})),
            guarded("api", "/api", &["corp-jwt"]),
        ],
    )
    .await;
    for (alg, key, kid) in signers {
        let sub = format!("user-{alg}");
        let token = token(key, alg, Some(kid), &claims(&sub));
        let what = format!("{alg} from a provider allowing {algorithms:?}");
        gw.pass_token(&format!("/api/{alg}"), &token, &what)
            .await
            .has("x-user", &sub);
    }
}

// === API keys, authorization ===

/// API keys name a Consumer, whose name and groups go upstream; the key itself does not.
/// Authorization runs after authentication whatever the listing order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_identify_consumers_and_groups_authorize_them() {
    let gw = Gateway::start(
        "keys",
        &[
            consumer("acme", &["partners", "beta"], &["acme-key-1"]),
            consumer("bob", &["basic"], &["bob-key-1"]),
            api_keys(),
            authorization("partners-only", json!([{ "allowGroups": ["partners"] }])),
            guarded("keys", "/keys", &["keys"]),
            guarded("partners", "/partners", &["partners-only", "keys"]),
        ],
    )
    .await;

    let sent = [
        ("x-api-key", "acme-key-1"),
        ("x-consumer", "bob"),
        ("x-consumer-groups", "admins"),
    ];
    gw.pass(
        "/keys/h",
        &sent,
        "acme's key in x-api-key, forged identity headers",
    )
    .await
    .has("x-consumer", "acme")
    .has("x-consumer-groups", "partners,beta")
    .lacks("x-api-key");
    let seen = gw
        .pass(
            "/keys/q?api_key=acme-key-1&x=1",
            &[],
            "acme's key in ?api_key",
        )
        .await;
    seen.has("x-consumer", "acme")
        .has("x-consumer-groups", "partners,beta");
    assert_eq!(
        seen.query, "x=1",
        "the api_key parameter is removed, the rest kept"
    );
    gw.pass("/keys/b", &[("x-api-key", "bob-key-1")], "bob's key")
        .await
        .has("x-consumer", "bob")
        .has("x-consumer-groups", "basic");

    for (what, path, headers) in [
        ("a wrong key", "/keys/x", &[("x-api-key", "acme-key-2")][..]),
        ("a wrong key in the query", "/keys/x?api_key=nope", &[]),
        ("no key", "/keys/x", &[]),
        (
            "no key, a forged x-consumer",
            "/keys/x",
            &[("x-consumer", "acme")],
        ),
        ("no key on the authorized route", "/partners/x", &[]),
    ] {
        assert_refused(&gw.call(path, headers).await, 401, "unauthorized", what);
    }
    let acme = [("x-api-key", "acme-key-1")];
    gw.pass("/partners/a", &acme, "acme is a partner").await;
    let bob = gw.call("/partners/b", &[("x-api-key", "bob-key-1")]).await;
    assert_refused(&bob, 403, "forbidden", "bob is not in partners");
}

/// A request is allowed when any rule holds, a rule when all its conditions hold: groups,
/// consumers, and claims (`All` of a space-separated scope, `Any` of a list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_rules_combine_groups_consumers_and_claims() {
    let rsa = Key::rsa();
    let corp = merge(
        jwks_provider("corp", &[rsa.jwk("rsa-1")], &["RS256"]),
        json!({ "consumerClaim": "sub" }),
    );
    let read = json!({ "claim": "scope", "values": ["orders:read"], "match": "All" });
    let ops = json!({ "claim": "roles", "values": ["ops", "admin"], "match": "Any" });
    let gw = Gateway::start(
        "authz",
        &[
            consumer("acme", &["partners", "beta"], &[]),
            consumer("bob", &["basic"], &[]),
            consumer("dave", &["basic"], &[]),
            jwt("corp-jwt", &[corp], json!({})),
            authorization(
                "partners-only",
                json!([
                    { "allowGroups": ["partners"] },
                    { "allowConsumers": ["dave"] },
                    { "requireClaims": [read] },
                ]),
            ),
            authorization(
                "basic-ops",
                json!([{ "allowGroups": ["basic"], "requireClaims": [ops] }]),
            ),
            // Listed before the jwt policy, run after it.
            guarded("orders", "/orders", &["partners-only", "corp-jwt"]),
            guarded("ops", "/ops", &["corp-jwt", "basic-ops"]),
        ],
    )
    .await;
    let as_ =
        |sub: &str, extra: Value| token(&rsa, "RS256", Some("rsa-1"), &claims_with(sub, extra));

    #[rustfmt::skip]
    let cases = [
        ("/orders", "acme: group partners", as_("acme", json!({})), true),
        ("/orders", "dave: an allowed consumer", as_("dave", json!({})), true),
        ("/orders", "bob, no scope", as_("bob", json!({})), false),
        ("/orders", "bob, scope orders:read orders:write",
            as_("bob", json!({ "scope": "orders:read orders:write" })), true),
        ("/orders", "bob, scope orders:write", as_("bob", json!({ "scope": "orders:write" })), false),
        ("/orders", "bob, scope orders:readonly",
            as_("bob", json!({ "scope": "orders:readonly" })), false),
        ("/ops", "bob, roles [dev, ops]", as_("bob", json!({ "roles": ["dev", "ops"] })), true),
        ("/ops", "bob, roles [dev]", as_("bob", json!({ "roles": ["dev"] })), false),
        ("/ops", "bob, no roles", as_("bob", json!({})), false),
        ("/ops", "acme (not basic), roles [ops]", as_("acme", json!({ "roles": ["ops"] })), false),
    ];
    for (i, (route, what, token, allowed)) in cases.iter().enumerate() {
        let path = format!("{route}/{i}");
        if *allowed {
            gw.pass_token(&path, token, what).await;
        } else {
            assert_refused(&gw.bearer(&path, token).await, 403, "forbidden", what);
        }
    }
    let response = gw.call("/orders/none", &[]).await;
    assert_unauthorized(&response, "no token on /orders", false);
}

// === rate limits ===

/// 5 per 60 s by client address: 5 of 8 pass, each with `RateLimit`; the rest are 429
/// `rate_limited` with `Retry-After`, `RateLimit-Policy` and `RateLimit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_by_client_ip_answer_429_with_retry_after() {
    let gw = Gateway::start(
        "rl-ip",
        &[
            rate_limit("per-client", json!({ "key": "ClientIP" })),
            guarded("limited", "/limited", &["per-client"]),
        ],
    )
    .await;
    let responses = burst(&gw, "/limited/x", &[], 8).await;
    assert_five_pass(&responses, "one client");
    for (i, response) in responses.iter().enumerate() {
        let what = format!("request {}", i + 1);
        let headers = &response.headers;
        if i < 5 {
            gw.echoed(response, "/limited/x", &what);
            let limit = response.header("ratelimit");
            assert!(
                limit.is_some(),
                "{what}: an allowed response has RateLimit: {headers:?}"
            );
            continue;
        }
        assert_refused(response, 429, "rate_limited", &what);
        let retry_after = response.header("retry-after").unwrap_or_default();
        let seconds: u64 = retry_after.trim().parse().unwrap_or_else(|_| {
            panic!("{what}: Retry-After {retry_after:?} is not an integer: {headers:?}")
        });
        assert!((1..=60).contains(&seconds), "{what}: Retry-After {seconds}");
        for name in ["ratelimit-policy", "ratelimit"] {
            assert!(
                response.header(name).is_some(),
                "{what}: no {name}: {headers:?}"
            );
        }
    }
    // The route without the policy is not limited.
    gw.pass("/open/after", &[], "the open route").await;
}

/// Keyed by a header, each tenant has its own bucket; keyed by consumer, each consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_by_header_and_by_consumer_count_each_key_apart() {
    let gw = Gateway::start(
        "rl-keys",
        &[
            consumer("acme", &["partners"], &["acme-key-1"]),
            consumer("bob", &["basic"], &["bob-key-1"]),
            api_keys(),
            rate_limit(
                "per-tenant",
                json!({ "key": "Header", "header": "x-tenant" }),
            ),
            rate_limit("per-consumer", json!({ "key": "Consumer" })),
            guarded("tenant", "/tenant", &["per-tenant"]),
            // Listed first, counted once the key has named the consumer.
            guarded("consumer", "/consumer", &["per-consumer", "keys"]),
        ],
    )
    .await;
    let a = burst(&gw, "/tenant/x", &[("x-tenant", "a")], 6).await;
    let b = burst(&gw, "/tenant/x", &[("x-tenant", "b")], 6).await;
    assert_five_pass(&a, "tenant a");
    assert_five_pass(&b, "tenant b, after a used its 5");
    assert_refused(&a[5], 429, "rate_limited", "tenant a's 6th");

    let acme = burst(&gw, "/consumer/x", &[("x-api-key", "acme-key-1")], 6).await;
    let bob = burst(&gw, "/consumer/x", &[("x-api-key", "bob-key-1")], 6).await;
    assert_five_pass(&acme, "consumer acme");
    assert_five_pass(&bob, "consumer bob, after acme used its 5");
    assert_refused(&bob[5], 429, "rate_limited", "bob's 6th");
}

// === through a control plane ===

/// A Consumer applied through a control plane is stored with the key's hash only (reads, the
/// data plane's cache), and its key works on a data plane fed by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_applied_to_a_control_plane_keeps_only_the_key_hash() {
    let backend = DemoBackend::start("echo-id-cp").await;
    let cp = ControlPlane::start(ControlPlaneOpts::embedded()).await;
    let dp = DataPlane::start(DataPlaneOpts::control_planes([cp.url()])).await;
    let ctl = cp.ctl();
    let secret = "plain-secret-123";
    let yaml = docs(&[
        upstream("echo", &[backend.addr()]),
        consumer("carol", &["partners"], &[secret]),
        api_keys(),
        guarded("keyed", "/keyed", &["keys"]),
    ]);
    ctl.apply_yaml(&yaml, &[]).await.success();

    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    let hash: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    for format in ["yaml", "json"] {
        let shown = ctl.run(&["get", "consumers", "-o", format]).await;
        shown.success();
        let out = &shown.stdout;
        assert!(
            out.contains("keyHash"),
            "no keyHash in `get consumers`:\n{shown}"
        );
        assert!(
            out.contains(&hash),
            "keyHash is the key's SHA-256 in hex:\n{shown}"
        );
        assert!(
            !out.contains(secret),
            "the key is stored in the clear:\n{shown}"
        );
    }

    let response = eventually("the data plane to admit carol's key", || async {
        let response = get(&dp.url("/keyed/x"), &[("x-api-key", secret)]).await?;
        check_echo(&response, backend.name(), "/keyed/x")?;
        Ok(response)
    })
    .await;
    let seen = response.json().unwrap()["headers"].clone();
    assert_eq!(seen["x-consumer"], "carol", "{seen}");
    assert!(
        seen.get("x-api-key").is_none(),
        "the key reached the backend: {seen}"
    );
    let by_hash = get(&dp.url("/keyed/x"), &[("x-api-key", &hash)])
        .await
        .unwrap();
    assert_refused(
        &by_hash,
        401,
        "unauthorized",
        "the hash itself is not a key",
    );

    dp.wait_cached().await;
    let cached = std::fs::read(dp.cache_dir().join("snapshot.bin")).unwrap();
    let in_clear = cached.windows(secret.len()).any(|w| w == secret.as_bytes());
    assert!(
        !in_clear,
        "the key is in the data plane's cache in the clear"
    );
}

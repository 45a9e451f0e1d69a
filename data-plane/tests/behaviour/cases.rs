//! The behaviour table: what the gateway does to a request, whatever protocol it came on.

pub(crate) use super::case::{Case, case};
use super::clients::Protocol;

/// Backends `public`, `admin` and `other`; `{name}` becomes the backend's address.
pub(crate) const CONFIG: &str = r#"
kind: Upstream
name: public
spec: { endpoints: [{ address: "{public}" }] }
---
kind: Upstream
name: admin
spec: { endpoints: [{ address: "{admin}" }] }
---
kind: Upstream
name: other
spec: { endpoints: [{ address: "{other}" }] }
---
kind: Policy
name: deny-all
spec: { ipAccess: { deny: [0.0.0.0/0, "::/0"] } }
---
kind: Policy
name: loopback-only
spec: { ipAccess: { allow: [127.0.0.0/8] } }
---
kind: Policy
name: web
spec:
  cors: { allowOrigins: [https://app.example.com], allowMethods: [GET, PUT], allowHeaders: [x-token], exposeHeaders: [x-trace], allowCredentials: true, maxAge: 600s }
---
kind: Policy
name: small
spec: { requestLimits: { maxBodyBytes: 16, maxUriBytes: 64, maxHeaderBytes: 2048 } }
---
kind: Route
name: admin
spec:
  policies: [deny-all]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /admin } }]
      backendRefs: [{ name: admin }]
---
kind: Route
name: public
spec:
  rules:
    - matches: [{ path: { type: PathPrefix, value: /public } }]
      backendRefs: [{ name: public }]
    - matches: [{ path: { type: PathPrefix, value: /edit } }]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: { set: [{ name: x-env, value: prod }, { name: x-forwarded-proto, value: https }], add: [{ name: x-added, value: "1" }], remove: [x-debug] }
        - type: ResponseHeaderModifier
          responseHeaderModifier: { set: [{ name: server, value: gateway }], add: [{ name: x-resp, value: "1" }], remove: [x-backend-public] }
      backendRefs: [{ name: public }]
    - matches: [{ path: { type: PathPrefix, value: /v1/users } }]
      filters:
        - type: URLRewrite
          urlRewrite: { hostname: users.internal, path: { type: ReplacePrefixMatch, replacePrefixMatch: /v2/people } }
      backendRefs: [{ name: public }]
    - matches: [{ path: { type: Exact, value: /legacy } }]
      filters:
        - type: URLRewrite
          urlRewrite: { path: { type: ReplaceFullPath, replaceFullPath: /modern } }
      backendRefs: [{ name: public }]
    - matches: [{ path: { type: PathPrefix, value: /old } }]
      filters:
        - type: RequestRedirect
          requestRedirect: { scheme: https, hostname: new.example.com, statusCode: 301, path: { type: ReplacePrefixMatch, replacePrefixMatch: /new } }
    - matches: [{ path: { type: Exact, value: /moved } }]
      filters:
        - type: RequestRedirect
          requestRedirect: { path: { type: ReplaceFullPath, replaceFullPath: /new-home } }
    - matches: [{ path: { type: PathPrefix, value: /cors } }]
      policies: [web]
      backendRefs: [{ name: public }]
    - matches: [{ path: { type: PathPrefix, value: /limited } }]
      policies: [small]
      backendRefs: [{ name: public }]
    - matches: [{ path: { type: PathPrefix, value: /local } }]
      policies: [loopback-only]
      backendRefs: [{ name: other }]
---
kind: Consumer
name: acme
spec: { groups: [partners, beta], apiKeys: [{ key: acme-key-1 }] }
---
kind: Consumer
name: bob
spec: { groups: [basic], apiKeys: [{ key: bob-key-12 }] }
---
kind: Policy
name: corp-jwt
spec:
  jwt:
    providers:
      - name: corp
        issuer: https://idp.test
        audiences: [api]
        jwks: '{"keys":[{"kty":"oct","kid":"t1","k":"YmVoYXZpb3VyLXRhYmxlLWhtYWMtc2VjcmV0"}]}'
        algorithms: [HS256]
        forwardClaims: [{ claim: sub, header: x-user }]
        consumerClaim: sub
---
kind: Policy
name: keys
spec: { apiKey: { from: [{ header: x-api-key }, { query: api_key }] } }
---
kind: Policy
name: partners
spec: { authorization: { rules: [{ allowGroups: [partners] }] } }
---
kind: Policy
name: tenant-limit
spec: { rateLimit: { limits: [{ requests: 1, per: 3600s }], key: Header, header: x-tenant } }
---
kind: Policy
name: blocker
spec:
  requestValidation:
    block:
      - { in: Path, pattern: '\.(php|asp)$' }
      - { in: Query, pattern: '(?i)union.+select' }
      - { in: Query, name: id, pattern: '[^0-9]' }
      - { in: Header, name: user-agent, pattern: sqlmap }
---
kind: Policy
name: checked
spec:
  requestValidation:
    jsonSchema: '{"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}, "additionalProperties": false}'
    query: [{ name: page, type: Integer, required: true }]
---
kind: Upstream
name: flaky
spec: { endpoints: [{ address: "{failing}" }, { address: "{public}" }] }
---
kind: Route
name: retried
spec:
  rules:
    - matches: [{ path: { type: PathPrefix, value: /retried } }]
      backendRefs: [{ name: flaky }]
      retry: { attempts: 2, backoff: 0.001s, codes: [503], nonIdempotent: true }
---
kind: Upstream
name: auth-service
spec:
  endpoints: [{ address: '{auth}' }]
---
kind: Policy
name: sso
spec:
  externalAuth:
    backendRef: { name: auth-service }
    path: /check
    headersToAuth: [authorization]
    headersFromAuth: [x-auth-user]
---
kind: Route
name: identity
spec:
  rules:
    - matches: [{ path: { type: PathPrefix, value: /authed } }]
      policies: [sso]
      backendRefs: [{ name: public }]
    - matches: [{ path: { type: PathPrefix, value: /guarded } }]
      policies: [blocker]
      backendRefs: [{ name: public }]
    - matches: [{ path: { type: PathPrefix, value: /checked } }]
      policies: [checked]
      backendRefs: [{ name: public }]
    - matches: [{ path: { type: PathPrefix, value: /jwt } }]
      policies: [tenant-limit, corp-jwt]
      backendRefs: [{ name: public }]
    - matches: [{ path: { type: PathPrefix, value: /keyed } }]
      policies: [partners, keys]
      backendRefs: [{ name: public }]
    - matches: [{ path: { type: PathPrefix, value: /metered } }]
      policies: [tenant-limit]
      backendRefs: [{ name: public }]
---
kind: Route
name: raw
spec:
  normalizePath: false
  rules:
    - matches: [{ path: { type: PathPrefix, value: /raw } }]
      backendRefs: [{ name: other }]
"#;

/// The HMAC secret of `corp-jwt`'s key (base64url in the config).
const JWT_SECRET: &[u8] = b"behaviour-table-hmac-secret";

/// A token of `corp-jwt`'s issuer and audience for `sub`, expiring `exp_in` seconds from now.
fn token(sub: &str, exp_in: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let claims = serde_json::json!({
        "sub": sub, "iss": "https://idp.test", "aud": "api", "exp": now + exp_in,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("t1".into());
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET).expect("an HMAC key");
    format!(
        "Bearer {}",
        jsonwebtoken::encode(&header, &claims, &key).expect("a token")
    )
}

/// The identity and traffic policies, in their fixed order.
fn policies() -> Vec<Case> {
    let unsigned = "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhY21lIiwiaXNzIjoiaHR0cHM6Ly9pZHAudGVzdCIsImF1ZCI6ImFwaSIsImV4cCI6NDEwMjQ0NDgwMH0.";
    vec![
        case("jwt: a valid token", "GET", "/jwt/a")
            .header("authorization", &token("acme", 300))
            .header("x-consumer", "forged")
            .header("x-tenant", "{protocol}-jwt")
            .to("public", "/jwt/a")
            .saw("x-user", "acme")
            .saw("x-consumer", "acme")
            .saw("x-consumer-groups", "partners,beta")
            .saw_any("authorization")
            .responds("ratelimit", "\"tenant-limit\";r=0;t=3600"),
        case("jwt: no token", "GET", "/jwt/a")
            .error(401, "unauthorized")
            .responds("www-authenticate", "Bearer"),
        case("jwt: an expired token", "GET", "/jwt/a")
            .header("authorization", &token("acme", -120))
            .error(401, "unauthorized")
            .responds("www-authenticate", "Bearer error=\"invalid_token\""),
        case("jwt: alg none", "GET", "/jwt/a")
            .header("authorization", unsigned)
            .error(401, "unauthorized"),
        case(
            "jwt before the rate limit: a bad token does not spend the tenant's request",
            "GET",
            "/jwt/a",
        )
        .header("x-tenant", "{protocol}-order")
        .error(401, "unauthorized"),
        case("rate limit: the tenant's only request", "GET", "/metered/a")
            .header("x-tenant", "{protocol}-order")
            .to("public", "/metered/a")
            .responds("ratelimit", "\"tenant-limit\";r=0;t=3600"),
        case("rate limit: the next one is refused", "GET", "/metered/a")
            .header("x-tenant", "{protocol}-order")
            .error(429, "rate_limited")
            .responds("retry-after", "3600")
            .responds("ratelimit-policy", "\"tenant-limit\";q=1;w=3600")
            .responds("ratelimit", "\"tenant-limit\";r=0;t=3600"),
        case(
            "apiKey: a consumer's key, from the query",
            "GET",
            "/keyed/a?api_key=acme-key-1&x=1",
        )
        .header("x-consumer-groups", "forged")
        .to("public", "/keyed/a?x=1")
        .saw("x-consumer", "acme")
        .saw("x-consumer-groups", "partners,beta"),
        case("apiKey: from the header", "GET", "/keyed/a")
            .header("x-api-key", "acme-key-1")
            .to("public", "/keyed/a")
            .not_saw("x-api-key")
            .saw("x-consumer", "acme"),
        case("apiKey: a key of no consumer", "GET", "/keyed/a")
            .header("x-api-key", "nobody-key-1")
            .error(401, "unauthorized"),
        case(
            "requestValidation: a body the schema allows",
            "POST",
            "/checked/a?page=1",
        )
        .body(&[br#"{"name":"a"}"#], true)
        .to("public", "/checked/a?page=1"),
        case(
            "requestValidation: the same, chunked",
            "POST",
            "/checked/a?page=1",
        )
        .body(&[br#"{"na"#, br#"me":"a"}"#], false)
        .to("public", "/checked/a?page=1"),
        case(
            "requestValidation: a field of the wrong type",
            "POST",
            "/checked/a?page=1",
        )
        .body(&[br#"{"name":5}"#], true)
        .error(400, "invalid_request"),
        case(
            "requestValidation: an extra field",
            "POST",
            "/checked/a?page=1",
        )
        .body(&[br#"{"name":"a","#, br#""admin":true}"#], false)
        .error(400, "invalid_request"),
        case("requestValidation: not JSON", "POST", "/checked/a?page=1")
            .body(&[b"name=a"], true)
            .error(400, "invalid_request"),
        case(
            "requestValidation: a query parameter of the wrong type",
            "GET",
            "/checked/a?page=two",
        )
        .error(400, "invalid_request"),
        case(
            "requestValidation: a required query parameter missing",
            "GET",
            "/checked/a",
        )
        .error(400, "invalid_request"),
        case(
            "authorization: a consumer outside the group",
            "GET",
            "/keyed/a",
        )
        .header("x-api-key", "bob-key-12")
        .error(403, "forbidden"),
    ]
}

pub(crate) fn all() -> Vec<Case> {
    let origin = "https://app.example.com";
    let mut cases = policies();
    cases.extend(super::retries::all());
    cases.extend(vec![
        case("plain request", "GET", "/public/x?q=1")
            .to("public", "/public/x?q=1")
            .saw("x-forwarded-for", "127.0.0.1")
            .saw("x-forwarded-proto", "http")
            .saw("x-forwarded-host", "example.com")
            .saw("host", "example.com")
            .saw_any("x-request-id")
            .responds("x-backend-public", "1")
            .lacks("x-backend-private"),
        case("hop-by-hop request headers stay", "GET", "/public/hop")
            .header("proxy-authorization", "Basic eA==")
            .header("te", "trailers")
            .to("public", "/public/hop")
            .not_saw("proxy-authorization")
            .not_saw("te"),
        case("connection-listed headers stay", "GET", "/public/hop")
            .header("connection", "x-secret")
            .header("x-secret", "1")
            .only(&Protocol::HTTP1)
            .to("public", "/public/hop")
            .not_saw("x-secret"),
        case(
            "an untrusted client's forwarding headers are replaced",
            "GET",
            "/public/f",
        )
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.test")
        .to("public", "/public/f")
        .saw("x-forwarded-for", "127.0.0.1")
        .saw("x-forwarded-proto", "http")
        .saw("x-forwarded-host", "example.com"),
        case("header modifiers", "GET", "/edit/x")
            .header("x-debug", "1")
            .header("x-env", "dev")
            .to("public", "/edit/x")
            .saw("x-env", "prod")
            .saw("x-added", "1")
            .saw("x-forwarded-proto", "https")
            .not_saw("x-debug")
            .responds("server", "gateway")
            .responds("x-resp", "1")
            .lacks("x-backend-public"),
        case("URLRewrite: prefix and hostname", "GET", "/v1/users/7?q=1")
            .to("public", "/v2/people/7?q=1")
            .saw("host", "users.internal")
            .saw("x-forwarded-host", "example.com"),
        case("URLRewrite: the prefix alone", "GET", "/v1/users").to("public", "/v2/people"),
        case("URLRewrite: full path", "GET", "/legacy?x=1").to("public", "/modern?x=1"),
        case("RequestRedirect", "GET", "/old/page?a=b")
            .status(301)
            .responds("location", "https://new.example.com/new/page?a=b"),
        case(
            "RequestRedirect keeps the client's host and port",
            "GET",
            "/moved?a=1",
        )
        .host("example.com:8080")
        .status(302)
        .responds("location", "{scheme}://example.com:8080/new-home?a=1"),
        case("CORS preflight, allowed origin", "OPTIONS", "/cors/x")
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .status(204)
            .responds("access-control-allow-origin", origin)
            .responds("access-control-allow-methods", "GET, PUT")
            .responds("access-control-allow-headers", "x-token")
            .responds("access-control-allow-credentials", "true")
            .responds("access-control-max-age", "600")
            .responds("vary", "origin"),
        case("CORS preflight, disallowed method", "OPTIONS", "/cors/x")
            .header("origin", origin)
            .header("access-control-request-method", "DELETE")
            .status(204)
            .lacks("access-control-allow-origin"),
        case("CORS preflight, disallowed origin", "OPTIONS", "/cors/x")
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "GET")
            .status(204)
            .lacks("access-control-allow-origin")
            .lacks("access-control-allow-methods"),
        case("CORS actual request, allowed origin", "GET", "/cors/x")
            .header("origin", origin)
            .to("public", "/cors/x")
            .responds("access-control-allow-origin", origin)
            .responds("access-control-allow-credentials", "true")
            .responds("access-control-expose-headers", "x-trace")
            .responds("vary", "origin"),
        case("CORS actual request, disallowed origin", "GET", "/cors/x")
            .header("origin", "https://evil.example")
            .to("public", "/cors/x")
            .lacks("access-control-allow-origin"),
        case("a plain OPTIONS is forwarded", "OPTIONS", "/cors/x").to("public", "/cors/x"),
        case("body within maxBodyBytes", "POST", "/limited/a")
            .body(&[b"0123456789abcdef"], true)
            .to("public", "/limited/a"),
        case("declared body over maxBodyBytes", "POST", "/limited/a")
            .body(&[b"0123456789abcdefg"], true)
            .error(413, "body_too_large"),
        case("streamed body over maxBodyBytes", "POST", "/limited/a")
            .body(&[b"0123456789", b"0123456789"], false)
            .error(413, "body_too_large"),
        case("streamed body within maxBodyBytes", "POST", "/limited/a")
            .body(&[b"01234567", b"89abcdef"], false)
            .to("public", "/limited/a"),
        case(
            "target over maxUriBytes",
            "GET",
            &format!("/limited/{}", "a".repeat(60)),
        )
        .error(414, "uri_too_long"),
        case("headers over maxHeaderBytes", "GET", "/limited/a")
            .header("x-big", &"b".repeat(3000))
            .error(431, "request_header_too_large"),
        case("ipAccess deny", "GET", "/admin/x").error(403, "forbidden"),
        case("ipAccess allow", "GET", "/local/x").to("other", "/local/x"),
        case(
            "ipAccess ignores an untrusted X-Forwarded-For",
            "GET",
            "/local/x",
        )
        .header("x-forwarded-for", "10.0.0.1")
        .to("other", "/local/x"),
        case("dot segments", "GET", "/public/a/../b/./c").to("public", "/public/b/c"),
        case(
            "duplicate slashes and unreserved escapes",
            "GET",
            "/public//%61%7e?x=%2F",
        )
        .to("public", "/public/a~?x=%2F"),
        case(
            "escapes of reserved characters stay, upper-cased",
            "GET",
            "/public/a%3ab",
        )
        .to("public", "/public/a%3Ab"),
        case(
            "encoded dot segments climb to a protected route",
            "GET",
            "/public/%2e%2e/admin",
        )
        .error(403, "forbidden"),
        case("an encoded slash", "GET", "/public/a%2fb").error(400, "bad_path"),
        case("an invalid escape", "GET", "/public/a%zz").error(400, "bad_path"),
        case(
            "a route that opted out of normalisation",
            "GET",
            "/raw/a/../b",
        )
        .to("other", "/raw/a/../b"),
        case(
            "an opted-out route takes what normalisation refuses",
            "GET",
            "/raw/a%2Fb",
        )
        .to("other", "/raw/a%2Fb"),
        case("underscore header names are dropped", "GET", "/public/u")
            .header("x_user", "root")
            .to("public", "/public/u")
            .not_saw("x_user"),
        case(
            "Transfer_Encoding next to Content-Length is not smuggled",
            "POST",
            "/public/s",
        )
        .header("transfer_encoding", "chunked")
        .body(&[b"hello"], true)
        .to("public", "/public/s")
        .not_saw("transfer_encoding")
        .saw("content-length", "5"),
        case("a control character in a header value", "GET", "/public/c")
            .header("x-bad", "a\u{1}b")
            .only(&Protocol::HTTP1)
            .error(400, "bad_request"),
        case("no route", "GET", "/nowhere").error(404, "route_not_found"),
    ]);
    cases
}

pub(crate) fn underscores_rejected() -> Vec<Case> {
    vec![
        case("underscore header names refused", "GET", "/public/u")
            .header("x_user", "root")
            .error(400, "bad_request"),
        case("other headers pass", "GET", "/public/u")
            .header("x-user", "root")
            .to("public", "/public/u")
            .saw("x-user", "root"),
    ]
}

pub(crate) fn underscores_allowed() -> Vec<Case> {
    vec![
        case("underscore header names allowed", "GET", "/public/u")
            .header("x_user", "root")
            .to("public", "/public/u")
            .saw("x_user", "root"),
    ]
}

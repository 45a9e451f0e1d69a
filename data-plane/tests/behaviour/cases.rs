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
kind: Route
name: raw
spec:
  normalizePath: false
  rules:
    - matches: [{ path: { type: PathPrefix, value: /raw } }]
      backendRefs: [{ name: other }]
"#;

pub(crate) fn all() -> Vec<Case> {
    let origin = "https://app.example.com";
    vec![
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
    ]
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

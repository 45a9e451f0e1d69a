//! The Policy kind and route filters: every new field's bad values are refused, naming the
//! resource and the field.

use super::{check, errors, with_upstream};

const POLICIES: &str = "kind: Policy\nname: office\nspec:\n  ipAccess: { allow: [10.0.0.0/8], deny: [10.9.0.0/16] }\n---\nkind: Policy\nname: web\nspec:\n  cors: { allowOrigins: ['https://app.example.com', 'https://*.example.com'], allowMethods: [GET, POST], allowHeaders: [x-token], exposeHeaders: [x-trace], allowCredentials: true, maxAge: 600s }\n---\nkind: Policy\nname: small\nspec:\n  requestLimits: { maxBodyBytes: 1024, maxUriBytes: 2048, maxHeaderBytes: 8192 }\n---\nkind: Policy\nname: everywhere\nspec:\n  global: true\n  requestLimits: { maxBodyBytes: 10485760 }\n";

fn with_policies(route: &str) -> String {
    with_upstream(&format!("{POLICIES}---\n{route}"))
}

#[test]
fn accepts_filters_and_policies() {
    check(&with_policies(
        "kind: Route\nname: r\nspec:\n  policies: [office]\n  normalizePath: false\n  rules:\n    - matches: [{ path: { type: PathPrefix, value: /api } }]\n      policies: [web, small]\n      filters:\n        - type: RequestHeaderModifier\n          requestHeaderModifier: { set: [{ name: x-env, value: prod }], add: [{ name: x-a, value: '1' }], remove: [x-debug] }\n        - type: ResponseHeaderModifier\n          responseHeaderModifier: { remove: [server] }\n        - type: URLRewrite\n          urlRewrite: { hostname: users.internal, path: { type: ReplacePrefixMatch, replacePrefixMatch: /v2 } }\n      backendRefs: [{ name: users }]\n    - matches: [{ path: { type: Exact, value: /old } }]\n      filters:\n        - type: RequestRedirect\n          requestRedirect: { scheme: https, hostname: example.com, port: 8443, statusCode: 301, path: { type: ReplaceFullPath, replaceFullPath: /new } }\n",
    ))
    .unwrap();
}

#[test]
fn refuses_bad_policies() {
    let found = errors(&with_upstream(
        "kind: Policy\nname: a\nspec:\n  ipAccess: { allow: [10.0.0.0/33, nope] }\n---\nkind: Policy\nname: b\nspec:\n  cors: { allowOrigins: ['*', 'app.example.com'], allowCredentials: true, allowMethods: [get], allowHeaders: ['x y'] }\n---\nkind: Policy\nname: c\nspec:\n  requestLimits: { maxBodyBytes: 0, maxHeaderBytes: 1000000 }\n---\nkind: Policy\nname: d\nspec:\n  global: true\n---\nkind: Policy\nname: e\nspec:\n  ipAccess: {}\n",
    ));
    let expected = [
        "Policy/a: spec.ipAccess.allow[0]: \"10.0.0.0/33\" is not an IP address or CIDR network",
        "Policy/a: spec.ipAccess.allow[1]: \"nope\" is not an IP address",
        "Policy/b: spec.cors.allowOrigins[0]: \"*\" cannot be combined with allowCredentials",
        "Policy/b: spec.cors.allowOrigins[1]: \"app.example.com\" is not an origin",
        "Policy/b: spec.cors.allowMethods[0]: \"get\" is not an HTTP method",
        "Policy/b: spec.cors.allowHeaders[0]: \"x y\" is not a valid header name",
        "Policy/c: spec.requestLimits.maxBodyBytes: must be above 0",
        "Policy/c: spec.requestLimits.maxHeaderBytes: must be at most 65536",
        "Policy/d: spec: must set one policy body",
        "Policy/e: spec.ipAccess: must list allow or deny networks",
    ];
    for want in expected {
        assert!(
            found.iter().any(|f| f.starts_with(want)),
            "missing {want:?} in {found:#?}"
        );
    }
}

#[test]
fn refuses_bad_policy_references() {
    let found = errors(&with_policies(
        "kind: Route\nname: r\nspec:\n  policies: [nope, office, everywhere]\n  rules:\n    - policies: [office, ghost]\n      backendRefs: [{ name: users }]\n",
    ));
    assert_eq!(
        found,
        [
            "Route/r: spec.policies[0]: policy \"nope\" does not exist",
            "Route/r: spec.policies[2]: policy \"everywhere\" is global: it applies to every route already",
            "Route/r: spec.rules[0].policies[0]: policy \"office\" is listed twice",
            "Route/r: spec.rules[0].policies[1]: policy \"ghost\" does not exist",
        ]
    );
}

#[test]
fn refuses_bad_filters() {
    let rule = |filters: &str| {
        with_upstream(&format!(
            "kind: Route\nname: r\nspec:\n  rules:\n    - matches: [{{ path: {{ type: Exact, value: /x }} }}]\n      filters:\n{filters}      backendRefs: [{{ name: users }}]\n"
        ))
    };
    let cases: &[(&str, &str)] = &[
        (
            "        - requestHeaderModifier: { remove: [x] }\n",
            "spec.rules[0].filters[0].type: is required",
        ),
        (
            "        - type: RequestMirror\n          requestMirror: { backendRef: { name: shadow } }\n",
            "spec.rules[0].filters[0].requestMirror.backendRef.name: upstream \"shadow\" does not exist",
        ),
        (
            "        - type: RequestMirror\n          requestMirror: { backendRef: { name: users }, percent: 0 }\n",
            "spec.rules[0].filters[0].requestMirror.percent: must be between 1 and 100",
        ),
        (
            "        - type: RequestMirror\n",
            "spec.rules[0].filters[0].requestMirror: is required for type RequestMirror",
        ),
        (
            "        - type: GrpcTranscode\n",
            "spec.rules[0].filters[0].grpcTranscode: is required for type GrpcTranscode",
        ),
        (
            "        - type: RequestHeaderModifier\n",
            "spec.rules[0].filters[0].requestHeaderModifier: is required for type RequestHeaderModifier",
        ),
        (
            "        - type: RequestHeaderModifier\n          requestHeaderModifier: { remove: [x] }\n          urlRewrite: { hostname: a.b }\n",
            "spec.rules[0].filters[0].urlRewrite: must not be set for type RequestHeaderModifier",
        ),
        (
            "        - type: RequestHeaderModifier\n          requestHeaderModifier: { set: [{ name: host, value: x }] }\n",
            "spec.rules[0].filters[0].requestHeaderModifier.set[0].name: \"host\" is managed by the gateway",
        ),
        (
            "        - type: RequestHeaderModifier\n          requestHeaderModifier: { set: [{ name: 'x y', value: x }] }\n",
            "spec.rules[0].filters[0].requestHeaderModifier.set[0].name: \"x y\" is not a valid header name",
        ),
        (
            "        - type: ResponseHeaderModifier\n          responseHeaderModifier: { add: [{ name: x-a, value: \"a\\nb\" }] }\n",
            "spec.rules[0].filters[0].responseHeaderModifier.add[0].value:",
        ),
        (
            "        - type: ResponseHeaderModifier\n          responseHeaderModifier: { set: [{ name: x-a, value: a }], remove: [X-A] }\n",
            "spec.rules[0].filters[0].responseHeaderModifier.remove[0]: header \"X-A\" appears twice",
        ),
        (
            "        - type: ResponseHeaderModifier\n          responseHeaderModifier: {}\n",
            "spec.rules[0].filters[0].responseHeaderModifier: must set, add or remove",
        ),
        (
            "        - type: URLRewrite\n          urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /v2 } }\n",
            "spec.rules[0].filters[0].urlRewrite.path.type: ReplacePrefixMatch needs every match of the rule to be a PathPrefix",
        ),
        (
            "        - type: URLRewrite\n          urlRewrite: { path: { replaceFullPath: /v2 } }\n",
            "spec.rules[0].filters[0].urlRewrite.path.type: is required",
        ),
        (
            "        - type: URLRewrite\n          urlRewrite: { path: { type: ReplaceFullPath, replaceFullPath: v2 } }\n",
            "spec.rules[0].filters[0].urlRewrite.path.replaceFullPath: \"v2\" must start with '/'",
        ),
        (
            "        - type: URLRewrite\n          urlRewrite: { hostname: 'bad host' }\n",
            "spec.rules[0].filters[0].urlRewrite.hostname: \"bad host\" is not a DNS name",
        ),
        (
            "        - type: URLRewrite\n          urlRewrite: {}\n",
            "spec.rules[0].filters[0].urlRewrite: must set hostname or path",
        ),
        (
            "        - type: RequestRedirect\n          requestRedirect: { scheme: ftp }\n",
            "spec.rules[0].filters[0].requestRedirect.scheme: \"ftp\" must be http or https",
        ),
        (
            "        - type: RequestRedirect\n          requestRedirect: { statusCode: 303 }\n",
            "spec.rules[0].filters[0].requestRedirect.statusCode: must be 301, 302, 307 or 308",
        ),
        (
            "        - type: RequestRedirect\n          requestRedirect: { port: 70000 }\n",
            "spec.rules[0].filters[0].requestRedirect.port: must be between 1 and 65535",
        ),
        (
            "        - type: URLRewrite\n          urlRewrite: { hostname: a.b }\n        - type: RequestRedirect\n          requestRedirect: {}\n",
            "spec.rules[0].filters: URLRewrite and RequestRedirect cannot be on the same rule",
        ),
    ];
    for (filters, want) in cases {
        let found = errors(&rule(filters));
        assert!(
            found
                .iter()
                .any(|f| f.starts_with(&format!("Route/r: {want}"))),
            "missing {want:?} in {found:#?}"
        );
    }
}

#[test]
fn a_redirect_needs_no_backend() {
    check(&with_upstream(
        "kind: Route\nname: r\nspec:\n  rules:\n    - filters: [{ type: RequestRedirect, requestRedirect: { scheme: https, statusCode: 301 } }]\n",
    ))
    .unwrap();
}

#[test]
fn out_of_range_durations_and_unknown_enums_are_refused() {
    use crate::v1::{self, resource::Spec};
    let mut resources = crate::document::parse_documents(&with_upstream(
        "kind: Route\nname: r\nspec:\n  rules:\n    - matches: [{ queryParams: [{ name: q, value: '1' }], headers: [{ name: x, value: '1' }], path: { value: /a } }]\n      backendRefs: [{ name: users }]\n",
    ))
    .unwrap();
    // As the admin gRPC API can send them: numbers no YAML name stands for.
    let Some(Spec::Upstream(upstream)) = &mut resources[0].spec else {
        panic!()
    };
    upstream.timeout = Some(prost_types::Duration {
        seconds: 315_576_000_001,
        nanos: 0,
    });
    upstream.connect_timeout = Some(Box::new(prost_types::Duration {
        seconds: 1,
        nanos: 1_000_000_000,
    }));
    let Some(Spec::Route(route)) = &mut resources[1].spec else {
        panic!()
    };
    let m: &mut v1::RouteMatch = &mut route.rules[0].matches[0];
    m.query_params[0].r#type = 7;
    m.headers[0].r#type = 9;
    m.path.as_mut().unwrap().r#type = 42;
    let found: Vec<String> = crate::validate(&resources)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        [
            "Route/r: spec.rules[0].matches[0].path.type: unknown type",
            "Route/r: spec.rules[0].matches[0].headers[0].type: unknown type",
            "Route/r: spec.rules[0].matches[0].queryParams[0].type: unknown type",
            "Upstream/users: spec.timeout: must be at most 315576000000 seconds",
            "Upstream/users: spec.connectTimeout: nanos must be at most 999,999,999",
        ]
    );
}

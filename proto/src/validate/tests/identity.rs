//! The identity and traffic policies, and Consumers: what is refused, with the field named.

use super::{check, errors};

const JWKS: &str = r#"{"keys":[{"kty":"oct","kid":"h1","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]}"#;

fn jwt(provider: &str) -> String {
    format!("kind: Policy\nname: p\nspec:\n  jwt:\n    providers:\n      - {provider}\n")
}

#[test]
fn a_valid_provider_and_policies_pass() {
    check(&jwt(&format!(
        "{{ name: corp, issuer: https://idp.test, audiences: [api], jwks: '{JWKS}', algorithms: [HS256, HS512], clockSkew: 10s, forwardClaims: [{{ claim: sub, header: x-user }}], tokenFrom: [{{ cookie: session }}] }}"
    )))
    .unwrap();
    check("kind: Policy\nname: k\nspec:\n  apiKey: { from: [{ header: x-api-key }, { query: api_key }] }\n---\nkind: Policy\nname: a\nspec:\n  authorization: { rules: [{ allowGroups: [partners] }, { requireClaims: [{ claim: scope, values: [read], match: Any }] }] }\n---\nkind: Policy\nname: r\nspec:\n  rateLimit: { limits: [{ requests: 10, per: 1s, burst: 5 }, { requests: 1000, per: 3600s }], key: Header, header: x-tenant }\n---\nkind: Consumer\nname: acme\nspec:\n  groups: [partners]\n  apiKeys: [{ key: long-enough-key }]\n").unwrap();
}

#[test]
fn bad_providers_are_named() {
    let found = errors(&jwt(&format!(
        "{{ name: corp, jwks: '{JWKS}', algorithms: [none, RS256, HS257], clockSkew: 90s, forwardClaims: [{{ claim: sub, header: 'bad header' }}], tokenFrom: [{{ header: a, cookie: b }}] }}"
    )));
    let expect = [
        "Policy/p: spec.jwt.providers[0].algorithms[0]: \"none\" means unsigned tokens: never accepted",
        "Policy/p: spec.jwt.providers[0].algorithms[1]: no key of the provider is for RS256",
        "Policy/p: spec.jwt.providers[0].algorithms[2]: \"HS257\" is not one of",
        "Policy/p: spec.jwt.providers[0].clockSkew: must be at most 60s",
        "Policy/p: spec.jwt.providers[0].forwardClaims[0].header:",
        "Policy/p: spec.jwt.providers[0].tokenFrom[0]: must set exactly one of header, cookie, query",
    ];
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for (found, expect) in found.iter().zip(expect) {
        assert!(found.starts_with(expect), "{found} (expected {expect})");
    }
    let found = errors(&jwt(
        "{ name: corp, jwks: '{\"keys\": []}', algorithms: [RS256] }",
    ));
    assert_eq!(
        found,
        ["Policy/p: spec.jwt.providers[0].jwks: holds no keys"]
    );
    let found = errors(&jwt(
        "{ name: corp, keyPem: 'not a key', algorithms: [RS256] }",
    ));
    assert_eq!(
        found,
        ["Policy/p: spec.jwt.providers[0].keyPem: is not a PEM RSA, EC or Ed25519 public key"]
    );
    let found = errors(&jwt("{ name: corp, algorithms: [RS256] }"));
    assert_eq!(
        found,
        [
            "Policy/p: spec.jwt.providers[0]: must set its keys: jwks, keyPem, jwksUri or oidcDiscovery"
        ]
    );
}

#[test]
fn bad_limits_and_rules_are_named() {
    let found = errors(
        "kind: Policy\nname: r\nspec:\n  rateLimit: { limits: [{ requests: 0, per: 0s }], key: Header, scope: Cluster }\n",
    );
    assert_eq!(
        found,
        [
            "Policy/r: spec.rateLimit.limits[0].requests: must be above 0",
            "Policy/r: spec.rateLimit.limits[0].per: must be positive",
            "Policy/r: spec.rateLimit.header: must name the header to count by (key: Header)",
        ]
    );
    let found = errors("kind: Policy\nname: a\nspec:\n  authorization: { rules: [{}] }\n");
    assert_eq!(
        found,
        [
            "Policy/a: spec.authorization.rules[0]: must set allowGroups, allowConsumers or requireClaims"
        ]
    );
}

#[test]
fn a_key_belongs_to_one_consumer() {
    let found = errors(
        "kind: Consumer\nname: a\nspec:\n  apiKeys: [{ key: same-key-123 }]\n---\nkind: Consumer\nname: b\nspec:\n  apiKeys: [{ key: same-key-123 }, { key: short }, { keyHash: nothex }]\n",
    );
    assert_eq!(
        found,
        [
            "Consumer/b: spec.apiKeys[1].key: must be at least 8 characters",
            "Consumer/b: spec.apiKeys[2].keyHash: must be a SHA-256 in lower-case hex (64 characters)",
            "Consumer/b: spec.apiKeys[0]: is already a key of consumer \"a\"",
        ]
    );
}

#[test]
fn policies_that_need_an_identity_need_an_identity_policy() {
    let policies = "kind: Upstream\nname: u\nspec:\n  endpoints: [{ address: 127.0.0.1:1 }]\n---\nkind: Policy\nname: keys\nspec:\n  apiKey: { from: [{ header: x-api-key }] }\n---\nkind: Policy\nname: partners\nspec:\n  authorization: { rules: [{ allowGroups: [partners] }] }\n---\nkind: Policy\nname: per-consumer\nspec:\n  rateLimit: { limits: [{ requests: 1, per: 1s }], key: Consumer }\n";
    let found = errors(&format!(
        "{policies}---\nkind: Route\nname: r\nspec:\n  policies: [partners]\n  rules:\n    - policies: [per-consumer]\n      backendRefs: [{{ name: u }}]\n    - matches: [{{ path: {{ value: /keyed }} }}]\n      policies: [keys]\n      backendRefs: [{{ name: u }}]\n"
    ));
    assert_eq!(
        found,
        [
            "Route/r: spec.rules[0].policies[0]: policy \"per-consumer\": its rate limit by Consumer need an identity, and no jwt or apiKey policy applies to the rule",
            "Route/r: spec.policies[0]: policy \"partners\": its authorization rules need an identity, and no jwt or apiKey policy applies to the rule",
        ]
    );
    check(&format!(
        "{policies}---\nkind: Route\nname: r\nspec:\n  policies: [keys, partners]\n  rules:\n    - policies: [per-consumer]\n      backendRefs: [{{ name: u }}]\n"
    ))
    .unwrap();
}

#[test]
fn remote_keys_need_a_url() {
    check(&jwt(
        "{ name: corp, jwksUri: 'https://idp.test/jwks.json', algorithms: [RS256], keysGracePeriod: 600s }",
    ))
    .unwrap();
    assert_eq!(
        errors(&jwt(
            "{ name: corp, jwksUri: 'ftp://idp.test/k', algorithms: [RS256] }"
        )),
        [
            "Policy/p: spec.jwt.providers[0].jwksUri: \"ftp://idp.test/k\" must be an http:// or https:// URL with a host"
        ]
    );
    assert_eq!(
        errors(&jwt(
            "{ name: corp, oidcDiscovery: true, algorithms: [RS256], keysGracePeriod: 90000s }"
        )),
        [
            "Policy/p: spec.jwt.providers[0].issuer: must be set with oidcDiscovery (its /.well-known/openid-configuration is read)",
            "Policy/p: spec.jwt.providers[0].keysGracePeriod: must be at most 86400s",
        ]
    );
}

#[test]
fn schemas_and_query_parameters_are_checked() {
    check("kind: Policy\nname: v\nspec:\n  requestValidation:\n    jsonSchema: '{\"type\": \"object\", \"required\": [\"name\"]}'\n    query: [{ name: page, type: Integer, required: true }, { name: q }]\n").unwrap();
    assert_eq!(
        errors(
            "kind: Policy\nname: v\nspec:\n  requestValidation: { jsonSchema: 'not json', query: [{ name: page }, { name: page }, { type: Boolean }] }\n"
        ),
        [
            "Policy/v: spec.requestValidation.jsonSchema: is not JSON: expected ident at line 1 column 2",
            "Policy/v: spec.requestValidation.query[1].name: \"page\" is listed twice",
            "Policy/v: spec.requestValidation.query[2].name: must be set",
        ]
    );
}

#[test]
fn block_rules_are_checked() {
    check("kind: Policy\nname: v\nspec:\n  requestValidation: { block: [{ in: Path, pattern: '\\.php$' }, { in: Header, name: user-agent, pattern: sqlmap }] }\n").unwrap();
    assert_eq!(
        errors(
            "kind: Policy\nname: v\nspec:\n  requestValidation: { jsonSchema: '{\"type\": 5}', block: [{ in: Path, name: x, pattern: '(' }, { in: Header, pattern: a }] }\n"
        ),
        [
            "Policy/v: spec.requestValidation.jsonSchema: is not a valid JSON Schema: 5 is not valid under any of the schemas listed in the 'anyOf' keyword",
            "Policy/v: spec.requestValidation.block[0].pattern: invalid regular expression: regex parse error:\n    (\n    ^\nerror: unclosed group",
            "Policy/v: spec.requestValidation.block[0].name: applies to Query and Header only",
            "Policy/v: spec.requestValidation.block[1].name: \"\" is not a valid header name",
        ]
    );
}

//! Request validation at the edge, through a real standalone data plane and the demo backend:
//! bodies against a JSON Schema, typed query parameters and block rules. Every refusal is a
//! 400 naming what was refused, and none of them reaches the backend (its request log is
//! read for their paths).

use http::Method;
use integration_tests::request;
use serde_json::json;

use crate::keys::{Gateway, assert_refused, guarded, policy};

const SCHEMA: &str = r#"{"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "additionalProperties": false}"#;

async fn post(gw: &Gateway, path: &str, body: &str) -> integration_tests::HttpResponse {
    let url = gw.dp.url(path);
    request(
        Method::POST,
        &url,
        &[("content-type", "application/json")],
        bytes::Bytes::from(body.to_owned()),
    )
    .await
    .unwrap_or_else(|e| panic!("POST {path}: {e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_queries_and_patterns_are_400_naming_the_field_and_never_forwarded() {
    let checked = policy(
        "checked",
        json!({ "requestValidation": {
            "jsonSchema": SCHEMA,
            "query": [{ "name": "page", "type": "Integer" }],
            "block": [{ "in": "Query", "pattern": "(?i)union.+select" }],
        }}),
    );
    let gw = Gateway::start(
        "validation",
        &[checked, guarded("api", "/api", &["checked"])],
    )
    .await;

    let passed = post(&gw, "/api/good?page=2", r#"{"name":"ada","age":36}"#).await;
    gw.echoed(&passed, "/api/good", "a body the schema allows");

    let refusals = [
        (
            "/api/bad-type",
            r#"{"name":"ada","age":"old"}"#,
            "body at /age",
        ),
        (
            "/api/bad-missing",
            r#"{"age":36}"#,
            "\"name\" is a required property",
        ),
        ("/api/bad-extra", r#"{"name":"ada","admin":true}"#, "admin"),
        ("/api/bad-json", "name=ada", "body (not JSON)"),
        (
            "/api/bad-page?page=two",
            r#"{"name":"ada"}"#,
            "query parameter \"page\" (not integer)",
        ),
        (
            "/api/bad-union?q=1%20UNION%20SELECT%20x",
            r#"{"name":"ada"}"#,
            "query",
        ),
    ];
    for (path, body, field) in refusals {
        let response = post(&gw, path, body).await;
        assert_refused(&response, 400, "invalid_request", path);
        let message = response.json().unwrap()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.contains(field),
            "{path}: the message should name {field:?}: {message}"
        );
        // What the client sent is never echoed back.
        assert!(!message.contains("old"), "{path}: {message}");
    }
    let log = gw.backend.process().stderr();
    let leaked: Vec<&str> = log.lines().filter(|l| l.contains("/api/bad-")).collect();
    assert!(
        leaked.is_empty(),
        "refused requests reached the backend: {leaked:#?}"
    );
}

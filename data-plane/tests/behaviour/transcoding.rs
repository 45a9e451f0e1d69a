//! The transcoding rows: REST calls to a `GrpcTranscode` route, turned into gRPC calls to the
//! `grpc` backend (H2C), whatever protocol the client spoke. What the backend sees is the gRPC
//! request (its path, its headers); what the client gets is JSON, and errors, the gateway's
//! own included, in the `google.rpc.Status` shape.

use super::cases::{Case, case};

/// Added to [`super::cases::CONFIG`]: the ProtoSet, the gRPC upstream, and the route.
pub(crate) const CONFIG: &str = r#"
kind: ProtoSet
name: behaviour
spec:
  files:
    behaviour.proto: |
      syntax = "proto3";
      package behaviour;
      import "google/api/annotations.proto";
      service Echo {
        rpc Say(Msg) returns (Msg) {
          option (google.api.http) = { post: "/rpc/say" body: "*" additional_bindings { get: "/rpc/say/{text}" } };
        }
        rpc Fail(Msg) returns (Msg) { option (google.api.http) = { post: "/rpc/fail" body: "*" }; }
        rpc Count(Msg) returns (stream Msg) { option (google.api.http) = { get: "/rpc/count/{text}" }; }
      }
      message Msg { string text = 1; int64 n = 2; }
---
kind: Upstream
name: grpc
spec: { protocol: H2C, endpoints: [{ address: "{grpc}" }] }
---
kind: Route
name: rpc
spec:
  rules:
    - matches: [{ path: { type: PathPrefix, value: /rpc/denied } }]
      policies: [deny-all]
      filters: [{ type: GrpcTranscode, grpcTranscode: { protoSet: behaviour, services: [behaviour.Echo] } }]
      backendRefs: [{ name: grpc }]
    - matches: [{ path: { type: PathPrefix, value: /rpc } }]
      filters:
        - type: GrpcTranscode
          grpcTranscode: { protoSet: behaviour, services: [behaviour.Echo], requestHeaders: [x-tenant], responseHeaders: [x-grpc-meta] }
      backendRefs: [{ name: grpc }]
"#;

fn post(name: &str, target: &str, json: &str) -> Case {
    case(name, "POST", target)
        .header("content-type", "application/json")
        .body(&[json.as_bytes()], true)
}

pub(crate) fn all() -> Vec<Case> {
    vec![
        post(
            "transcoded: a JSON body becomes the gRPC message",
            "/rpc/say",
            r#"{"text":"hi","n":"5"}"#,
        )
        .to("grpc", "/behaviour.Echo/Say")
        .saw("content-type", "application/grpc")
        .saw("te", "trailers")
        .saw("x-forwarded-proto", "http")
        .saw_any("x-request-id")
        .saw_any("grpc-timeout")
        .not_saw("content-length")
        .responds("content-type", "application/json")
        .json(r#"{"text":"hi","n":"5"}"#),
        case("transcoded: a chunked JSON body", "POST", "/rpc/say")
            .header("content-type", "application/json")
            .body(&[br#"{"text":"#, br#""in pieces"}"#], false)
            .to("grpc", "/behaviour.Echo/Say")
            .json(r#"{"text":"in pieces"}"#),
        case(
            "transcoded: a path variable and a query parameter",
            "GET",
            "/rpc/say/hello?n=7",
        )
        .to("grpc", "/behaviour.Echo/Say")
        .json(r#"{"text":"hello","n":"7"}"#),
        post(
            "transcoded: only allowed headers become metadata and come back",
            "/rpc/say",
            "{}",
        )
        .header("x-tenant", "t1")
        .header("x-secret", "s1")
        .to("grpc", "/behaviour.Echo/Say")
        .saw("x-tenant", "t1")
        .not_saw("x-secret")
        .responds("x-grpc-meta", "1")
        .lacks("x-grpc-secret")
        .json("{}"),
        post("transcoded: malformed JSON", "/rpc/say", r#"{"text":"#).grpc_error(400, 3),
        post("transcoded: a wrong type", "/rpc/say", r#"{"n":"abc"}"#).grpc_error(400, 3),
        post(
            "transcoded: an int64 overflow",
            "/rpc/say",
            r#"{"n":"99999999999999999999"}"#,
        )
        .grpc_error(400, 3),
        post("transcoded: an unknown field", "/rpc/say", r#"{"nope":1}"#).grpc_error(400, 3),
        case(
            "transcoded: a query parameter of the wrong type",
            "GET",
            "/rpc/say/x?n=seven",
        )
        .grpc_error(400, 3),
        post(
            "transcoded: a gRPC status becomes its HTTP status",
            "/rpc/fail",
            "{}",
        )
        .to("grpc", "/behaviour.Echo/Fail")
        .grpc_error(404, 5),
        case(
            "transcoded: no binding for the method and path",
            "DELETE",
            "/rpc/say",
        )
        .grpc_error(404, 5),
        case(
            "transcoded: a policy refuses before the transcoder",
            "GET",
            "/rpc/denied/x",
        )
        .grpc_error(403, 7),
        case(
            "transcoded: a server stream as NDJSON",
            "GET",
            "/rpc/count/ab",
        )
        .to("grpc", "/behaviour.Echo/Count")
        .responds("content-type", "application/x-ndjson")
        .text("{\"text\":\"ab\"}\n{\"text\":\"ab\"}\n"),
    ]
}

//! GrpcTranscode filters against their ProtoSet and upstreams.

use super::errors;

const PROTO_SET: &str = r#"kind: ProtoSet
name: library
spec:
  files:
    kit/v1/kit.proto: |
      syntax = "proto3";
      package kit.v1;
      import "google/api/annotations.proto";
      service Library {
        rpc GetShelf(GetShelfRequest) returns (Shelf) {
          option (google.api.http) = {
            get: "/v1/{name=shelves/*}"
            additional_bindings { get: "/v1/shelves/{name}:fetch" }
          };
        }
        rpc CreateShelf(CreateShelfRequest) returns (Shelf) {
          option (google.api.http) = { post: "/v1/shelves" body: "shelf" };
        }
        rpc Untouched(GetShelfRequest) returns (Shelf);
      }
      service Clash {
        rpc Other(GetShelfRequest) returns (Shelf) {
          option (google.api.http) = { get: "/v1/shelves/{id}" };
        }
      }
      service Broken {
        rpc ByMessage(CreateShelfRequest) returns (Shelf) {
          option (google.api.http) = { get: "/v1/{shelf}" };
        }
      }
      message GetShelfRequest { string name = 1; string id = 2; }
      message CreateShelfRequest { Shelf shelf = 1; }
      message Shelf { string name = 1; }
"#;

fn config(upstream_protocol: &str, filter: &str) -> String {
    format!(
        "{PROTO_SET}---\nkind: Upstream\nname: kit\nspec:\n  protocol: {upstream_protocol}\n  endpoints: [{{ address: 127.0.0.1:9001 }}]\n---\nkind: Route\nname: r\nspec:\n  rules:\n    - filters:\n        - type: GrpcTranscode\n          grpcTranscode: {filter}\n      backendRefs: [{{ name: kit }}]\n"
    )
}

#[test]
fn a_filter_that_passes_every_check_is_valid() {
    super::check(&config(
        "H2C",
        "{ protoSet: library, services: [kit.v1.Library] }",
    ))
    .unwrap();
}

#[test]
fn names_a_missing_proto_set_service_and_a_backend_that_is_not_http2() {
    let found = errors(&config(
        "H2C",
        "{ protoSet: nope, services: [kit.v1.Library] }",
    ));
    assert_eq!(
        found,
        ["Route/r: spec.rules[0].filters[0].grpcTranscode.protoSet: no ProtoSet is named \"nope\""]
    );
    let found = errors(&config(
        "H2C",
        "{ protoSet: library, services: [kit.v1.Nope] }",
    ));
    assert_eq!(
        found[0],
        "Route/r: spec.rules[0].filters[0].grpcTranscode.services[0]: ProtoSet \"library\" has no service \"kit.v1.Nope\""
    );
    let found = errors(&config(
        "HTTP1",
        "{ protoSet: library, services: [kit.v1.Library] }",
    ));
    assert_eq!(
        found[0],
        "Route/r: spec.rules[0].backendRefs[0].name: upstream \"kit\" must be H2C or H2: gRPC backends speak HTTP/2"
    );
}

#[test]
fn refuses_two_methods_with_one_template_and_a_variable_bound_to_a_message() {
    let found = errors(&config(
        "H2",
        "{ protoSet: library, services: [kit.v1.Library, kit.v1.Clash] }",
    ));
    assert_eq!(
        found[0],
        "Route/r: spec.rules[0].filters[0].grpcTranscode.services[1]: kit.v1.Clash.Other: GET /v1/shelves/{id=*} is already kit.v1.Library.GetShelf's"
    );
    let found = errors(&config(
        "H2",
        "{ protoSet: library, services: [kit.v1.Broken] }",
    ));
    assert!(
        found[0].ends_with(
            "kit.v1.Broken.ByMessage: GET \"/v1/{shelf}\": shelf must be a singular scalar field to be bound from the path"
        ),
        "{found:?}"
    );
}

#[test]
fn metadata_lists_name_headers_the_gateway_does_not_own() {
    let found = errors(&config(
        "H2C",
        "{ protoSet: library, services: [kit.v1.Library], requestHeaders: [x-tenant, 'bad name'], responseHeaders: [grpc-status] }",
    ));
    assert_eq!(
        found,
        [
            "Route/r: spec.rules[0].filters[0].grpcTranscode.requestHeaders[1]: \"bad name\" is not a header name",
            "Route/r: spec.rules[0].filters[0].grpcTranscode.responseHeaders[0]: \"grpc-status\" is managed by the gateway"
        ]
    );
}

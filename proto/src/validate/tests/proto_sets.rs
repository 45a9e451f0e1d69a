//! ProtoSet documents as users write them: sources in a YAML map, or a descriptor set.

use super::{check, errors};
use crate::document::{parse_documents, to_document};

const LIBRARY: &str = r#"kind: ProtoSet
name: library
spec:
  files:
    kit/v1/kit.proto: |
      syntax = "proto3";
      package kit.v1;
      import "google/api/annotations.proto";
      service Library {
        rpc GetShelf(GetShelfRequest) returns (Shelf) {
          option (google.api.http) = { get: "/v1/{name=shelves/*}" };
        }
      }
      message GetShelfRequest { string name = 1; }
      message Shelf { string name = 1; string theme = 2; }
"#;

#[test]
fn a_proto_set_of_sources_validates() {
    check(LIBRARY).unwrap();
}

#[test]
fn a_source_that_does_not_compile_is_named_with_its_line_and_column() {
    let broken = LIBRARY.replace("string theme = 2;", "strin theme = 2;");
    let found = errors(&broken);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(
            "ProtoSet/library: spec.files[\"kit/v1/kit.proto\"]: line 10, column 34: "
        ),
        "{found:?}"
    );
}

#[test]
fn a_descriptor_set_round_trips_through_the_document() {
    let resources = parse_documents(LIBRARY).unwrap();
    let Some(crate::v1::resource::Spec::ProtoSet(spec)) = &resources[0].spec else {
        panic!("a ProtoSet");
    };
    let pool = crate::validate::compile_proto_set(spec).unwrap();
    let compiled = crate::v1::Resource {
        name: "compiled".into(),
        version: 0,
        spec: Some(crate::v1::resource::Spec::ProtoSet(
            crate::v1::ProtoSetSpec {
                descriptor_set: pool.encode_to_vec(),
                ..Default::default()
            },
        )),
    };
    // As YAML and JSON carry it: base64.
    let document = to_document(&compiled);
    assert!(document["spec"]["descriptorSet"].is_string(), "{document}");
    let yaml = serde_json::to_string(&document).unwrap();
    let back = parse_documents(&yaml).unwrap();
    assert_eq!(back[0], compiled);
    check(&yaml).unwrap();
}

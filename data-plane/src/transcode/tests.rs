use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Value as Field};
use serde_json::{Value, json};

use super::{
    Methods,
    grpc::{self, Frames},
    json::{self as transcode_json, BadRequest, Options},
};

const KIT: &str = r#"syntax = "proto3";
package kit.v1;
import "google/api/annotations.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/any.proto";
import "google/protobuf/empty.proto";
service Library {
  rpc GetShelf(GetShelfRequest) returns (Shelf) {
    option (google.api.http) = { get: "/v1/{name=shelves/*}" };
  }
  rpc GetSpecial(GetShelfRequest) returns (Shelf) {
    option (google.api.http) = { get: "/v1/shelves/special" };
  }
  rpc CreateShelf(CreateShelfRequest) returns (Shelf) {
    option (google.api.http) = { post: "/v1/shelves" body: "shelf" response_body: "name" };
  }
  rpc UpdateShelf(UpdateShelfRequest) returns (Shelf) {
    option (google.api.http) = { patch: "/v1/{shelf.name=shelves/*}" body: "*" };
  }
  rpc ListBooks(ListBooksRequest) returns (ListBooksResponse) {
    option (google.api.http) = { get: "/v1/{parent=shelves/*}/books" };
  }
  rpc Archive(GetShelfRequest) returns (Shelf) {
    option (google.api.http) = { post: "/v1/{name=shelves/*}:archive" };
  }
  rpc Files(FilesRequest) returns (Shelf) {
    option (google.api.http) = { get: "/v1/files/{path=**}" };
  }
  rpc Plain(GetShelfRequest) returns (Shelf);
  rpc Everything(Everything) returns (google.protobuf.Empty) {
    option (google.api.http) = { post: "/v1/everything" body: "*" };
  }
}
message Everything {
  int32 i32 = 1; int64 i64 = 2; uint32 u32 = 3; uint64 u64 = 4; sint32 s32 = 5; sint64 s64 = 6;
  fixed32 f32 = 7; fixed64 f64 = 8; sfixed32 sf32 = 9; sfixed64 sf64 = 10;
  float fl = 11; double db = 12; bool b = 13; string s = 14; bytes by = 15; Genre genre = 16;
  google.protobuf.Duration duration = 17; google.protobuf.FieldMask mask = 18;
  google.protobuf.Struct st = 19; google.protobuf.Value value = 20;
  google.protobuf.ListValue list = 21; google.protobuf.Int64Value wrapped = 22;
  google.protobuf.StringValue wrapped_s = 23; google.protobuf.Any any = 24;
  map<string, Shelf> shelves = 25; repeated Paging pages = 26; optional int32 maybe = 27;
}
message GetShelfRequest { string name = 1; }
message CreateShelfRequest { Shelf shelf = 1; }
message UpdateShelfRequest { Shelf shelf = 1; bool validate_only = 2; }
message FilesRequest { string path = 1; }
enum Genre { GENRE_UNSPECIFIED = 0; FICTION = 1; HISTORY = 2; }
message Shelf {
  string name = 1;
  int64 book_count = 2;
  Genre genre = 3;
  bytes tag = 4;
  google.protobuf.Timestamp created = 5;
  string display_name = 6 [json_name = "title"];
  oneof location { string room = 7; int32 floor = 8; }
}
message Paging { int32 depth = 1; }
message ListBooksRequest {
  string parent = 1;
  int32 page_size = 2;
  repeated string tags = 3;
  bool include_drafts = 4;
  Paging paging = 5;
  uint64 after = 6;
}
message ListBooksResponse { repeated string books = 1; string next_page_token = 2; }
"#;

fn pool() -> DescriptorPool {
    let spec = gateway_proto::v1::ProtoSetSpec {
        files: [("kit/v1/kit.proto".to_owned(), KIT.to_owned())].into(),
        ..Default::default()
    };
    gateway_proto::validate::compile_proto_set(&spec).unwrap()
}

fn methods(pool: &DescriptorPool) -> Methods {
    Methods::compile(pool, &["kit.v1.Library".to_owned()], false)
}

/// The request message the call would send, as the proto3 JSON of it.
fn request(method: &str, path_and_query: &str, body: &str) -> Result<Value, BadRequest> {
    let pool = pool();
    let methods = methods(&pool);
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let matched = methods.find(method, path).expect("a binding matches");
    let message = transcode_json::request(&matched, query, body.as_bytes(), Options::default())?;
    // As the backend will read it: what goes on the wire.
    let encoded = message.encode_to_vec();
    let decoded = DynamicMessage::decode(matched.method.input(), encoded.as_slice()).unwrap();
    Ok(serde_json::to_value(&decoded).unwrap())
}

#[test]
fn chooses_the_method_by_http_method_and_template_literal_first() {
    let pool = pool();
    let methods = methods(&pool);
    let name = |m: &str, p: &str| {
        methods
            .find(m, p)
            .map(|found| found.method.name().to_owned())
    };
    assert_eq!(
        name("GET", "/v1/shelves/special").as_deref(),
        Some("GetSpecial")
    );
    assert_eq!(name("GET", "/v1/shelves/s1").as_deref(), Some("GetShelf"));
    assert_eq!(
        name("POST", "/v1/shelves/s1:archive").as_deref(),
        Some("Archive")
    );
    assert_eq!(
        name("GET", "/v1/shelves/s1/books").as_deref(),
        Some("ListBooks")
    );
    assert_eq!(name("GET", "/v1/files/a/b/c.txt").as_deref(), Some("Files"));
    assert_eq!(name("DELETE", "/v1/shelves/s1"), None);
    assert_eq!(name("GET", "/v1/shelves"), None);
    assert_eq!(name("GET", "/v1/shelves/s1/extra"), None);
}

#[test]
fn unannotated_methods_only_when_the_filter_allows_them() {
    let pool = pool();
    let services = ["kit.v1.Library".to_owned()];
    let without = Methods::compile(&pool, &services, false);
    assert!(without.find("POST", "/kit.v1.Library/Plain").is_none());
    let with = Methods::compile(&pool, &services, true);
    let found = with.find("POST", "/kit.v1.Library/Plain").unwrap();
    assert_eq!(found.method.name(), "Plain");
    let lenient = Options {
        ignore_unknown_fields: true,
        ..Options::default()
    };
    let message = transcode_json::request(
        &found,
        Some("nope=1"),
        br#"{"name": "x", "colour": "red"}"#,
        lenient,
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(&message).unwrap(),
        json!({ "name": "x" })
    );
    assert!(
        transcode_json::request(&found, None, br#"{"colour": "red"}"#, Options::default()).is_err(),
        "unknown fields are refused by default"
    );
}

#[test]
fn path_variables_query_and_body_make_the_request() {
    assert_eq!(
        request("GET", "/v1/shelves/s%201", "").unwrap(),
        json!({ "name": "shelves/s 1" })
    );
    assert_eq!(
        request("GET", "/v1/files/a/b%2Fc", "").unwrap(),
        json!({ "path": "a/b%2Fc" })
    );
    assert_eq!(
        request(
            "GET",
            "/v1/shelves/s1/books?pageSize=10&tags=a&tags=b+c&include_drafts=true&paging.depth=2&after=18446744073709551615",
            ""
        )
        .unwrap(),
        json!({
            "parent": "shelves/s1",
            "pageSize": 10,
            "tags": ["a", "b c"],
            "includeDrafts": true,
            "paging": { "depth": 2 },
            "after": "18446744073709551615"
        })
    );
    assert_eq!(
        request(
            "POST",
            "/v1/shelves",
            r#"{"name": "x", "bookCount": "9007199254740993", "genre": "FICTION", "tag": "AAE=", "created": "2026-12-01T10:00:00Z", "title": "Kit", "room": "A"}"#
        )
        .unwrap(),
        json!({ "shelf": {
            "name": "x", "bookCount": "9007199254740993", "genre": "FICTION", "tag": "AAE=",
            "created": "2026-12-01T10:00:00Z", "title": "Kit", "room": "A"
        } })
    );
    // body "*": the path variable wins over the body's value.
    assert_eq!(
        request(
            "PATCH",
            "/v1/shelves/s1",
            r#"{"shelf": {"name": "ignored", "genre": 2}, "validateOnly": true}"#
        )
        .unwrap(),
        json!({ "shelf": { "name": "shelves/s1", "genre": "HISTORY" }, "validateOnly": true })
    );
}

#[test]
fn every_scalar_and_well_known_type_by_the_proto3_json_mapping() {
    let json = json!({
        "i32": -1, "i64": "-9007199254740993", "u32": 4294967295u32, "u64": "18446744073709551615",
        "s32": -2, "s64": "-3", "f32": 4, "f64": "5", "sf32": -6, "sf64": "-7",
        "fl": "NaN", "db": "-Infinity", "b": true, "s": "text", "by": "_-8", "genre": 2,
        "duration": "1.5s", "mask": "name,bookCount", "st": { "a": [1, "x", null] },
        "value": { "nested": true }, "list": [1, 2], "wrapped": "42", "wrappedS": "w",
        "any": { "@type": "type.googleapis.com/kit.v1.Shelf", "name": "in-any" },
        "shelves": { "k": { "name": "s" } }, "pages": [{ "depth": 1 }], "maybe": 0
    });
    let got = request("POST", "/v1/everything", &json.to_string()).unwrap();
    assert_eq!(
        got,
        json!({
            "i32": -1, "i64": "-9007199254740993", "u32": 4294967295u32, "u64": "18446744073709551615",
            "s32": -2, "s64": "-3", "f32": 4, "f64": "5", "sf32": -6, "sf64": "-7",
            "fl": "NaN", "db": "-Infinity", "b": true, "s": "text", "by": "/+8=", "genre": "HISTORY",
            "duration": "1.500s", "mask": "name,bookCount", "st": { "a": [1.0, "x", null] },
            "value": { "nested": true }, "list": [1.0, 2.0], "wrapped": "42", "wrappedS": "w",
            "any": { "@type": "type.googleapis.com/kit.v1.Shelf", "name": "in-any" },
            "shelves": { "k": { "name": "s" } }, "pages": [{ "depth": 1 }], "maybe": 0
        })
    );
    // Proto names are accepted in as well as JSON names.
    let got = request("POST", "/v1/everything", r#"{"wrapped_s": "p"}"#).unwrap();
    assert_eq!(got, json!({ "wrappedS": "p" }));
}

#[test]
fn bad_requests_are_refused_before_any_backend_call() {
    for (method, target, body, why) in [
        ("GET", "/v1/shelves/s1/books?pageSize=ten", "", "a number"),
        (
            "GET",
            "/v1/shelves/s1/books?pageSize=99999999999",
            "",
            "overflow",
        ),
        (
            "GET",
            "/v1/shelves/s1/books?nope=1",
            "",
            "an unknown query field",
        ),
        (
            "GET",
            "/v1/shelves/s1/books?include_drafts=maybe",
            "",
            "a bool",
        ),
        ("POST", "/v1/shelves", "{not json", "malformed JSON"),
        (
            "POST",
            "/v1/shelves",
            r#"{"genre": "POETRY"}"#,
            "a bad enum",
        ),
        (
            "POST",
            "/v1/shelves",
            r#"{"created": "yesterday"}"#,
            "a bad timestamp",
        ),
        (
            "POST",
            "/v1/shelves",
            r#"{"room": "A", "floor": 2}"#,
            "two oneof members",
        ),
        (
            "POST",
            "/v1/shelves",
            r#"{"colour": "red"}"#,
            "an unknown field",
        ),
        (
            "GET",
            "/v1/shelves/s1",
            r#"{"x": 1}"#,
            "a body where none is taken",
        ),
        (
            "PATCH",
            "/v1/shelves/s1",
            "[1]",
            "a body that is not an object",
        ),
    ] {
        let result = request(method, target, body);
        assert!(result.is_err(), "{why}: {result:?}");
    }
}

#[test]
fn responses_become_json_whole_or_their_response_body_field() {
    let pool = pool();
    let shelf = pool.get_message_by_name("kit.v1.Shelf").unwrap();
    let mut message = DynamicMessage::new(shelf.clone());
    message.set_field_by_name("name", Field::String("shelves/s1".into()));
    message.set_field_by_name("book_count", Field::I64(1 << 60));
    message.set_field_by_name("display_name", Field::String("Kit".into()));
    let encoded = message.encode_to_vec();
    let whole =
        transcode_json::response(shelf.clone(), &encoded, None, Options::default()).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&whole).unwrap(),
        json!({ "name": "shelves/s1", "bookCount": "1152921504606846976", "title": "Kit" })
    );
    let name = transcode_json::response(shelf.clone(), &encoded, Some("name"), Options::default())
        .unwrap();
    assert_eq!(name, br#""shelves/s1""#);
    let defaults = Options {
        emit_defaults: true,
        ..Options::default()
    };
    let all = transcode_json::response(shelf, &[], None, defaults).unwrap();
    let all: Value = serde_json::from_slice(&all).unwrap();
    assert_eq!(all["bookCount"], "0");
    assert_eq!(all["genre"], "GENRE_UNSPECIFIED");
}

/// `message` with its gRPC prefix: not compressed, then the length, big-endian.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

#[test]
fn frames_and_statuses() {
    let framed = frame(b"hello");
    assert_eq!(&framed[..5], &[0, 0, 0, 0, 5]);
    let mut frames = Frames::default();
    frames.push(&framed[..3]);
    assert_eq!(frames.next_message().unwrap(), None);
    frames.push(&framed[3..]);
    frames.push(&frame(b""));
    assert_eq!(
        frames.next_message().unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(frames.next_message().unwrap().as_deref(), Some(&b""[..]));
    assert!(frames.is_empty());
    frames.push(&[1, 0, 0, 0, 0]);
    assert!(
        frames.next_message().is_err(),
        "compressed messages are refused"
    );

    for (code, status) in [
        (0, 200),
        (3, 400),
        (16, 401),
        (7, 403),
        (5, 404),
        (6, 409),
        (10, 409),
        (8, 429),
        (9, 400),
        (12, 501),
        (14, 503),
        (4, 504),
        (13, 500),
        (2, 500),
        (15, 500),
    ] {
        assert_eq!(grpc::http_status(code), status, "code {code}");
    }
    assert_eq!(
        grpc::decode_message(b"bad%20input %E2%9C%93"),
        "bad input ✓"
    );

    let pool = pool();
    let body: Value =
        serde_json::from_slice(&grpc::status_json(5, "no shelf", None, &pool)).unwrap();
    assert_eq!(
        body,
        json!({ "code": 5, "message": "no shelf", "details": [] })
    );
    // Details: a google.rpc.Status whose Any holds a message of the ProtoSet, and one the
    // descriptors do not know.
    let mut shelf = DynamicMessage::new(pool.get_message_by_name("kit.v1.Shelf").unwrap());
    shelf.set_field_by_name("name", Field::String("s1".into()));
    let details = grpc::RpcStatus {
        code: 5,
        message: "stale".into(),
        details: vec![
            prost_types::Any {
                type_url: "type.googleapis.com/kit.v1.Shelf".into(),
                value: shelf.encode_to_vec(),
            },
            prost_types::Any {
                type_url: "type.googleapis.com/other.Unknown".into(),
                value: vec![1, 2, 3],
            },
        ],
    };
    let body: Value = serde_json::from_slice(&grpc::status_json(
        5,
        "no shelf",
        Some(&details.encode_to_vec()),
        &pool,
    ))
    .unwrap();
    assert_eq!(
        body["details"][1],
        json!({ "@type": "type.googleapis.com/other.Unknown", "value": "AQID" })
    );
    assert_eq!(body["code"], 5);
    assert_eq!(body["message"], "no shelf");
    assert_eq!(
        body["details"][0]["@type"],
        "type.googleapis.com/kit.v1.Shelf"
    );
    assert_eq!(body["details"][0]["name"], "s1");
}

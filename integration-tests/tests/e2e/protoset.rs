//! ProtoSets with the real programs: `gatewayctl protoset` builds one from a directory of
//! `.proto` files, the control plane compiles it on apply and stores it, `get protosets` names
//! its services, and a source that does not compile is refused with its file, line and column,
//! by the control plane and offline by `gatewayctl validate` alike.

use integration_tests::{ControlPlane, ControlPlaneOpts, gatewayctl, write_file};

const LIBRARY: &str = r#"syntax = "proto3";
package kit.v1;
import "google/api/annotations.proto";
import "google/protobuf/timestamp.proto";
import "kit/v1/shelf.proto";
service Library {
  rpc GetShelf(GetShelfRequest) returns (Shelf) {
    option (google.api.http) = { get: "/v1/{name=shelves/*}" };
  }
}
message GetShelfRequest { string name = 1; google.protobuf.Timestamp as_of = 2; }
"#;
const SHELF: &str = "syntax = \"proto3\";\npackage kit.v1;\nmessage Shelf { string name = 1; }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protoset_from_files_is_compiled_on_apply_and_errors_name_file_line_and_column() {
    let cp = ControlPlane::start(ControlPlaneOpts::embedded()).await;
    let ctl = cp.ctl();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("protos");
    write_file(root.join("kit/v1/library.proto"), LIBRARY);
    write_file(root.join("kit/v1/shelf.proto"), SHELF);

    // Built from disk (compiled first), then applied from stdin.
    let built = gatewayctl(&["protoset", "library", &root.display().to_string()], None).await;
    built.success();
    assert!(built.stdout.contains("kind: ProtoSet"), "{built}");
    ctl.run_with_stdin(&["apply", "-f", "-"], Some(&built.stdout))
        .await
        .success();
    let listed = ctl.run(&["get", "protosets"]).await;
    listed.success();
    assert!(listed.stdout.contains("library"), "{listed}");
    assert!(listed.stdout.contains("kit.v1.Library"), "{listed}");
    let stored = ctl.get_json("protosets").await;
    let text = stored.to_string();
    assert!(text.contains("kit/v1/library.proto"), "{text}");

    // A broken source: refused by gatewayctl protoset, by validate and by the control plane,
    // naming the file, the line and the column; nothing of it is stored.
    write_file(
        root.join("kit/v1/shelf.proto"),
        SHELF.replace("string name", "strin name"),
    );
    let expected = r#"spec.files["kit/v1/shelf.proto"]: line 3, column 17: "#;
    gatewayctl(&["protoset", "library", &root.display().to_string()], None)
        .await
        .code(1)
        .stderr_contains(expected);
    let broken = built
        .stdout
        .replace("string name = 1; }", "strin name = 1; }");
    assert_ne!(broken, built.stdout, "the test edits the shelf's source");
    let file = dir.path().join("broken.yaml");
    write_file(&file, &broken);
    gatewayctl(&["validate", "-f", &file.display().to_string()], None)
        .await
        .code(1)
        .stderr_contains(expected);
    ctl.apply(&file, &[])
        .await
        .code(1)
        .stderr_contains("ProtoSet/library")
        .stderr_contains(expected);
    assert_eq!(
        ctl.get_json("protosets").await,
        stored,
        "nothing new was stored"
    );
}

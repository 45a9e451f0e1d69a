//! Replays the fuzz corpora and regressions (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`)
//! with the fuzz targets' checks (`gateway_data_plane::fuzzing`, which the targets call too), so
//! that `cargo test` keeps what fuzzing found, on a stable compiler.
//!
//! `every_fixture_compiles_as_validated` also writes the seed inputs when asked; see
//! `fuzz/README.md`.

use std::{
    fs,
    path::{Path, PathBuf},
};

use gateway_data_plane::fuzzing;
use gateway_proto::{document::parse_documents, v1::Snapshot};
use prost::Message;

/// The fuzz crate's directory.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every input of a target: its corpus (which must not be empty) and its regressions. Both
/// directories must exist: a missing one fails, it is never skipped. Dot files (`.gitkeep`) are
/// not inputs.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut inputs = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: the fuzz {kind} of `{target}` must be checked in",
                dir.display()
            )
        });
        let before = inputs.len();
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            inputs.push((path, data));
        }
        if kind == "corpus" {
            assert!(
                inputs.len() > before,
                "{}: empty fuzz corpus",
                dir.display()
            );
        }
    }
    inputs
}

#[test]
fn normalize_path_corpus() {
    let inputs = inputs("normalize_path");
    for (file, data) in &inputs {
        fuzzing::check_normalize_path(data).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    println!("{} normalize_path inputs replayed", inputs.len());
}

#[test]
fn snapshot_compile_corpus() {
    let inputs = inputs("snapshot_compile");
    for (file, data) in &inputs {
        fuzzing::check_snapshot_compile(data).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    println!("{} snapshot_compile inputs replayed", inputs.len());
}

#[test]
fn http1_head_corpus() {
    let parser = fuzzing::HeadParser::default();
    let inputs = inputs("http1_head");
    for (file, data) in &inputs {
        fuzzing::check_head(&parser, data).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    println!("{} http1_head inputs replayed", inputs.len());
}

#[test]
fn h2_headers_corpus() {
    let parser = fuzzing::HeadParser::default();
    let inputs = inputs("h2_headers");
    for (file, data) in &inputs {
        fuzzing::check_h2_headers(&parser, data)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    println!("{} h2_headers inputs replayed", inputs.len());
}

#[test]
fn h2_connection_corpus() {
    let parser = fuzzing::HeadParser::default();
    let inputs = inputs("h2_connection");
    for (file, data) in &inputs {
        fuzzing::check_h2_connection(&parser, data)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    println!("{} h2_connection inputs replayed", inputs.len());
}

#[test]
fn chunked_corpus() {
    let inputs = inputs("chunked");
    for (file, data) in &inputs {
        fuzzing::check_chunked(data).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    println!("{} chunked inputs replayed", inputs.len());
}

/// Routes with every kind of match, hostnames and weights: a seed that reaches deep into the
/// compiler.
const FEATURES: &str = "
kind: Upstream
name: a
spec:
  endpoints: [{ address: 127.0.0.1:9001, weight: 2 }, { address: 'localhost:9002' }]
  timeout: 5s
  connectTimeout: 1s
---
kind: Upstream
name: b
spec: { endpoints: [{ address: '[::1]:9003' }] }
---
kind: Route
name: features
spec:
  hostnames: [api.example.com, '*.example.org']
  rules:
    - matches:
        - path: { type: Exact, value: /exact }
          method: GET
        - path: { type: Template, value: '/users/{id}/items' }
          headers: [{ name: x-a, value: '1' }, { name: x-b, type: RegularExpression, value: '[0-9]+' }]
          queryParams: [{ name: q, value: 'a b' }, { name: r, type: RegularExpression, value: 'x.*' }]
        - path: { type: RegularExpression, value: '/v[0-9]+/.*' }
      backendRefs: [{ name: a, weight: 3 }, { name: b, weight: 1 }]
    - matches: [{ path: { type: PathPrefix, value: /api/ } }]
      backendRefs: [{ name: b }]
";

/// Paths from the normaliser's unit tests: each rule, and the path-confusion corpus.
const PATHS: &[&str] = &[
    "/",
    "/a/b/c",
    "/a/b/",
    "/.well-known/acme",
    "/caf\u{e9}/%C3%A9",
    "/%41%62%2d%2E%5f%7E%3a",
    "///a//b///",
    "/a/b/../../c/./d/..",
    "/public/../admin",
    "/public/%2e%2e/admin",
    "/public/.%2E/admin",
    "/public/..%2fadmin",
    "/public/..%5cadmin",
    "/public\\..\\admin",
    "/public/..;/admin",
    "/public/;/../admin",
    "/public/%00/../admin",
    "/public/%c0%ae%c0%ae/admin",
    "/public/%252e%252e/admin",
    "/%E0%80%AE",
    "/%F0%9F%98%80",
    "/%",
    "relative",
];

/// Every fixture, as a snapshot, gets the same verdict from validation and compile: every file
/// in `examples/` (whole, and each resource alone, which mostly fails validation),
/// [`FEATURES`], and an empty one. With `GATEWAY_WRITE_FUZZ_SEEDS=1` they are also written
/// into the corpora as seeds (with the path seeds), as `fuzz/README.md` says.
#[test]
fn every_fixture_compiles_as_validated() {
    let mut snapshots: Vec<(String, Vec<gateway_proto::v1::Resource>)> = vec![
        ("empty".into(), Vec::new()),
        (
            "features".into(),
            parse_documents(FEATURES).expect("FEATURES parses"),
        ),
    ];
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files = Vec::new();
    let mut dirs = vec![examples.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("examples are readable") {
            let path = entry.expect("examples are readable").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no examples in {}", examples.display());
    for file in files {
        let text = fs::read_to_string(&file).expect("example is readable");
        let resources = parse_documents(&text).expect("example parses");
        let stem = file
            .strip_prefix(&examples)
            .expect("under examples/")
            .to_string_lossy()
            .replace(['/', '.'], "-");
        for (i, resource) in resources.iter().enumerate() {
            snapshots.push((format!("{stem}-{i}"), vec![resource.clone()]));
        }
        snapshots.push((stem, resources));
    }
    let write = std::env::var_os("GATEWAY_WRITE_FUZZ_SEEDS").is_some();
    let dir = fuzz_dir().join("corpus/snapshot_compile");
    let mut valid = 0;
    for (version, (name, resources)) in (1..).zip(snapshots) {
        let bytes = Snapshot { version, resources }.encode_to_vec();
        if let Err(problem) = fuzzing::check_snapshot_compile(&bytes) {
            panic!("fixture {name}: {problem}");
        }
        valid += usize::from(
            Snapshot::decode(&bytes[..])
                .is_ok_and(|s| gateway_proto::validate(&s.resources).is_ok()),
        );
        if write {
            fs::create_dir_all(&dir).expect("corpus directory");
            fs::write(dir.join(format!("seed-{name}")), &bytes).expect("seed written");
        }
    }
    assert!(
        valid >= 3,
        "only {valid} fixtures are valid: the check would prove little"
    );
    if !write {
        return;
    }
    let dir = fuzz_dir().join("corpus/normalize_path");
    fs::create_dir_all(&dir).expect("corpus directory");
    for (i, path) in PATHS.iter().enumerate() {
        fs::write(dir.join(format!("seed-{i:02}")), path).expect("seed written");
    }
}

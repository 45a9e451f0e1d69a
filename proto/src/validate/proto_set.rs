//! A ProtoSet on its own: `.proto` sources by import path, compiled with protox exactly as the
//! data planes will (so `gatewayctl validate`, the control plane and every data plane agree),
//! or a compiled `FileDescriptorSet`. A source that does not compile is refused naming the file,
//! with the line and column of the problem. The Google API files transcoding needs and the
//! well-known types are built in ([`google`]).

mod google;

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Mutex, PoisonError},
};

use prost::Message as _;

use miette::Diagnostic as _;
use prost_reflect::DescriptorPool;
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::At;
use crate::v1;

/// The most source (or descriptor) bytes one ProtoSet may hold.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;

/// Why a ProtoSet does not compile: the field (`spec.files["a/b.proto"]`, `spec.descriptorSet`)
/// and what is wrong.
pub type ProtoSetError = (String, String);

pub(super) fn check_proto_set(at: &mut At<'_>, spec: &v1::ProtoSetSpec) {
    if let Err((field, message)) = compile(spec) {
        at.error(&field, message);
    }
}

/// The descriptors of a ProtoSet: its files and everything they import. Compiled sets are
/// kept (the last [`CACHED`], by a digest of the spec), so validating a configuration again,
/// as every apply and every snapshot does, does not compile its ProtoSets again.
pub fn compile(spec: &v1::ProtoSetSpec) -> Result<DescriptorPool, ProtoSetError> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &spec.encode_to_vec());
    let key: [u8; 32] = digest.as_ref().try_into().unwrap_or_default();
    if let Some(pool) = cache_get(&key) {
        return Ok(pool);
    }
    let pool = compile_uncached(spec)?;
    cache_put(key, pool.clone());
    Ok(pool)
}

/// How many compiled ProtoSets are kept.
const CACHED: usize = 32;

static CACHE: Mutex<Vec<([u8; 32], DescriptorPool)>> = Mutex::new(Vec::new());

fn cache_get(key: &[u8; 32]) -> Option<DescriptorPool> {
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    let at = cache.iter().position(|(k, _)| k == key)?;
    // Most recently used first.
    let entry = cache.remove(at);
    let pool = entry.1.clone();
    cache.insert(0, entry);
    Some(pool)
}

fn cache_put(key: [u8; 32], pool: DescriptorPool) {
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    cache.insert(0, (key, pool));
    cache.truncate(CACHED);
}

fn compile_uncached(spec: &v1::ProtoSetSpec) -> Result<DescriptorPool, ProtoSetError> {
    match (spec.files.is_empty(), spec.descriptor_set.is_empty()) {
        (false, false) => Err((
            "spec.descriptorSet".into(),
            "set files or descriptorSet, not both".into(),
        )),
        (true, true) => Err((
            "spec.files".into(),
            "must hold at least one .proto file (or set descriptorSet)".into(),
        )),
        (true, false) => decode(&spec.descriptor_set),
        (false, true) => compile_sources(&spec.files),
    }
}

fn decode(bytes: &[u8]) -> Result<DescriptorPool, ProtoSetError> {
    let field = || "spec.descriptorSet".to_owned();
    if bytes.len() > MAX_BYTES {
        return Err((field(), format!("is over {MAX_BYTES} bytes")));
    }
    DescriptorPool::decode(bytes)
        .map_err(|e| (field(), format!("is not a usable FileDescriptorSet: {e}")))
}

fn compile_sources(files: &BTreeMap<String, String>) -> Result<DescriptorPool, ProtoSetError> {
    let total: usize = files
        .iter()
        .map(|(name, source)| name.len() + source.len())
        .sum();
    if total > MAX_BYTES {
        return Err(("spec.files".into(), format!("hold over {MAX_BYTES} bytes")));
    }
    for name in files.keys() {
        check_name(name).map_err(|reason| (file_field(name), reason))?;
    }
    let mut resolver = ChainFileResolver::new();
    resolver.add(Sources(files.clone()));
    resolver.add(BuiltIn);
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true).include_source_info(false);
    compiler
        .open_files(files.keys())
        .map_err(|error| located(&error, files))?;
    Ok(compiler.descriptor_pool())
}

/// An import path of the user's: relative, `/`-separated, ending in `.proto`, and not one of
/// the built-in files.
fn check_name(name: &str) -> Result<(), String> {
    if !name.ends_with(".proto") {
        return Err("must be an import path ending in .proto".into());
    }
    let bad_segment = name
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if bad_segment || name.contains('\\') {
        return Err("must be a relative import path like kit/v1/kit.proto".into());
    }
    if name.starts_with("google/protobuf/") || google::FILES.iter().any(|(n, _)| *n == name) {
        return Err("is built in: import it without shipping it".into());
    }
    Ok(())
}

fn file_field(name: &str) -> String {
    format!("spec.files[{name:?}]")
}

/// The error's file (one of the user's, if it is), with the line and column of its first label.
fn located(error: &protox::Error, files: &BTreeMap<String, String>) -> ProtoSetError {
    let file = error.file().filter(|file| files.contains_key(*file));
    let field = file.map_or_else(|| "spec.files".to_owned(), file_field);
    let offset = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    let message = match (file.and_then(|f| files.get(f)), offset) {
        (Some(source), Some(offset)) => {
            let (line, column) = line_and_column(source, offset);
            format!("line {line}, column {column}: {error}")
        }
        _ => format!("does not compile: {error}"),
    };
    (field, message)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset.min(source.len())).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The user's sources.
struct Sources(BTreeMap<String, String>);

impl FileResolver for Sources {
    fn resolve_path(&self, path: &Path) -> Option<String> {
        let name = path.to_str()?;
        self.0.contains_key(name).then(|| name.to_owned())
    }

    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.get(name) {
            Some(source) => File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// The Google API files.
struct BuiltIn;

impl FileResolver for BuiltIn {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match google::FILES.iter().find(|(n, _)| *n == name) {
            Some((name, source)) => File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(files: &[(&str, &str)]) -> v1::ProtoSetSpec {
        v1::ProtoSetSpec {
            files: files
                .iter()
                .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
                .collect(),
            ..Default::default()
        }
    }

    const LIBRARY: &str = r#"syntax = "proto3";
package kit.v1;
import "google/api/annotations.proto";
import "google/protobuf/timestamp.proto";
import "kit/v1/book.proto";
service Library {
  rpc GetBook(GetBookRequest) returns (Book) {
    option (google.api.http) = { get: "/v1/{name=shelves/*/books/*}" };
  }
}
message GetBookRequest { string name = 1; google.protobuf.Timestamp at = 2; }
"#;
    const BOOK: &str = "syntax = \"proto3\";\npackage kit.v1;\nmessage Book { string name = 1; }\n";

    #[test]
    fn compiles_sources_with_the_built_in_imports() {
        let pool = compile(&spec(&[
            ("kit/v1/library.proto", LIBRARY),
            ("kit/v1/book.proto", BOOK),
        ]))
        .unwrap();
        let service = pool.get_service_by_name("kit.v1.Library").unwrap();
        assert_eq!(service.methods().count(), 1);
        assert!(pool.get_message_by_name("google.api.HttpRule").is_some());
        assert!(
            pool.get_message_by_name("google.protobuf.Timestamp")
                .is_some()
        );
    }

    #[test]
    fn names_the_file_line_and_column_of_an_error() {
        let broken =
            "syntax = \"proto3\";\npackage kit.v1;\nmessage Book {\n  strin name = 1;\n}\n";
        let (field, message) = compile(&spec(&[("kit/v1/book.proto", broken)])).unwrap_err();
        assert_eq!(field, "spec.files[\"kit/v1/book.proto\"]");
        assert!(message.starts_with("line 4, column 3: "), "{message}");

        let (field, message) = compile(&spec(&[("kit/v1/library.proto", LIBRARY)])).unwrap_err();
        assert_eq!(field, "spec.files[\"kit/v1/library.proto\"]");
        assert!(message.contains("kit/v1/book.proto"), "{message}");
    }

    #[test]
    fn refuses_bad_names_both_forms_and_bad_descriptor_sets() {
        for name in [
            "../x.proto",
            "a//b.proto",
            "a.txt",
            "google/api/http.proto",
            "google/protobuf/x.proto",
        ] {
            let (field, _) = compile(&spec(&[(name, BOOK)])).unwrap_err();
            assert_eq!(field, file_field(name));
        }
        let (field, _) = compile(&spec(&[])).unwrap_err();
        assert_eq!(field, "spec.files");
        let both = v1::ProtoSetSpec {
            descriptor_set: vec![1, 2, 3],
            ..spec(&[("a.proto", BOOK)])
        };
        assert_eq!(compile(&both).unwrap_err().0, "spec.descriptorSet");
        let garbage = v1::ProtoSetSpec {
            descriptor_set: vec![0xff, 0xff, 0xff],
            ..Default::default()
        };
        let (field, message) = compile(&garbage).unwrap_err();
        assert_eq!(field, "spec.descriptorSet");
        assert!(
            message.starts_with("is not a usable FileDescriptorSet"),
            "{message}"
        );
    }

    #[test]
    fn takes_a_compiled_descriptor_set() {
        let pool = compile(&spec(&[("kit/v1/book.proto", BOOK)])).unwrap();
        let set = v1::ProtoSetSpec {
            descriptor_set: pool.encode_to_vec(),
            ..Default::default()
        };
        let decoded = compile(&set).unwrap();
        assert!(decoded.get_message_by_name("kit.v1.Book").is_some());
    }
}

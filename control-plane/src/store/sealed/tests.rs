use std::io::Write as _;

use futures_util::StreamExt as _;
use gateway_proto::v1::{self, Resource, resource::Spec};

use super::*;
use crate::store::EmbeddedStore;

const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";

fn certificate(name: &str) -> Resource {
    Resource {
        name: name.into(),
        version: 0,
        spec: Some(Spec::Certificate(v1::CertificateSpec {
            hostnames: vec!["gw.test".into()],
            certificate_pem: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
            private_key_pem: KEY.into(),
            default: false,
        })),
    }
}

fn key_file(dir: &Path, name: &str, lines: &[&str]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
    path
}

const A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const B: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f";

fn key_of(resource: &Resource) -> &str {
    match &resource.spec {
        Some(Spec::Certificate(spec)) => &spec.private_key_pem,
        _ => panic!("not a certificate"),
    }
}

/// The bytes of the embedded store's file: what a copy of it (or of its backup) holds.
fn on_disk(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.extend(std::fs::read(path).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn keys_are_sealed_on_disk_and_open_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path(), "keys", &[A]);
    let data = dir.path().join("data");
    let inner: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&data).unwrap());
    let sealed = SealedStore::new(inner.clone(), load_keys(&keys).unwrap());
    let mut watch = sealed.watch(1).await.unwrap();
    sealed
        .commit(0, vec![Op::Put(certificate("gw"))])
        .await
        .unwrap();

    assert_eq!(key_of(&sealed.list().await.unwrap().resources[0]), KEY);
    let raw = inner.list().await.unwrap();
    let stored = key_of(&raw.resources[0]);
    assert!(stored.starts_with("sealed:v1:"), "{stored}");
    // The file holds values readably (the sealed prefix is there), and not the key.
    let disk = on_disk(&data);
    assert!(contains(&disk, b"sealed:v1:"));
    assert!(!contains(&disk, b"MIGHAgEAMBMGByqGSM49"));
    let batch = watch.next().await.unwrap().unwrap();
    let Event::Put(seen) = &batch.events[0] else {
        panic!("{batch:?}");
    };
    assert_eq!(key_of(seen), KEY, "watches see the key opened");
}

#[tokio::test]
async fn rotation_reads_old_entries_and_writes_with_the_first_key() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("data")).unwrap());
    let old = SealedStore::new(
        inner.clone(),
        load_keys(&key_file(dir.path(), "a", &[A])).unwrap(),
    );
    let v1 = old
        .commit(0, vec![Op::Put(certificate("one"))])
        .await
        .unwrap();

    // B first, A kept: what was sealed with A still opens; new writes are sealed with B.
    let rotated = SealedStore::new(
        inner.clone(),
        load_keys(&key_file(dir.path(), "ba", &["# new key first", B, A])).unwrap(),
    );
    assert_eq!(key_of(&rotated.list().await.unwrap().resources[0]), KEY);
    rotated
        .commit(v1, vec![Op::Put(certificate("two"))])
        .await
        .unwrap();
    let only_b = SealedStore::new(
        inner.clone(),
        load_keys(&key_file(dir.path(), "b", &[B])).unwrap(),
    );
    let error = only_b.list().await.unwrap_err().to_string();
    assert!(
        error.contains("Certificate/one") && error.contains("--secret-key-file"),
        "{error}"
    );
    // "two" opens with B alone once "one" is written again.
    let v = rotated.list().await.unwrap().version;
    rotated
        .commit(v, vec![Op::Put(certificate("one"))])
        .await
        .unwrap();
    let listed = only_b.list().await.unwrap();
    assert!(listed.resources.iter().all(|r| key_of(r) == KEY));
}

#[tokio::test]
async fn a_sealed_key_cannot_be_moved_to_another_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("data")).unwrap());
    let sealed = SealedStore::new(
        inner.clone(),
        load_keys(&key_file(dir.path(), "a", &[A])).unwrap(),
    );
    let v = sealed
        .commit(0, vec![Op::Put(certificate("victim"))])
        .await
        .unwrap();
    // Someone with write access to the store copies the sealed value under another name.
    let mut copied = inner.list().await.unwrap().resources.remove(0);
    copied.name = "attacker".into();
    inner.commit(v, vec![Op::Put(copied)]).await.unwrap();
    assert!(sealed.list().await.is_err());
}

#[test]
fn malformed_key_files_are_refused_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let short = key_file(dir.path(), "short", &[A, "abcd"]);
    assert_eq!(
        load_keys(&short).unwrap_err().to_string(),
        format!(
            "{}: line 2: a key is 64 hex characters (32 bytes)",
            short.display()
        )
    );
    let missing = dir.path().join("missing");
    assert!(matches!(
        load_keys(&missing),
        Err(KeyFileError::Read { .. })
    ));
}

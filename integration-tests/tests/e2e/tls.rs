//! TLS termination with the real programs: a `Certificate` applied with gatewayctl to a
//! control plane on etcd that seals private keys (`--secret-key-file`), served by a data plane
//! on `--tls-listen`, rotated under steady TLS load.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use integration_tests::{
    ControlPlane, ControlPlaneOpts, DataPlane, DataPlaneOpts, DemoBackend, Etcd, eventually,
    unique_prefix, write_file,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

use crate::support::{docs, route, upstream};

struct Leaf {
    cert: String,
    key: String,
    der: Vec<u8>,
}

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, name: &str) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    Leaf {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

fn certificate_doc(name: &str, host: &str, leaf: &Leaf) -> String {
    format!(
        "kind: Certificate\nname: {name}\nspec:\n  hostnames: [{host}]\n  certificatePem: {}\n  privateKeyPem: {}\n",
        serde_json::to_string(&leaf.cert).unwrap(),
        serde_json::to_string(&leaf.key).unwrap()
    )
}

fn connector(ca: &CertifiedIssuer<'static, KeyPair>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A new handshake with SNI `host` and one GET: the certificate presented and the response.
async fn tls_get(
    addr: SocketAddr,
    tls: &TlsConnector,
    host: &str,
    path: &str,
) -> anyhow::Result<(Vec<u8>, String)> {
    let tcp = TcpStream::connect(addr).await?;
    let mut stream = tls
        .connect(ServerName::try_from(host.to_owned())?, tcp)
        .await?;
    let presented = stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c[0].to_vec())
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    Ok((presented, String::from_utf8_lossy(&raw).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_sealed_in_etcd_served_by_sni_and_rotated_under_load() {
    let backend = DemoBackend::start("echo-tls").await;
    let etcd = Etcd::start().await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("secret-keys");
    write_file(
        &key_file,
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
    );
    let prefix = unique_prefix();
    let cp = ControlPlane::start(
        ControlPlaneOpts::etcd(etcd.endpoint(), prefix.clone())
            .arg("--secret-key-file")
            .arg(key_file.display().to_string()),
    )
    .await;
    let dp = DataPlane::start(
        DataPlaneOpts::control_planes([cp.url()])
            .tls()
            .arg("--secret-key-file")
            .arg(key_file.display().to_string()),
    )
    .await;
    let tls_addr = dp.tls_addr().expect("a TLS listener");
    let ctl = cp.ctl();

    let ca = ca();
    let first = leaf(&ca, "gw.test");
    let yaml = docs(&[
        upstream("echo", &[backend.addr()]),
        route("echo", "/echo", "echo"),
        certificate_doc("gw", "gw.test", &first),
    ]);
    ctl.apply_yaml(&yaml, &["--wait"]).await.success();
    let client = connector(&ca);
    let (presented, text) = tls_get(tls_addr, &client, "gw.test", "/echo/x")
        .await
        .unwrap();
    assert_eq!(presented, first.der);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("echo-tls"), "{text}");

    // What etcd holds (and any copy of it): no private key in the clear.
    let key_body: String = first
        .key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut etcd_client = etcd.client().await;
    let stored = etcd_client
        .get(
            prefix.as_bytes(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    let mut all = Vec::new();
    for kv in stored.kvs() {
        all.extend_from_slice(kv.value());
    }
    assert!(!all.is_empty(), "the certificate is in etcd under {prefix}");
    let needle = &key_body.as_bytes()[..40];
    assert!(
        !all.windows(needle.len()).any(|w| w == needle),
        "the key is sealed in etcd"
    );
    assert!(all.windows(10).any(|w| w == b"sealed:v1:"));
    // Nor the data plane's disk cache.
    dp.wait_cached().await;
    let cached = std::fs::read(dp.cache_dir().join("snapshot.bin")).unwrap();
    assert!(cached.windows(10).any(|w| w == b"sealed:v1:"));
    assert!(
        !cached.windows(needle.len()).any(|w| w == needle),
        "the key is sealed in the cache"
    );
    // And reads never show it.
    let shown = ctl.run(&["get", "certificate", "gw", "-o", "yaml"]).await;
    shown.success();
    assert!(
        shown.stdout.contains("<redacted>") && !shown.stdout.contains(&key_body[..40]),
        "{}",
        shown.stdout
    );

    // Rotation under steady load: new handshakes, one after another, never fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, done, failed, client) =
            (stop.clone(), done.clone(), failed.clone(), client.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match tls_get(tls_addr, &client, "gw.test", "/echo/load").await {
                    Ok((_, text)) if text.starts_with("HTTP/1.1 200") => {
                        done.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    eventually("TLS load running", || {
        let done = done.clone();
        async move {
            (done.load(Ordering::Relaxed) > 10)
                .then_some(())
                .ok_or_else(|| anyhow::anyhow!("not yet"))
        }
    })
    .await;
    let second = leaf(&ca, "gw.test");
    ctl.apply_yaml(&certificate_doc("gw", "gw.test", &second), &["--wait"])
        .await
        .success();
    // A fresh client: one that resumes a session is not shown a certificate again.
    let (presented, _) = tls_get(tls_addr, &connector(&ca), "gw.test", "/echo/x")
        .await
        .unwrap();
    assert_eq!(
        presented, second.der,
        "new handshakes get the rotated certificate"
    );
    let before = done.load(Ordering::Relaxed);
    eventually("TLS load after the rotation", || {
        let done = done.clone();
        async move {
            (done.load(Ordering::Relaxed) > before + 10)
                .then_some(())
                .ok_or_else(|| anyhow::anyhow!("not yet"))
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "{} requests, none may fail",
        done.load(Ordering::Relaxed)
    );
}

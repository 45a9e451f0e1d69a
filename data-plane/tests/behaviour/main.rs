//! One behaviour table, every protocol: each case goes to the real data plane (standalone, on
//! 127.0.0.1:0) over HTTP/1.1 (raw bytes) and HTTP/2 (hyper's client), each on TCP (h2c) and in
//! TLS, and all must give the same status, the same headers at the backend and the same
//! response headers; only the client's scheme may show, where the row says so.
//! Future capabilities add their cases to `cases.rs`; a protocol front end added later joins
//! by adding a client to `clients.rs`.

mod backend;
mod case;
mod cases;
mod clients;
mod confusion;
mod retries;
mod transcoding;

use std::{net::SocketAddr, time::Duration};

use gateway_data_plane::{Config, Gateway, SourceConfig, config::Settings};

use self::{
    backend::Backends,
    cases::Case,
    clients::{Protocol, Target, tls::Ca},
};

/// How long anything may take before the test fails instead of hanging.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// A data plane serving `yaml` from a file, on TCP and in TLS, stopped when dropped.
pub(crate) struct DataPlane {
    pub(crate) target: Target,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl DataPlane {
    pub(crate) async fn start(yaml: &str, settings: Settings) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("gateway.yaml");
        let ca = Ca::new();
        let yaml = format!("{}\n{}", yaml.trim_end(), ca.certificate_document());
        std::fs::write(&file, yaml).expect("write config");
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let gateway = Gateway::bind(Config {
            listen: loopback,
            tls_listen: Some(loopback),
            admin_listen: loopback,
            source: SourceConfig::File(file),
            settings,
            drain_timeout: Duration::from_secs(1),
            redis: None,
            cluster_size: 1,
        })
        .await
        .expect("the data plane starts");
        let target = Target {
            plain: gateway.http_addr().expect("bound"),
            tls: gateway.tls_addr().expect("a TLS listener").expect("bound"),
            client: ca.client(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(gateway.run(async move {
            let _ = stopped.await;
        }));
        Self {
            target,
            stop: Some(stop),
            _dir: dir,
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The backends every table starts: `{name}` in a table's config is the backend's address.
const BACKENDS: &[&str] = &["public", "admin", "other", "auth", "failing", "grpc"];

/// Runs every case of `cases` over every protocol against one data plane.
async fn run_table(yaml: &str, settings: Settings, cases: &[Case]) {
    let backends = Backends::start(BACKENDS).await;
    let yaml = backends.render(yaml);
    let gateway = DataPlane::start(&yaml, settings).await;
    let mut failures = Vec::new();
    for case in cases {
        for protocol in Protocol::ALL {
            if !case.protocols.contains(&protocol) {
                continue;
            }
            backends.reset();
            let got = protocol
                .send(&gateway.target, &case.request.for_protocol(protocol))
                .await;
            let seen = backends.take();
            if let Err(problem) = case.check(&got, &seen, protocol.is_tls()) {
                failures.push(format!("{} over {protocol:?}: {problem}", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn behaviour_table() {
    run_table(cases::CONFIG, Settings::default(), &cases::all()).await;
}

/// The same table with every upstream spoken to over HTTP/2 (H2C): what the backends see and
/// what the clients get must not depend on the upstream protocol either.
#[tokio::test]
async fn behaviour_table_over_h2c_upstreams() {
    let yaml = cases::CONFIG.replace("spec: { endpoints:", "spec: { protocol: H2C, endpoints:");
    assert_eq!(yaml.matches("protocol: H2C").count(), 4, "every upstream");
    run_table(&yaml, Settings::default(), &cases::all()).await;
}

/// REST calls transcoded to gRPC: the same calls, the same gRPC requests at the backend and the
/// same JSON answers from every front end.
#[tokio::test]
async fn behaviour_table_of_transcoding() {
    let yaml = format!("{}\n---\n{}", cases::CONFIG.trim_end(), transcoding::CONFIG);
    run_table(&yaml, Settings::default(), &transcoding::all()).await;
}

#[tokio::test]
async fn path_confusion_never_reaches_admin() {
    run_table(
        cases::CONFIG,
        Settings::default(),
        &confusion::path_confusion(),
    )
    .await;
}

#[tokio::test]
async fn underscore_headers_can_be_refused_or_allowed() {
    use gateway_data_plane::config::UnderscoreHeaders;
    for (setting, cases) in [
        (UnderscoreHeaders::Reject, cases::underscores_rejected()),
        (UnderscoreHeaders::Allow, cases::underscores_allowed()),
    ] {
        let settings = Settings {
            underscore_headers: setting,
            ..Settings::default()
        };
        run_table(cases::CONFIG, settings, &cases).await;
    }
}

#[tokio::test]
async fn requests_over_max_requests_get_503_with_retry_after() {
    let backends = Backends::start(BACKENDS).await;
    let settings = Settings {
        max_requests: 1,
        ..Settings::default()
    };
    let gateway = DataPlane::start(&backends.render(cases::CONFIG), settings).await;
    for protocol in Protocol::ALL {
        let held = clients::Request {
            method: "GET",
            target: "/public/hold".into(),
            host: "example.com",
            ..clients::Request::default()
        };
        let target = gateway.target.clone();
        let first = tokio::spawn(async move { protocol.send(&target, &held).await });
        // The first request is at the backend, in flight: the next one is one too many.
        tokio::time::timeout(PATIENCE, async {
            while backends.seen() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the first request reaches the backend");
        let second = clients::Request {
            method: "GET",
            target: "/public/x".into(),
            host: "example.com",
            ..clients::Request::default()
        };
        let refused = protocol.send(&gateway.target, &second).await;
        assert_eq!(refused.status, 503, "{protocol:?}: {refused:?}");
        assert_eq!(refused.header("retry-after"), Some("1"), "{protocol:?}");
        let body: serde_json::Value = serde_json::from_slice(&refused.body).expect("JSON");
        assert_eq!(body["error"]["code"], "overloaded", "{protocol:?}");
        backends.release();
        let first = first.await.expect("first request");
        assert_eq!(first.status, 200, "{protocol:?}: {first:?}");
        backends.reset();
    }
}

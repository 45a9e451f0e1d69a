//! TLS between our programs: a control plane whose gRPC listener requires client certificates
//! (`--tls-cert`, `--tls-key`, `--client-ca`), gatewayctl and a data plane that present one,
//! and data planes with the wrong CA or no certificate that get no configuration.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use integration_tests::{
    ControlPlane, ControlPlaneOpts, DataPlane, DataPlaneOpts, DemoBackend, Gatewayctl, holds_for,
    write_file,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};

use crate::support::{docs, route, upstream, wait_served};

struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        write_file(dir.join("ca.pem"), ca.pem());
        Self { dir, ca }
    }

    fn ca(&self) -> String {
        self.dir.join("ca.pem").display().to_string()
    }

    /// A leaf for `sans`, written as `<name>.pem` and `<name>-key.pem`: (cert, key) paths.
    fn leaf(&self, name: &str, sans: Vec<SanType>) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}-key.pem")),
        );
        write_file(&cert_path, cert.pem());
        write_file(&key_path, key.serialize_pem());
        (
            cert_path.display().to_string(),
            key_path.display().to_string(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_data_planes_and_gatewayctl_over_mutual_tls() {
    let backend = DemoBackend::start("echo-mtls").await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "good");
    let (server_cert, server_key) = pki.leaf(
        "server",
        vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::DnsName("localhost".try_into().unwrap()),
        ],
    );
    let (client_cert, client_key) =
        pki.leaf("client", vec![SanType::DnsName("dp".try_into().unwrap())]);
    let cp = ControlPlane::start(
        ControlPlaneOpts::embedded()
            .arg("--tls-cert")
            .arg(server_cert)
            .arg("--tls-key")
            .arg(server_key)
            .arg("--client-ca")
            .arg(pki.ca()),
    )
    .await;
    let url = format!("https://{}", cp.grpc_addr());
    let ca = pki.ca();

    // gatewayctl: the CA and a client certificate.
    let ctl = Gatewayctl::new(url.clone());
    let tls_args = [
        "--ca-file",
        &ca,
        "--client-cert",
        &client_cert,
        "--client-key",
        &client_key,
    ];
    let yaml = docs(&[
        upstream("echo", &[backend.addr()]),
        route("echo", "/echo", "echo"),
    ]);
    let mut args = tls_args.to_vec();
    args.extend(["apply", "-f", "-"]);
    ctl.run_with_stdin(&args, Some(&yaml)).await.success();
    // Without the client certificate the server refuses the connection.
    let mut bare = vec!["--ca-file", &ca];
    bare.extend(["get", "routes"]);
    assert_ne!(
        ctl.run(&bare).await.code,
        0,
        "no client certificate, no admin API"
    );

    // A data plane with the CA and a client certificate gets the configuration.
    let dp = DataPlane::start(
        DataPlaneOpts::control_planes([url.clone()])
            .arg("--control-plane-ca")
            .arg(pki.ca())
            .arg("--client-cert")
            .arg(client_cert.clone())
            .arg("--client-key")
            .arg(client_key.clone()),
    )
    .await;
    wait_served(&dp, "/echo/x", "echo-mtls").await;

    // The wrong CA, or no client certificate: no configuration, ever.
    let other = Pki::new(dir.path(), "other");
    let wrong_ca = DataPlane::start(
        DataPlaneOpts::control_planes([url.clone()])
            .arg("--control-plane-ca")
            .arg(other.ca())
            .arg("--client-cert")
            .arg(client_cert)
            .arg("--client-key")
            .arg(client_key),
    )
    .await;
    let no_cert = DataPlane::start(
        DataPlaneOpts::control_planes([url])
            .arg("--control-plane-ca")
            .arg(pki.ca()),
    )
    .await;
    for dp in [&wrong_ca, &no_cert] {
        holds_for("no configuration", Duration::from_secs(2), || async {
            match dp.ready_status().await? {
                503 => Ok(()),
                other => anyhow::bail!("{} is ready ({other})", dp.id()),
            }
        })
        .await;
    }
}

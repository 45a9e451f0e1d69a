//! TLS for the clients: a CA made per data plane, the certificate the data plane serves from
//! it, and handshakes that trust that CA alone.

use std::{net::SocketAddr, sync::Arc};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

/// The name every handshake asks for, whatever Host or `:authority` the case sends: the cases
/// are about what the gateway does with the request, not about which certificate it picks.
const SNI: &str = "example.com";

/// A CA made for one data plane, so that nothing else can pass for it.
pub(crate) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        Self { issuer }
    }

    /// A `Certificate` document for a new leaf for [`SNI`], to append to a config; also the
    /// default, so that a handshake never fails for want of a certificate.
    pub(crate) fn certificate_document(&self) -> String {
        let params = CertificateParams::new(vec![SNI.to_owned()]).expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let leaf = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        let quote = |pem: &str| serde_json::to_string(pem).expect("PEM as a YAML string");
        format!(
            "---\nkind: Certificate\nname: gw\nspec:\n  hostnames: [{SNI}]\n  default: true\n  certificatePem: {}\n  privateKeyPem: {}\n",
            quote(&leaf.pem()),
            quote(&key.serialize_pem()),
        )
    }

    /// A client configuration trusting this CA alone; ALPN is set per connection.
    pub(crate) fn client(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("CA as a root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

/// A TLS connection to `addr` offering `alpn` alone; the server must pick it, else the
/// request would go out in a protocol the case did not ask for.
pub(crate) async fn connect(
    addr: SocketAddr,
    config: &ClientConfig,
    alpn: &'static [u8],
) -> TlsStream<TcpStream> {
    let mut config = config.clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(SNI).expect("SNI");
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let negotiated = stream.get_ref().1.alpn_protocol();
    assert_eq!(
        negotiated,
        Some(alpn),
        "ALPN: {:?} negotiated, {:?} offered",
        negotiated.map(String::from_utf8_lossy),
        String::from_utf8_lossy(alpn)
    );
    stream
}

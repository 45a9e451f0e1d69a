//! TLS to endpoints (rustls, the one aws-lc-rs provider): the client configuration of one
//! upstream, compiled with the table. Verification is on by default, against the upstream's
//! CA bundle or the system's roots; a client certificate (a `Certificate` by name) for
//! endpoints that ask for one; `insecureSkipVerify` accepts any server certificate but still
//! checks the handshake's signatures. ALPN offers exactly the protocol the upstream is set to,
//! so an endpoint that does not speak it fails the connection instead of being misread.

use std::{
    io,
    sync::{Arc, OnceLock},
};

use gateway_proto::v1::{self, upstream_spec::Protocol};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        ResolvesClientCert,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, aws_lc_rs},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::UpstreamStream;

/// One upstream's TLS client.
pub struct TlsClient {
    connector: TlsConnector,
    /// The configured SNI; otherwise each endpoint's host.
    sni: Option<ServerName<'static>>,
    /// The endpoint must agree to HTTP/2.
    h2: bool,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("sni", &self.sni)
            .field("h2", &self.h2)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// The client of an upstream with this protocol and `tls` (validated), presenting
    /// `client_certificate` if it names one. `None` when the upstream is not spoken to over
    /// TLS (HTTP1 without `tls`, H2C).
    pub fn compile(
        protocol: Protocol,
        tls: Option<&v1::UpstreamTls>,
        client_certificate: Option<&v1::CertificateSpec>,
    ) -> Result<Option<Arc<Self>>, String> {
        let h2 = match (protocol, tls) {
            (Protocol::H2c, _) | (Protocol::Http1 | Protocol::Unspecified, None) => {
                return Ok(None);
            }
            (Protocol::H2, _) => true,
            (Protocol::Http1 | Protocol::Unspecified, Some(_)) => false,
        };
        let default = v1::UpstreamTls::default();
        let tls = tls.unwrap_or(&default);
        let provider = Arc::new(aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if tls.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        } else if tls.ca_certificate_pem.is_empty() {
            builder.with_root_certificates(system_roots())
        } else {
            builder.with_root_certificates(gateway_proto::validate::trust_anchors(
                &tls.ca_certificate_pem,
            )?)
        };
        let mut config = match client_certificate {
            Some(spec) => {
                let key = gateway_proto::validate::parse_certificate(spec)
                    .map_err(|(field, message)| format!("client certificate {field} {message}"))?;
                builder.with_client_cert_resolver(Arc::new(Always(Arc::new(key))))
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![if h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        let sni = match tls.sni.as_str() {
            "" => None,
            name => Some(
                ServerName::try_from(name.to_owned()).map_err(|e| format!("sni {name:?}: {e}"))?,
            ),
        };
        Ok(Some(Arc::new(Self {
            connector: TlsConnector::from(Arc::new(config)),
            sni,
            h2,
        })))
    }

    /// The handshake over a connected `stream` to `host` (a DNS name or an IP address,
    /// without the port).
    pub(super) async fn handshake(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> io::Result<UpstreamStream> {
        let name = match &self.sni {
            Some(name) => name.clone(),
            None => server_name(host)?,
        };
        let stream = self.connector.connect(name, stream).await?;
        let agreed = stream.get_ref().1.alpn_protocol();
        let wanted: &[u8] = if self.h2 { b"h2" } else { b"http/1.1" };
        // A server that ignores ALPN speaks its default, HTTP/1.1: fine for HTTP1, not for H2.
        if agreed.is_some_and(|p| p != wanted) || (self.h2 && agreed.is_none()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the endpoint did not agree to {} by ALPN",
                    String::from_utf8_lossy(wanted)
                ),
            ));
        }
        Ok(UpstreamStream::Tls(Box::new(stream)))
    }
}

/// A host as a server name.
fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host:?} is no server name for TLS: {e}"),
        )
    })
}

/// The system's trust roots, read once; a certificate that does not load is logged and left
/// out.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            for error in &loaded.errors {
                tracing::warn!(%error, "a system root certificate did not load");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
            if added == 0 {
                tracing::warn!(
                    ignored,
                    "no system root certificates: upstream TLS without caCertificatePem verifies nothing"
                );
            }
            Arc::new(roots)
        })
        .clone()
}

/// Presents the same certificate to every server that asks.
#[derive(Debug)]
struct Always(Arc<CertifiedKey>);

impl ResolvesClientCert for Always {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `insecureSkipVerify`: any certificate for any name, with the handshake's signatures still
/// checked against it.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

//! TLS termination (rustls): the certificate for each handshake chosen by SNI from the table
//! in force at that moment (so a swap rotates certificates for new handshakes and leaves open
//! connections alone), ALPN `h2` and `http/1.1`, TLS 1.2 and 1.3, session resumption by ID
//! and by ticket.

use std::sync::Arc;

use rustls::{
    ServerConfig,
    crypto::aws_lc_rs,
    server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache},
    sign::CertifiedKey,
};
use tokio_rustls::TlsAcceptor;

use crate::state::State;

/// Sessions kept for resumption by ID (tickets need no server state).
const SESSION_CACHE: usize = 4096;

/// The acceptor of a TLS listener serving `state`'s certificates.
pub(crate) fn acceptor(state: Arc<State>) -> Result<TlsAcceptor, rustls::Error> {
    // AES-128-GCM with SHA-256 first, whatever the client prefers: as safe as AES-256 here,
    // and its key schedule (HKDF over SHA-256, which CPUs accelerate) is what a handshake
    // spends most of its time on after the key exchange.
    let mut provider = aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let provider = Arc::new(provider);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni(state)));
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.ticketer = aws_lc_rs::Ticketer::new()?;
    // One ticket per handshake (rustls sends two by default): each costs a key derivation and
    // an encryption, and a client resumes with one.
    config.send_tls13_tickets = 1;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Chooses from the current table; none (no table, no match and no default) fails the
/// handshake with an alert.
#[derive(Debug)]
struct BySni(Arc<State>);

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.0.table()?;
        let chosen = table.certificates().choose(hello.server_name());
        if chosen.is_none() {
            tracing::debug!(sni = hello.server_name(), "no certificate for this name");
        }
        chosen
    }
}

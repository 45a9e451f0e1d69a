//! The control plane's configuration, as values (main.rs maps flags onto it; the library
//! never reads flags or the environment itself).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::discovery::DiscoveryConfig;

/// Everything the control plane needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC for the admin and discovery services.
    pub listen: SocketAddr,
    /// HTTP for `/live`, `/ready` and `/metrics`.
    pub admin_listen: SocketAddr,
    /// Where the configuration lives.
    pub store: StoreConfig,
    /// The bearer token the admin API requires (none: no auth).
    pub admin_token: Option<Token>,
    /// The bearer token the discovery stream requires (none: no auth).
    pub dataplane_token: Option<Token>,
    /// How long in-flight requests and streams get to finish on shutdown.
    pub drain_timeout: Duration,
    /// Heartbeat and dead-peer timings (the control-plane address is filled in at bind time).
    pub discovery: DiscoveryConfig,
    /// Keys that seal private keys at rest (`--secret-key-file`); none: stored in the clear.
    pub secret_key_file: Option<PathBuf>,
    /// TLS on the gRPC listener (`--tls-cert`, `--tls-key`, `--client-ca`); none: plaintext.
    pub tls: Option<ServerTls>,
}

/// The gRPC listener's TLS: its certificate chain and key, and the CA that client
/// certificates must chain to (mutual TLS) when given. PEM files.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// Which store to use.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// etcd at these endpoints, below this key prefix.
    Etcd {
        /// `http://host:port` URLs.
        endpoints: Vec<String>,
        /// E.g. `/gateway/v1`.
        prefix: String,
    },
    /// The embedded redb store in this directory.
    Embedded {
        /// The data directory.
        dir: PathBuf,
    },
}

/// A secret bearer token; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from its text (surrounding whitespace removed); `None` when empty.
    pub fn new(text: &str) -> Option<Self> {
        let text = text.trim();
        (!text.is_empty()).then(|| Self(text.to_owned()))
    }

    /// The token from `file` if given, else from `env` (the value of an environment variable),
    /// by the rule every program follows ([`gateway_proto::token::choose_token`]).
    pub fn from_sources(
        file: Option<&Path>,
        env: Option<&str>,
    ) -> Result<Option<Self>, ConfigError> {
        let text = file
            .map(|path| {
                std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFile {
                    path: path.to_owned(),
                    source,
                })
            })
            .transpose()?;
        let token = gateway_proto::token::choose_token(text.as_deref(), env).map_err(|reason| {
            ConfigError::BadToken {
                origin: file
                    .map_or_else(|| "the environment".to_owned(), |p| p.display().to_string()),
                reason,
            }
        })?;
        Ok(token.map(Self))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A configuration the control plane refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A token file could not be read.
    #[error("cannot read token file {}: {source}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A token that the token rule refuses (an empty file, unprintable characters).
    #[error("token from {origin}: {reason}")]
    BadToken {
        /// The file, or "the environment".
        origin: String,
        /// Why.
        reason: gateway_proto::token::TokenError,
    },
    /// A non-loopback address without both tokens.
    #[error(
        "refusing to listen on {addr} ({flag}) without authentication: set both the admin token \
         (--admin-token-file or GATEWAY_ADMIN_TOKEN) and the data-plane token \
         (--dataplane-token-file or GATEWAY_DATAPLANE_TOKEN), or listen on a loopback address"
    )]
    Unauthenticated {
        /// The address.
        addr: SocketAddr,
        /// The flag that set it.
        flag: &'static str,
    },
    /// `--etcd-endpoints` was given without any endpoint.
    #[error("--etcd-endpoints: no endpoint given")]
    NoEndpoints,
}

impl Config {
    /// A configuration with the defaults of the flags, on the embedded store in `dir`.
    pub fn embedded(dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 18000)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 18001)),
            store: StoreConfig::Embedded { dir: dir.into() },
            admin_token: None,
            dataplane_token: None,
            drain_timeout: Duration::from_secs(10),
            discovery: DiscoveryConfig::default(),
            secret_key_file: None,
            tls: None,
        }
    }

    /// Refuses what must not start: exposing an unauthenticated API beyond this machine.
    pub fn check(&self) -> Result<(), ConfigError> {
        let authenticated = self.admin_token.is_some() && self.dataplane_token.is_some();
        for (addr, flag) in [
            (self.listen, "--listen"),
            (self.admin_listen, "--admin-listen"),
        ] {
            if !addr.ip().is_loopback() && !authenticated {
                return Err(ConfigError::Unauthenticated { addr, flag });
            }
        }
        if let StoreConfig::Etcd { endpoints, .. } = &self.store
            && endpoints.iter().all(|e| e.trim().is_empty())
        {
            return Err(ConfigError::NoEndpoints);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_public_addresses_without_tokens() {
        let mut config = Config::embedded("/tmp/x");
        assert!(config.check().is_ok());
        config.listen = "0.0.0.0:18000".parse().expect("addr");
        assert!(matches!(
            config.check(),
            Err(ConfigError::Unauthenticated {
                flag: "--listen",
                ..
            })
        ));
        config.admin_token = Token::new("a");
        assert!(config.check().is_err(), "both tokens are needed");
        config.dataplane_token = Token::new("d");
        assert!(config.check().is_ok());
        config.listen = "127.0.0.1:18000".parse().expect("addr");
        config.admin_listen = "[::]:18001".parse().expect("addr");
        config.admin_token = None;
        assert!(matches!(
            config.check(),
            Err(ConfigError::Unauthenticated {
                flag: "--admin-listen",
                ..
            })
        ));
    }

    #[test]
    fn tokens_from_files_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cret\n").expect("write");
        let token = Token::from_sources(Some(&file), Some("ignored")).expect("read");
        assert_eq!(token, Token::new("s3cret"));
        assert_eq!(format!("{token:?}"), "Some(Token(<redacted>))");
        std::fs::write(&file, " \n").expect("write");
        assert!(Token::from_sources(Some(&file), None).is_err());
        assert!(Token::from_sources(Some(&dir.path().join("missing")), None).is_err());
        assert_eq!(
            Token::from_sources(None, Some(" t ")).expect("env"),
            Token::new("t")
        );
        assert_eq!(Token::from_sources(None, Some("")).expect("env"), None);
    }
}

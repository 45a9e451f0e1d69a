//! Wiring: open the store, bind both listeners, serve gRPC and admin HTTP, drain on shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc};

use gateway_proto::v1::admin_server::AdminServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{codec::CompressionEncoding, service::interceptor::InterceptedService};

use crate::{
    admin::AdminService,
    admin_http,
    auth::BearerAuth,
    config::{Config, StoreConfig},
    discovery::{DiscoveryServer, DiscoveryService},
    metrics::Metrics,
    reflector::Reflector,
    services::ServiceMirror,
    shutdown,
    store::{EmbeddedStore, EtcdStore, KeyFileError, SealedStore, Store, StoreError, load_keys},
};

/// The largest gRPC message accepted or sent: a large config must fit.
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Why the control plane could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The gRPC listener's TLS files cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// `--secret-key-file` cannot be used.
    #[error("--secret-key-file: {0}")]
    SecretKeys(#[from] KeyFileError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// A control plane with its listeners bound and its store open, not yet serving.
#[derive(Debug)]
pub struct Server {
    config: Config,
    store: Arc<dyn Store>,
    grpc: TcpListener,
    admin: TcpListener,
}

// === impl Server ===

impl Server {
    /// Opens the store (an unreachable etcd is not an error: it is retried while serving) and
    /// binds both listeners.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        let store: Arc<dyn Store> = match &config.store {
            StoreConfig::Etcd { endpoints, prefix } => {
                Arc::new(EtcdStore::connect(endpoints, prefix).await?)
            }
            StoreConfig::Embedded { dir } => Arc::new(EmbeddedStore::open(dir)?),
        };
        Self::bind_with_store(config, store).await
    }

    /// Binds both listeners over an already open store.
    pub async fn bind_with_store(
        config: Config,
        store: Arc<dyn Store>,
    ) -> Result<Self, ServerError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })
        };
        let store: Arc<dyn Store> = match &config.secret_key_file {
            Some(path) => Arc::new(SealedStore::new(store, load_keys(path)?)),
            None => {
                tracing::warn!(
                    "no --secret-key-file: certificates' private keys are stored in the clear"
                );
                store
            }
        };
        let grpc = bind(config.listen).await?;
        let admin = bind(config.admin_listen).await?;
        Ok(Self {
            config,
            store,
            grpc,
            admin,
        })
    }

    /// The bound gRPC address (the real port when `--listen` asked for port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.config.listen)
    }

    /// The bound admin HTTP address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.config.admin_listen)
    }

    /// Serves until `signal` resolves, then drains within the drain timeout.
    pub async fn run(self, signal: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let grpc_addr = self.grpc_addr();
        let Server {
            config,
            store,
            grpc,
            admin,
        } = self;
        let (trigger, shutdown) = shutdown::channel();
        let metrics = Arc::new(Metrics::default());
        let (reflector, reflector_task) =
            Reflector::spawn(store.clone(), metrics.clone(), shutdown.clone());
        let (services, services_task) =
            ServiceMirror::spawn(store.clone(), metrics.clone(), shutdown.clone());

        let mut discovery_config = config.discovery.clone();
        if discovery_config.control_plane.is_empty() {
            discovery_config.control_plane = grpc_addr.to_string();
        }
        let admin_service = AdminServer::new(
            AdminService::new(store.clone(), reflector.clone(), metrics.clone())
                .with_shutdown(shutdown.clone()),
        )
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let discovery_service = DiscoveryServer::new(DiscoveryService::new(
            store.clone(),
            reflector.clone(),
            services,
            metrics.clone(),
            discovery_config,
            shutdown.clone(),
        ))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let admin_auth = BearerAuth::new(config.admin_token.clone(), "admin", metrics.clone());
        let dataplane_auth =
            BearerAuth::new(config.dataplane_token.clone(), "discovery", metrics.clone());

        let mut grpc_shutdown = shutdown.clone();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &config.tls {
            builder = builder
                .tls_config(server_tls(tls)?)
                .map_err(|e| ServerError::Tls(e.to_string()))?;
        } else if !grpc_addr.ip().is_loopback() {
            tracing::warn!(
                %grpc_addr,
                "the gRPC listener is not on loopback and has no TLS: tokens and private keys \
                 cross the network in the clear (--tls-cert, --tls-key)"
            );
        }
        let grpc_server = builder
            .add_service(InterceptedService::new(admin_service, admin_auth))
            .add_service(InterceptedService::new(discovery_service, dataplane_auth))
            .serve_with_incoming_shutdown(accepted_without_delay(grpc), async move {
                grpc_shutdown.wait().await;
            });
        let mut grpc_task = tokio::spawn(grpc_server);
        let http_task = tokio::spawn(admin_http::serve(
            admin,
            reflector,
            metrics,
            shutdown.clone(),
        ));
        tracing::info!(grpc = %grpc_addr, "control plane serving");

        let mut result = Ok(());
        tokio::select! {
            () = signal => tracing::info!(drain_timeout = ?config.drain_timeout, "shutting down"),
            served = &mut grpc_task => {
                // The gRPC server stopped on its own: that is an error.
                result = match served {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(ServerError::Grpc(e)),
                    Err(e) => Err(ServerError::Store(StoreError::internal(format!("gRPC task failed: {e}")))),
                };
            }
        }
        trigger.trigger();
        let drained = tokio::time::timeout(config.drain_timeout, async {
            let _ = (&mut grpc_task).await;
            let _ = http_task.await;
            let _ = reflector_task.await;
            let _ = services_task.await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(drain_timeout = ?config.drain_timeout, "drain timed out; closing anyway");
            grpc_task.abort();
        }
        store.close().await;
        tracing::info!("control plane stopped");
        result
    }
}

/// The listener's connections with Nagle's algorithm off: a snapshot or an admin answer is a
/// small write after the response headers, and Nagle would hold it until the peer's delayed
/// ACK (~40 ms). (`serve_with_incoming` skips tonic's own `tcp_nodelay`.)
fn accepted_without_delay(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt as _;
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        // A socket that refuses the option still works, only slower.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    })
}

/// The gRPC listener's TLS configuration, from its PEM files.
fn server_tls(
    tls: &crate::config::ServerTls,
) -> Result<tonic::transport::ServerTlsConfig, ServerError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| ServerError::Tls(format!("{}: {e}", path.display())))
    };
    let identity = tonic::transport::Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
    let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}

//! Start-up and the life of one data plane: bind the listeners, load the first configuration
//! (the file, or the cached snapshot), then run the proxy, the admin endpoint and the
//! configuration source until a shutdown, and drain.

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::watch};

use crate::{
    admin,
    config::{Config, SourceConfig},
    server,
    standalone::{self, FileError, Watched},
    state::State,
    subscriber,
};

/// How long the configuration source gets to finish (the cache write) after the drain.
const SOURCE_STOP: Duration = Duration::from_secs(2);

/// Why the data plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot bind the {what} listener on {addr}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The standalone config file cannot be served.
    #[error(transparent)]
    File(#[from] FileError),
}

/// A data plane with its listeners bound and its first configuration (if any) loaded.
#[derive(Debug)]
pub struct Gateway {
    config: Config,
    state: Arc<State>,
    listeners: server::Listeners,
    admin: TcpListener,
    watched: Option<Watched>,
    /// The configuration served from the disk cache, which deltas from the control plane
    /// apply to.
    restored: Option<subscriber::Held>,
}

// === impl Gateway ===

impl Gateway {
    /// Loads the first configuration and binds both listeners.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let state = Arc::new(State::new(config.settings.clone()));
        let watched = match &config.source {
            SourceConfig::File(path) => {
                let watched = Watched::load(path, &state).inspect_err(standalone::log_problems)?;
                tracing::info!(file = %path.display(), version = state.version(), "serving the config file");
                Some(watched)
            }
            SourceConfig::ControlPlane(_) => None,
        };
        let restored = match &config.source {
            SourceConfig::ControlPlane(cp) => subscriber::restore_cache(&cp.cache_dir, &state),
            SourceConfig::File(_) => None,
        };
        let bind = |what: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { what, addr, source })
        };
        let http = bind("http", config.listen).await?;
        let tls = match config.tls_listen {
            Some(addr) => Some(bind("tls", addr).await?),
            None => None,
        };
        let admin = bind("admin", config.admin_listen).await?;
        Ok(Self {
            config,
            state,
            listeners: server::Listeners { http, tls },
            admin,
            watched,
            restored,
        })
    }

    /// The bound traffic address (the real port when `:0` was asked for).
    pub fn http_addr(&self) -> io::Result<SocketAddr> {
        self.listeners.http.local_addr()
    }

    /// The bound TLS address, if there is a TLS listener.
    pub fn tls_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.listeners.tls.as_ref().map(TcpListener::local_addr)
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting and drains in-flight requests
    /// for up to the drain timeout.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Self {
            config,
            state,
            listeners,
            admin,
            watched,
            restored,
        } = self;
        let (stop, stopped) = watch::channel(false);
        let address = listeners
            .http
            .local_addr()
            .map_or_else(|_| config.listen.to_string(), |a| a.to_string());

        let admin = tokio::spawn(admin::serve(admin, state.clone(), stopped.clone()));
        let link = &state.side().shared_limits().link;
        link.set_data_planes(config.cluster_size);
        // Ends with the runtime: nothing of it needs draining.
        if let Some(redis) = config.redis.clone() {
            tokio::spawn(crate::redis_sync::run(state.clone(), redis));
        }
        let source = match (config.source, watched) {
            (SourceConfig::File(_), Some(watched)) => {
                tokio::spawn(standalone::watch(watched, state.clone(), stopped.clone()))
            }
            (SourceConfig::ControlPlane(cp), _) => tokio::spawn(subscriber::run(
                cp,
                address,
                state.clone(),
                restored,
                stopped.clone(),
            )),
            (SourceConfig::File(_), None) => tokio::spawn(async {}),
        };
        let signal = tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested");
            let _ = stop.send(true);
        });

        server::serve(listeners, state, stopped, config.drain_timeout).await;
        signal.abort();
        // The subscriber writes the disk cache once more on its way out.
        let mut source = source;
        if tokio::time::timeout(SOURCE_STOP, &mut source)
            .await
            .is_err()
        {
            source.abort();
        }
        admin.abort();
        tracing::info!("stopped");
    }
}

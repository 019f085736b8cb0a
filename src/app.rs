//! [`Application`]: wires config into a running service (listener, store, connectors,
//! worker) so that `main` and the tests start it the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{Config, ConfigError, Problem};
use crate::connectors::Registry;
use crate::delivery::{RetryPolicy, Worker};
use crate::http::{self, AppState, SourceAuth, SourceTokens};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration, a definition or a template is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// A built, not yet running, chatbridge.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
    worker: Arc<Worker>,
    workers: usize,
    grace: Duration,
}

/// Makes ring the process's TLS crypto provider, unless one is already chosen. reqwest is
/// built without a default provider so that no C/CMake toolchain beyond `cc` is needed.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the shared HTTP client for connectors.
///
/// # Errors
/// When TLS cannot be initialised.
pub fn http_client(config: &Config) -> Result<reqwest::Client, StartupError> {
    install_tls_provider();
    reqwest::Client::builder()
        .user_agent(concat!("chatbridge/", env!("CARGO_PKG_VERSION")))
        .timeout(config.delivery.request_timeout)
        .connect_timeout(config.delivery.request_timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(|e| StartupError::Client(e.to_string()))
}

/// Loads connectors and templates for `config`.
///
/// # Errors
/// Every problem with definitions, templates or instances.
pub fn registry(config: &Config) -> Result<Registry, StartupError> {
    Registry::build(config, http_client(config)?)
        .map_err(|problems| StartupError::Config(problems.into()))
}

/// Opens the store named by `config`.
///
/// # Errors
/// When the store cannot be opened or migrated.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartupError> {
    let path = config.sqlite_path().ok_or_else(|| {
        StartupError::Config(
            vec![Problem {
                key: "store.url".into(),
                message: "use sqlite://PATH".into(),
            }]
            .into(),
        )
    })?;
    Ok(Arc::new(SqliteStore::open(
        &path,
        config.store.synchronous,
    )?))
}

impl Application {
    /// Opens the store, builds connectors, binds the listener (port 0 picks one).
    ///
    /// # Errors
    /// See [`StartupError`].
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let registry = Arc::new(registry(&config)?);
        let store = open_store(&config)?;
        // One process owns a SQLite store: any lease in it was left by a process that died.
        let released = store.release_leases().await?;
        if released > 0 {
            tracing::info!(
                released,
                "resuming deliveries left in flight by the previous run"
            );
        }
        let policy = RetryPolicy::from(&config.delivery);
        // A lease must outlast the longest attempt: a few steps, each up to the timeout.
        let lease_for = config.delivery.request_timeout * 8 + Duration::from_secs(60);
        let worker = Arc::new(Worker::new(
            store.clone(),
            registry.clone(),
            policy,
            config.delivery.workers,
            lease_for,
        ));
        let sources = SourceAuth {
            smartsupp: config.sources.smartsupp.as_ref().map(|s| {
                SourceTokens::new(std::iter::once(&s.token).chain(s.previous_token.as_ref()))
            }),
        };
        let address = config.server.listen.clone();
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| StartupError::Bind { address, source })?;
        let state = AppState {
            store,
            registry,
            sources,
            wake: worker.waker(),
            worker: (config.delivery.workers > 0).then(|| worker.clone()),
            max_body_bytes: config.server.max_body_bytes,
        };
        Ok(Self {
            listener,
            state,
            worker,
            workers: config.delivery.workers,
            grace: config.delivery.request_timeout,
        })
    }

    /// The bound address.
    ///
    /// # Panics
    /// Never in practice: a bound listener has an address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has a local address")
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The store, for tests and tools.
    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    /// The delivery worker, for tests that drive it step by step.
    pub fn worker(&self) -> Arc<Worker> {
        self.worker.clone()
    }

    /// Serves HTTP and runs the workers until Ctrl-C or SIGTERM.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves HTTP and runs the workers until `shutdown` completes. In-flight requests
    /// finish; in-flight deliveries get `request_timeout` to finish.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker = (self.workers > 0).then(|| {
            let mut stopped = stopped.clone();
            let grace = self.grace;
            tokio::spawn(self.worker.clone().run_until_stopped(
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
                grace,
            ))
        });
        if worker.is_none() {
            tracing::info!("delivery.workers = 0: this process only receives");
        }
        tracing::info!(address = %self.local_addr(), "listening");
        let mut stopped_http = stopped;
        let server = axum::serve(self.listener, http::router(self.state)).with_graceful_shutdown(
            async move {
                let _ = stopped_http.wait_for(|s| *s).await;
            },
        );
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        });
        server.await?;
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

//! [`Application`]: wires config into a running service (listener, store, connectors,
//! worker) so that `main` and the tests start it the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{Config, ConfigError, Problem, StoreLocation};
use crate::connectors::{LiveRegistry, Registry, Reloader, Shared};
use crate::delivery::{RetryPolicy, Worker};
use crate::fetch::{Fetcher, FetcherParts};
use crate::http::server::ConnectionLimits;
use crate::http::{self, AppState, SharedState};
use crate::maintenance::Retention;
use crate::privacy::Redactor;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Deliveries, Store, StoreError};

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
    connections: ConnectionLimits,
    state: AppState,
    worker: Arc<Worker>,
    fetcher: Arc<Fetcher>,
    workers: usize,
    grace: Duration,
    retention: Retention,
}

/// Builds the shared HTTP client for connectors.
///
/// # Errors
/// When TLS cannot be initialised.
pub fn http_client(config: &Config) -> Result<reqwest::Client, StartupError> {
    crate::tls::install_provider();
    reqwest::Client::builder()
        .user_agent(concat!("chatbridge/", env!("CARGO_PKG_VERSION")))
        .timeout(config.delivery.request_timeout)
        .connect_timeout(config.delivery.request_timeout.min(Duration::from_secs(10)))
        // A redirect is the target's answer, classified like any other status: following a
        // 301/302 would resend a POST as a GET without its body, and the GET's 200 would
        // count as delivered.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| StartupError::Client(e.to_string()))
}

/// Loads connectors and templates for `config`.
///
/// # Errors
/// Every problem with definitions, templates or instances.
pub fn registry(config: &Config) -> Result<Registry, StartupError> {
    Registry::build(config, &Shared::new(http_client(config)?))
        .map_err(|problems| StartupError::Config(problems.into()))
}

/// Opens the store named by `config`.
///
/// # Errors
/// When the store cannot be opened or migrated.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartupError> {
    match config.store_location() {
        Some(StoreLocation::Sqlite(path)) => Ok(Arc::new(SqliteStore::open(
            &path,
            config.store.synchronous,
        )?)),
        Some(StoreLocation::Postgres(url)) => Ok(Arc::new(
            PostgresStore::open(&url, config.store.max_connections).await?,
        )),
        None => Err(StartupError::Config(
            vec![Problem {
                key: "store.url".into(),
                message: "use sqlite://PATH or postgres://USER@HOST/DATABASE".into(),
            }]
            .into(),
        )),
    }
}

impl Application {
    /// Opens the store, builds connectors, binds the listener (port 0 picks one).
    ///
    /// # Errors
    /// See [`StartupError`].
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let shared = Shared::new(http_client(&config)?);
        let registry = Arc::new(LiveRegistry::new(
            Registry::build(&config, &shared).map_err(|p| StartupError::Config(p.into()))?,
        ));
        let store = open_store(&config).await?;
        // Leases no live process holds (in a SQLite store, any) are the previous run's.
        let released = store.release_leases().await?;
        if released > 0 {
            tracing::info!(
                released,
                "resuming deliveries left in flight by the previous run"
            );
        }
        warn_of_unconfigured(store.as_ref(), &registry.current().names()).await;
        let policy = RetryPolicy::from(&config.delivery);
        let lease_for = config.delivery.lease;
        let worker = Arc::new(Worker::new(
            store.clone(),
            registry.clone(),
            shared.metrics.clone(),
            policy,
            config.delivery.workers,
            lease_for,
        ));
        let sources = config.sources.instances();
        let redactor = Arc::new(Redactor::new(&config.privacy.redact));
        let fetcher = Arc::new(Fetcher::new(FetcherParts {
            store: store.clone(),
            sources: sources.clone(),
            http: shared.client.clone(),
            policy: RetryPolicy::from(&config.delivery),
            metrics: shared.metrics.clone(),
            registry: registry.clone(),
            redactor: redactor.clone(),
            deliveries: worker.waker(),
            // A fetch is a few calls, each within `request_timeout`.
            lease_for: config
                .delivery
                .lease
                .max(config.delivery.request_timeout * 4),
        }));
        let address = config.server.listen.clone();
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| StartupError::Bind { address, source })?;
        let admin = config.admin.token.as_ref().map(|t| {
            crate::http::auth::AdminAccess::new(
                t,
                config.admin.session_idle_timeout,
                config.admin.session_lifetime,
            )
        });
        if admin.is_none() {
            tracing::info!("admin.token is not set: the admin API and dashboard are off");
        }
        let workers = config.delivery.workers;
        let connections = ConnectionLimits {
            max_connections: config.server.max_connections,
            header_read_timeout: config.server.header_read_timeout,
            idle_timeout: config.server.idle_timeout,
        };
        let grace = config.delivery.request_timeout;
        let retention = Retention::new(store.clone(), registry.clone(), &config.retention);
        let state = AppState::new(SharedState {
            store,
            registry: registry.clone(),
            sources,
            wake: worker.waker(),
            fetch_wake: fetcher.waker(),
            fetcher: (workers > 0).then(|| fetcher.clone()),
            worker: (workers > 0).then(|| worker.clone()),
            max_body_bytes: config.server.max_body_bytes,
            body_read_timeout: config.server.body_read_timeout,
            metrics: shared.metrics.clone(),
            redactor,
            admin,
            reloader: Reloader::new(shared, registry, config),
        });
        Ok(Self {
            listener,
            connections,
            state,
            worker,
            fetcher,
            workers,
            grace,
            retention,
        })
    }

    /// The application's routes over its state, as [`Application::run_until`] serves them:
    /// for a caller that drives requests in process (`tower::ServiceExt::oneshot`) or serves
    /// them itself.
    pub fn router(&self) -> axum::Router {
        crate::http::router(self.state.clone())
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

    /// The connectors in use; replaced whole by a reload.
    pub fn registry(&self) -> Arc<LiveRegistry> {
        self.state.registry.clone()
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
        // Registered before `run_until` logs "listening": a signal sent from then on is
        // the service's to handle, never the default action (which ends the process).
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
        } else {
            let mut stopped = stopped.clone();
            tokio::spawn(self.fetcher.clone().run_until_stopped(async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
        }
        let mut stopped_retention = stopped.clone();
        tokio::spawn(self.retention.clone().run_until(async move {
            let _ = stopped_retention.wait_for(|s| *s).await;
        }));
        let reload = reload_on_hangup(self.state.reloader.clone());
        let mut stopped_reload = stopped.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = reload => {}
                _ = stopped_reload.wait_for(|s| *s) => {}
            }
        });
        tracing::info!(address = %self.local_addr(), "listening");
        let mut stopped_http = stopped;
        let server = http::server::serve(
            self.listener,
            http::router(self.state),
            self.connections,
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

/// Pending deliveries of a connector that is not configured wait until it is configured
/// again (a removed or renamed instance): says so, rather than leaving them unexplained.
async fn warn_of_unconfigured(store: &dyn Deliveries, configured: &[String]) {
    match store.connector_stats(crate::model::Timestamp::now()).await {
        Ok(stats) => {
            for s in stats
                .iter()
                .filter(|s| s.pending > 0 && !configured.contains(&s.connector))
            {
                tracing::warn!(
                    connector = %s.connector,
                    pending = s.pending,
                    "pending deliveries of a connector that is not configured wait until it is configured again"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the queue per connector"),
    }
}

/// Reloads connectors and templates on every SIGHUP. The handler is installed when this is
/// called, not when the returned future is first polled, so that a SIGHUP sent once the
/// service has logged "listening" reloads instead of ending the process.
fn reload_on_hangup(reloader: Reloader) -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        #[cfg(unix)]
        {
            let Ok(mut hangups) = hangups else {
                tracing::warn!("cannot listen for SIGHUP; reload through the admin API instead");
                return;
            };
            while hangups.recv().await.is_some() {
                // Refusals are logged by `reload`; the running set stays.
                let _ = reloader.reload().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = reloader;
            std::future::pending::<()>().await;
        }
    }
}

/// Completes on Ctrl-C or SIGTERM. Like [`reload_on_hangup`], the handlers are installed
/// at the call.
fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let next = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = next(interrupt) => {}
                () = next(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

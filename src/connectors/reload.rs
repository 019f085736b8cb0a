//! Connectors and templates rebuilt from the config file while the service runs (SIGHUP,
//! `POST /api/reload`), and rebuilt with unsaved template edits for previews.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;

use super::{LiveRegistry, Registry, Shared};
use crate::config::{Config, ConfigError, Problem};

/// Re-reads the config file and rebuilds connectors and templates (SIGHUP, `POST
/// /api/reload`). Everything is validated first: a broken edit is refused with its problems
/// and the running set stays. Settings outside connectors and templates need a restart.
#[derive(Debug, Clone)]
pub struct Reloader {
    path: Option<PathBuf>,
    shared: Shared,
    live: Arc<LiveRegistry>,
    /// The config the running set was built from.
    config: Arc<RwLock<Arc<Config>>>,
}

impl Reloader {
    /// Over the running set `live`, built from `config` with `shared`.
    pub fn new(shared: Shared, live: Arc<LiveRegistry>, config: Config) -> Self {
        Self {
            path: config.path.clone(),
            shared,
            live,
            config: Arc::new(RwLock::new(Arc::new(config))),
        }
    }

    /// Loads and swaps in the new set; returns the connector instances now configured.
    ///
    /// # Errors
    /// Every problem with the edited files; nothing changed then.
    pub async fn reload(&self) -> Result<Vec<String>, ConfigError> {
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            let path = this.path.as_deref().ok_or_else(|| {
                ConfigError::from(vec![Problem {
                    key: "config".into(),
                    message: "this service was not started from a config file".into(),
                }])
            })?;
            let config = Config::load(path)?;
            let registry = Registry::build(&config, &this.shared).map_err(ConfigError::from)?;
            let names = registry.names();
            this.live.replace(registry);
            *this.config.write() = Arc::new(config);
            Ok(names)
        })
        .await
        .unwrap_or_else(|e| {
            Err(ConfigError::from(vec![Problem {
                key: "reload".into(),
                message: e.to_string(),
            }]))
        });
        match &result {
            Ok(names) => tracing::info!(connectors = ?names, "reloaded connectors and templates"),
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the running connectors and templates stay")
            }
        }
        result
    }

    /// The configuration the running set was built from (the latest accepted reload's).
    pub fn config(&self) -> Arc<Config> {
        self.config.read().clone()
    }

    /// The running set rebuilt for a preview: `templates` (name → text) over the template
    /// files, for edits that are not saved, and every secret setting a placeholder
    /// ([`Registry::build_preview`]). Nothing running changes.
    ///
    /// # Errors
    /// When an edited template does not parse.
    pub async fn with_templates(
        &self,
        templates: BTreeMap<String, String>,
    ) -> Result<Arc<Registry>, ConfigError> {
        let config = self.config.read().clone();
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            Registry::build_preview(&config, &shared, &templates)
                .map(Arc::new)
                .map_err(ConfigError::from)
        })
        .await
        .unwrap_or_else(|e| {
            Err(ConfigError::from(vec![Problem {
                key: "templates".into(),
                message: e.to_string(),
            }]))
        })
    }
}

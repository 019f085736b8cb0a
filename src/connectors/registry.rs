//! The registry: connector instances built from config, which conversations each takes, and
//! the live set the reloader swaps as a whole.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use super::definition::{Definitions, Engine, snippet};
use super::settings::Settings;
use super::throttle::{Buckets, TokenBucket};
use super::{Connector, email, file, http};
use crate::config::{CircuitConfig, Config, ConnectorConfig, Problem};
use crate::metrics::Metrics;
use crate::model::Conversation;
use crate::render::{Reads, RenderError, Renderer, conversation_context};

/// What every build of the registry shares, so that a reload keeps them: the HTTP client
/// (one connection pool), the metrics, and the rate-limit buckets (a reload must not hand a
/// throttled connector a fresh burst).
#[derive(Debug, Clone)]
pub struct Shared {
    /// The HTTP client.
    pub client: reqwest::Client,
    /// Where upstream latencies are counted.
    pub metrics: Arc<Metrics>,
    /// Rate-limit buckets by instance name.
    pub buckets: Arc<Buckets>,
}

impl Shared {
    /// A fresh set around `client`.
    pub fn new(client: reqwest::Client) -> Self {
        Self {
            client,
            metrics: Arc::new(Metrics::new()),
            buckets: Arc::new(Buckets::default()),
        }
    }
}

/// What building one connector instance needs besides its config.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Client, metrics and buckets.
    pub shared: Shared,
    /// The loaded templates.
    pub renderer: Arc<Renderer>,
    /// How long one exchange with a target may take (`delivery.request_timeout`).
    pub timeout: Duration,
    /// This instance's rate limit: every request to the target takes a token first.
    pub throttle: Option<Arc<TokenBucket>>,
    /// Secret settings replaced by placeholders ([`placeholder`]): for previews, whose
    /// templates anyone with the admin token may edit, so that no transformation of a
    /// secret (`| upper`, `| reverse`) can show it.
    pub placeholders: bool,
}

impl BuildContext {
    /// Waits for this instance's rate limit, if it has one.
    pub async fn throttle(&self) {
        if let Some(bucket) = &self.throttle {
            bucket.acquire().await;
        }
    }
}

/// How far one instance may go at once: its concurrency, rate limit and circuit breaker.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Attempts at the same time.
    pub concurrency: Option<usize>,
    /// The rate-limit bucket.
    pub bucket: Option<Arc<TokenBucket>>,
    /// When to stop calling a failing target.
    pub circuit: CircuitConfig,
}

/// A configured connector, its filter and its limits.
#[derive(Debug, Clone)]
pub(super) struct Instance {
    connector: Arc<dyn Connector>,
    /// Its `when`: the type's and the instance's, joined with `and`.
    when: Option<String>,
    /// Only chats of these accounts (empty: every account).
    accounts: Vec<String>,
    limits: Limits,
}

/// Why an instance does not receive a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// The instance serves other accounts.
    OtherAccount(String),
    /// Its `when` (this text) does not hold.
    When(String),
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OtherAccount(account) => write!(f, "it serves other accounts than {account}"),
            Self::When(when) => write!(f, "its `when`: {when}"),
        }
    }
}

impl Instance {
    /// Why this instance would not receive the conversation, if it would not; `context` is
    /// built on first need and kept for the next instance.
    fn excludes(
        &self,
        renderer: &Renderer,
        conversation: &Conversation,
        raw: &serde_json::Value,
        context: &mut Option<tera::Context>,
    ) -> Result<Option<Exclusion>, RenderError> {
        if !self.accounts.is_empty() && !self.accounts.contains(&conversation.account_id) {
            return Ok(Some(Exclusion::OtherAccount(
                conversation.account_id.clone(),
            )));
        }
        let Some(when) = &self.when else {
            return Ok(None);
        };
        let context = match context {
            Some(c) => c,
            None => context.insert(conversation_context(conversation, raw)?),
        };
        let name = self.connector.name();
        if renderer.condition(&snippet::instance_when(name), context)? {
            Ok(None)
        } else {
            Ok(Some(Exclusion::When(when.clone())))
        }
    }
}

/// The registry in use, replaced whole by a reload; a delivery keeps the registry it started
/// with until it ends.
#[derive(Debug)]
pub struct LiveRegistry {
    current: RwLock<Arc<Registry>>,
}

impl LiveRegistry {
    /// Starts with `registry`.
    pub fn new(registry: Registry) -> Self {
        Self {
            current: RwLock::new(Arc::new(registry)),
        }
    }

    /// The registry now.
    pub fn current(&self) -> Arc<Registry> {
        self.current.read().clone()
    }

    /// Puts `registry` in use for everything that starts from now on.
    pub fn replace(&self, registry: Registry) {
        *self.current.write() = Arc::new(registry);
    }
}

/// Every configured connector instance, with the definitions and templates behind them.
#[derive(Debug)]
pub struct Registry {
    instances: Vec<Instance>,
    definitions: Definitions,
    renderer: Arc<Renderer>,
    /// Whether any instance's `when` reads `raw`; ingest parses the document only then.
    filters_read_raw: bool,
}

impl Registry {
    /// Loads definitions and templates and builds every instance of `config`.
    ///
    /// Checks everything that can be checked without I/O: the type exists, required settings
    /// are present and unknown ones are not, every template parses and exists.
    ///
    /// # Errors
    /// Every problem found, by key.
    pub fn build(config: &Config, shared: &Shared) -> Result<Self, Vec<Problem>> {
        Self::assemble(config, shared, &BTreeMap::new(), false)
    }

    /// As [`Registry::build`], for previews: with template texts (name → text) over the
    /// files, for unsaved edits, and every secret setting a placeholder, so that what a
    /// preview shows cannot reveal one, however an edited template transforms it.
    ///
    /// # Errors
    /// As [`Registry::build`].
    pub fn build_preview(
        config: &Config,
        shared: &Shared,
        templates: &BTreeMap<String, String>,
    ) -> Result<Self, Vec<Problem>> {
        Self::assemble(config, shared, templates, true)
    }

    fn assemble(
        config: &Config,
        shared: &Shared,
        templates: &BTreeMap<String, String>,
        placeholders: bool,
    ) -> Result<Self, Vec<Problem>> {
        let definitions = Definitions::load(config.connectors_dir.as_deref())?;
        // Only the types some instance uses are parsed (see `render`).
        let kinds: BTreeSet<&str> = config
            .connectors
            .values()
            .map(|i| i.kind.as_str())
            .collect();
        let in_use = || definitions.iter().filter(|(kind, _)| kinds.contains(kind));
        let mut snippets: Vec<(String, String)> =
            in_use().flat_map(|(kind, d)| d.snippets(kind)).collect();
        let templates_in_use: BTreeSet<&str> = in_use().flat_map(|(_, d)| d.templates()).collect();
        let mut filters = BTreeMap::new();
        let mut filters_read_raw = false;
        for (name, instance) in &config.connectors {
            // The type's own condition (a CRM needs an e-mail) and the instance's, both.
            let type_when = definitions
                .get(&instance.kind)
                .and_then(|d| d.when.as_deref());
            let conditions: Vec<String> = [type_when, instance.when.as_deref()]
                .into_iter()
                .flatten()
                .map(|c| format!("({c})"))
                .collect();
            if !conditions.is_empty() {
                let when = conditions.join(" and ");
                let source = crate::render::condition_source(&when);
                filters_read_raw |= Reads::read_by(&source).raw;
                snippets.push((snippet::instance_when(name), source));
                filters.insert(name.as_str(), when);
            }
        }
        let renderer = Renderer::build_with(
            config.templates_dir.as_deref(),
            templates,
            &snippets,
            &config.transcript,
            Some(&templates_in_use),
        )
        .map(Arc::new)
        .map_err(|e| {
            vec![Problem {
                key: "templates".into(),
                message: e.to_string(),
            }]
        })?;
        let cx = BuildContext {
            shared: shared.clone(),
            renderer: renderer.clone(),
            timeout: config.delivery.request_timeout,
            throttle: None,
            placeholders,
        };

        let mut problems = Vec::new();
        for (kind, definition) in definitions.iter() {
            for template in definition.templates() {
                if !renderer.has_template(template) {
                    problems.push(Problem {
                        key: format!("connectors/{kind}.toml"),
                        message: format!("template `{template}` does not exist"),
                    });
                }
            }
        }
        let mut instances = Vec::new();
        for (name, instance) in &config.connectors {
            let bucket = instance
                .rate_limit
                .map(|limit| shared.buckets.get(name, limit));
            let cx = BuildContext {
                throttle: bucket.clone(),
                ..cx.clone()
            };
            match build(name, instance, &definitions, &cx) {
                Ok(connector) => instances.push(Instance {
                    connector,
                    when: filters.get(name.as_str()).cloned(),
                    accounts: instance.accounts.clone(),
                    limits: Limits {
                        concurrency: instance.concurrency,
                        bucket,
                        circuit: instance.circuit,
                    },
                }),
                Err(mut found) => problems.append(&mut found),
            }
        }
        if problems.is_empty() {
            Ok(Self {
                instances,
                definitions,
                renderer,
                filters_read_raw,
            })
        } else {
            Err(problems)
        }
    }

    /// Names of the instances that should receive this conversation, in config order: those
    /// of its account (or of every account) whose `when` holds.
    ///
    /// # Errors
    /// When an instance's `when` expression fails to evaluate.
    pub fn matching(
        &self,
        conversation: &Conversation,
        raw: &serde_json::Value,
    ) -> Result<Vec<String>, RenderError> {
        let mut context = None;
        let mut names = Vec::new();
        for instance in &self.instances {
            if instance
                .excludes(&self.renderer, conversation, raw, &mut context)?
                .is_none()
            {
                names.push(instance.connector.name().to_owned());
            }
        }
        Ok(names)
    }

    /// Why instance `name` would not receive this conversation, as [`Registry::matching`]
    /// decides it: `None` when it would (or there is no such instance). `render` and `send`
    /// say so rather than send what `serve` never would.
    ///
    /// # Errors
    /// When the instance's `when` expression fails to evaluate.
    pub fn excluded(
        &self,
        name: &str,
        conversation: &Conversation,
        raw: &serde_json::Value,
    ) -> Result<Option<Exclusion>, RenderError> {
        match self.instances.iter().find(|i| i.connector.name() == name) {
            Some(instance) => instance.excludes(&self.renderer, conversation, raw, &mut None),
            None => Ok(None),
        }
    }

    /// Whether a `when` filter reads `raw`, so [`Registry::matching`] needs the document.
    pub fn filters_read_raw(&self) -> bool {
        self.filters_read_raw
    }

    /// The instance of that name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Connector>> {
        self.instances
            .iter()
            .map(|i| &i.connector)
            .find(|c| c.name() == name)
    }

    /// Puts `connector` in place of the configured instance of the same name, which keeps
    /// its filter, accounts and limits; returns the one replaced. How a program that embeds
    /// chatbridge runs a connector written in Rust under a name its config declares.
    pub fn replace_connector(
        &mut self,
        connector: Arc<dyn Connector>,
    ) -> Option<Arc<dyn Connector>> {
        let instance = self
            .instances
            .iter_mut()
            .find(|i| i.connector.name() == connector.name())?;
        Some(std::mem::replace(&mut instance.connector, connector))
    }

    /// Every configured instance.
    pub fn connectors(&self) -> impl Iterator<Item = &Arc<dyn Connector>> {
        self.instances.iter().map(|i| &i.connector)
    }

    /// The folders instances write deliveries into ([`Connector::outbox`]).
    pub fn outboxes(&self) -> Vec<std::path::PathBuf> {
        self.connectors()
            .filter_map(|c| c.outbox().map(std::path::Path::to_path_buf))
            .collect()
    }

    /// Every instance's name, in config order.
    pub fn names(&self) -> Vec<String> {
        self.connectors().map(|c| c.name().to_owned()).collect()
    }

    /// Every instance's name and limits.
    pub fn limits(&self) -> impl Iterator<Item = (&str, &Limits)> {
        self.instances
            .iter()
            .map(|i| (i.connector.name(), &i.limits))
    }

    /// The templates, for rendering previews.
    pub fn renderer(&self) -> &Arc<Renderer> {
        &self.renderer
    }

    /// The loaded definitions (for listing types).
    pub fn definitions(&self) -> &Definitions {
        &self.definitions
    }
}

/// Builds one instance: finds its definition, resolves settings, and picks the engine.
///
/// # Errors
/// Every problem with this instance, by key.
pub fn build(
    name: &str,
    instance: &ConnectorConfig,
    definitions: &Definitions,
    cx: &BuildContext,
) -> Result<Arc<dyn Connector>, Vec<Problem>> {
    let at = |key: &str| format!("connectors.{name}.{key}");
    let Some(definition) = definitions.get(&instance.kind) else {
        let known: Vec<&str> = definitions.iter().map(|(k, _)| k).collect();
        return Err(vec![Problem {
            key: at("type"),
            message: format!(
                "unknown connector type `{}`; known types: {}",
                instance.kind,
                known.join(", ")
            ),
        }]);
    };
    let mut problems = Vec::new();
    let mut settings = Settings::default();
    for (key, spec) in &definition.settings {
        match instance
            .settings
            .get(key)
            .map(|v| v.expose().to_owned())
            .or_else(|| spec.default.clone())
        {
            Some(value) if spec.secret && cx.placeholders && !value.is_empty() => {
                settings.insert(key, placeholder(key, &value), true);
            }
            Some(value) => settings.insert(key, value, spec.secret),
            None if spec.required => problems.push(Problem {
                key: at(&format!("settings.{key}")),
                message: format!("required by type `{}`: {}", instance.kind, spec.description),
            }),
            // Present but empty, so templates can test optional settings without failing.
            None => settings.insert(key, String::new(), spec.secret),
        }
    }
    // Every HTTP connector accepts `base_url`, to point it at a proxy or a local test server.
    let accepts_base_url = definition.engine == Engine::Http;
    for (key, value) in &instance.settings {
        if definition.settings.contains_key(key) {
            continue;
        }
        if accepts_base_url && key == "base_url" {
            settings.insert(key, value.expose().to_owned(), false);
        } else {
            let known: Vec<&str> = definition.settings.keys().map(String::as_str).collect();
            problems.push(Problem {
                key: at(&format!("settings.{key}")),
                message: format!(
                    "not a setting of type `{}`; its settings: {}",
                    instance.kind,
                    known.join(", ")
                ),
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let connector: Result<Arc<dyn Connector>, Problem> = match definition.engine {
        Engine::Http => http::HttpConnector::build(name, &instance.kind, definition, settings, cx)
            .map(|c| Arc::new(c) as Arc<dyn Connector>),
        Engine::File => file::FileConnector::build(name, &instance.kind, definition, settings, cx)
            .map(|c| Arc::new(c) as Arc<dyn Connector>),
        Engine::Email => {
            email::EmailConnector::build(name, &instance.kind, definition, settings, cx)
                .map(|c| Arc::new(c) as Arc<dyn Connector>)
        }
    };
    connector.map_err(|p| vec![p])
}

/// What a preview sees of secret setting `key`: its name, never its value. A secret that is
/// a URL (a Slack webhook) keeps its scheme and host, so the requests still build.
pub fn placeholder(key: &str, value: &str) -> String {
    match reqwest::Url::parse(value) {
        Ok(url) if url.has_host() => format!(
            "{}://{}/secret-{key}",
            url.scheme(),
            url.host_str().unwrap_or_default()
        ),
        _ => format!("secret-{key}"),
    }
}

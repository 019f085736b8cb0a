//! Where conversations go: the [`Connector`] trait, its errors, and the [`Registry`] that
//! builds connector instances from config.
//!
//! Most connectors are data, not code: a definition in `connectors/TYPE.toml`
//! ([`definition`]) run by one engine ([`http`]). The engine owns everything vendor-independent
//! (auth schemes, the one response classifier, JSON-pointer outputs, step checkpoints), so
//! every HTTP connector retries, dedupes and reports the same way. What HTTP steps cannot
//! express is a Rust type implementing the same trait ([`file`]).
//!
//! A connector makes exactly one attempt per call and never sleeps or retries: the worker
//! (`delivery::worker`) owns the retry policy, so it behaves the same for every target.
//!
//! Adding a connector type:
//! 1. `connectors/TYPE.toml`: description, settings (mark secrets), auth, steps.
//! 2. `templates/TYPE/*.json.tera`: the bodies, using `conversation`, `delivery`, `steps`.
//! 3. A test in `tests/api/` against a local server that answers like the vendor.

pub mod definition;
pub mod email;
pub mod file;
pub mod http;
mod reload;
pub mod throttle;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::RwLock;

use crate::config::{CircuitConfig, Config, ConnectorConfig, Problem};
use crate::metrics::Metrics;
use crate::model::Conversation;
use crate::render::{
    ConnectorInfo, DeliveryInfo, Reads, RenderContext, RenderError, Renderer, conversation_context,
};
use definition::{Definitions, Engine, snippet};
use throttle::{Buckets, TokenBucket};

use crate::model::StepOutputs;
pub use reload::Reloader;

/// What one delivery attempt works on.
#[derive(Debug)]
pub struct DeliveryJob<'a> {
    /// The conversation as normalized.
    pub conversation: &'a Conversation,
    /// The original request body.
    pub raw: &'a serde_json::Value,
    /// Key, version and attempt number.
    pub delivery: DeliveryInfo,
    /// Steps that succeeded in earlier attempts, with their outputs: they are not run again.
    pub completed: &'a BTreeMap<String, StepOutputs>,
    /// What this connector made at the target for this conversation before (`ledger.NAME`).
    pub ledger: &'a StepOutputs,
}

impl<'a> DeliveryJob<'a> {
    /// A first delivery of this conversation through `connector`: nothing completed, nothing
    /// made at the target before. What `render`, `check` and previews show.
    pub fn first(
        connector: &str,
        conversation: &'a Conversation,
        raw: &'a serde_json::Value,
    ) -> Self {
        static NOTHING_COMPLETED: BTreeMap<String, StepOutputs> = BTreeMap::new();
        static NOTHING_MADE: StepOutputs = BTreeMap::new();
        DeliveryJob {
            conversation,
            raw,
            delivery: DeliveryInfo {
                id: 0,
                key: crate::model::delivery_key(connector, conversation.id.as_str()),
                version: 1,
                attempt: 1,
            },
            completed: &NOTHING_COMPLETED,
            ledger: &NOTHING_MADE,
        }
    }

    /// The Tera context for rendering this job through connector instance `name` of type
    /// `kind`, with the partials its templates read (`reads`).
    ///
    /// # Errors
    /// When a partial fails to render.
    pub fn render_context(
        &self,
        renderer: &Renderer,
        name: &str,
        kind: &str,
        settings: &Settings,
        base_url: &str,
        reads: Reads,
    ) -> Result<tera::Context, RenderError> {
        let mut context = renderer.context(
            &RenderContext {
                conversation: self.conversation,
                raw: self.raw,
                delivery: &self.delivery,
                connector: ConnectorInfo { name, kind },
                settings: settings.values(),
                base_url,
            },
            reads,
        )?;
        context.insert("ledger", self.ledger);
        Ok(context)
    }
}

/// Records a step's success before the next step runs, so a retry resumes after it. The
/// last step has nothing after it: its success is kept with the attempt's outcome.
#[async_trait]
pub trait Checkpoint: Send + Sync {
    /// Called once per successful step that another step follows, with the outputs to keep
    /// in the ledger.
    ///
    /// # Errors
    /// When the checkpoint cannot be stored; the attempt then stops and is retried.
    async fn step_completed(
        &self,
        step: &str,
        outputs: &StepOutputs,
        remember: &StepOutputs,
    ) -> Result<(), DeliveryError>;
}

/// A checkpoint that keeps nothing, for one-off sends and tests.
#[derive(Debug, Default)]
pub struct NoCheckpoint;

#[async_trait]
impl Checkpoint for NoCheckpoint {
    async fn step_completed(
        &self,
        _: &str,
        _: &StepOutputs,
        _: &StepOutputs,
    ) -> Result<(), DeliveryError> {
        Ok(())
    }
}

/// What happened to one step of a successful attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The step's name.
    pub step: String,
    /// What became of it.
    pub outcome: StepOutcome,
    /// Its outputs (for run and earlier-completed steps).
    pub outputs: StepOutputs,
}

/// How a step ended in a successful attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Sent, and the target answered with this status.
    Sent(u16),
    /// Written locally (the file connector).
    Written,
    /// Done in an earlier attempt; not sent again.
    AlreadyDone,
    /// Its `when` did not hold.
    Skipped,
}

/// The result of a successful delivery: each step's report, and the ledger afterwards.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Receipt {
    /// In the definition's order.
    pub steps: Vec<StepReport>,
    /// The ids of what the connector made for this conversation, to keep for later versions.
    pub ledger: StepOutputs,
}

impl Receipt {
    /// The last step sent in this attempt and the target's status for it: what the attempt
    /// log shows for a success.
    pub fn last_sent(&self) -> Option<(&str, u16)> {
        self.steps.iter().rev().find_map(|s| match s.outcome {
            StepOutcome::Sent(status) => Some((s.step.as_str(), status)),
            _ => None,
        })
    }

    /// All outputs of all steps, `step.output` → value, for the store's record of remote ids.
    pub fn remote_ids(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .steps
            .iter()
            .flat_map(|s| {
                s.outputs
                    .iter()
                    .map(move |(k, v)| (format!("{}.{k}", s.step), v.clone()))
            })
            .filter(|(_, v)| !v.is_null())
            .collect();
        serde_json::Value::Object(map)
    }
}

/// One request a connector would send, for the dry run; secrets already masked.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRequest {
    /// The step's name.
    pub step: String,
    /// HTTP method (or `WRITE` for the file connector).
    pub method: String,
    /// Full URL (or file path).
    pub target: String,
    /// Headers, sensitive ones masked.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<String>,
    /// The step's templates read answers of earlier steps, which a dry run does not have.
    pub depends_on_earlier: bool,
}

/// How the worker should treat a failed attempt. The engine classifies each answer once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying with backoff: connection errors, timeouts, 408, 425, 5xx.
    Transient,
    /// The target asked us to slow down (429): retry after its wait, without using up the
    /// attempt budget.
    RateLimited,
    /// Credentials or endpoint rejected (401/403): the connector is paused and its
    /// deliveries wait; it is not the conversation's fault.
    Unhealthy,
    /// The target refused this conversation (other 4xx), or it cannot be rendered: dead.
    Invalid,
}

/// A failed delivery attempt.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// A template failed or produced invalid JSON.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The definition or settings produce something unusable (a bad URL or header).
    #[error("step `{step}`: {message}")]
    Invalid {
        /// The step.
        step: String,
        /// What is wrong.
        message: String,
    },
    /// No answer: connection refused or reset, DNS, timeout.
    #[error("step `{step}`: {message}")]
    Transport {
        /// The step.
        step: String,
        /// What failed (never the URL, which may hold a secret).
        message: String,
    },
    /// The target answered with a failure status.
    #[error("step `{step}`: HTTP {status}: {excerpt}")]
    Status {
        /// The step.
        step: String,
        /// The status code.
        status: u16,
        /// How the engine classified it.
        class: Failure,
        /// The target's requested wait, already parsed and capped.
        retry_after: Option<Duration>,
        /// The start of the answer's body, for the attempt log.
        excerpt: String,
    },
    /// Local I/O failed (the file connector, or recording a checkpoint).
    #[error("{message}")]
    Io {
        /// What failed, and the system's reason.
        message: String,
        /// Classified by the error's kind (see [`DeliveryError::io`]).
        class: Failure,
    },
    /// The connector panicked. Caught at the edge of the attempt, so the slot, the rate-limit
    /// token and the circuit's count it held are given back, and recorded as permanent: the
    /// same conversation through the same code panics again.
    #[error(
        "the connector failed unexpectedly ({0}); this conversation cannot go through it as it is"
    )]
    Panicked(String),
}

impl DeliveryError {
    /// How the worker should treat it.
    pub fn class(&self) -> Failure {
        match self {
            Self::Render(_) | Self::Invalid { .. } | Self::Panicked(_) => Failure::Invalid,
            Self::Transport { .. } => Failure::Transient,
            Self::Status { class, .. } | Self::Io { class, .. } => *class,
        }
    }

    /// A local I/O failure, `what` saying what was being done, classified by its kind: a
    /// name the file system cannot take will not take it on a retry (invalid); a folder that
    /// cannot be written to, or a full disk, is the configuration's or the machine's fault,
    /// not the conversation's (the connector pauses, as for rejected credentials); anything
    /// else may pass on a retry.
    pub fn io(what: &str, error: &std::io::Error) -> Self {
        use std::io::ErrorKind as Kind;
        let class = match error.kind() {
            Kind::InvalidInput | Kind::InvalidFilename | Kind::InvalidData => Failure::Invalid,
            Kind::PermissionDenied
            | Kind::ReadOnlyFilesystem
            | Kind::StorageFull
            | Kind::QuotaExceeded
            | Kind::NotADirectory
            | Kind::IsADirectory => Failure::Unhealthy,
            _ => Failure::Transient,
        };
        Self::Io {
            message: format!("{what}: {error}"),
            class,
        }
    }

    /// The wait the target asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, if the target answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error without the target's answer, for logs: an answer may echo the visitor's
    /// data (an e-mail address in "contact already exists"), and logs cannot be erased by
    /// `forget`. The full text, excerpt included, is in the attempt log in the store.
    pub fn summary(&self) -> String {
        match self {
            Self::Status { step, status, .. } => {
                format!("step `{step}`: HTTP {status} (answer in the attempt log)")
            }
            // A panic's message can quote the value it choked on.
            Self::Panicked(_) => {
                "the connector failed unexpectedly (details in the attempt log)".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// The step that failed, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            Self::Invalid { step, .. }
            | Self::Transport { step, .. }
            | Self::Status { step, .. } => Some(step),
            _ => None,
        }
    }
}

/// A destination for normalized conversations: a help desk, a CRM, a file.
///
/// One required async method keeps it easy to implement and to fake; instances come from
/// config at run time, so they live as `Arc<dyn Connector>`.
#[async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Instance name from config; used in spans, the store and metrics.
    fn name(&self) -> &str;

    /// Connector type (definition name); the `type` log field.
    fn kind(&self) -> &str;

    /// What its templates read; the worker parses the stored request body only for one
    /// that reads `raw`.
    fn reads(&self) -> Reads {
        Reads::ALL
    }

    /// The folder it writes deliveries into on this machine, if it does: erasure and
    /// retention clean it as they clean the store.
    fn outbox(&self) -> Option<&std::path::Path> {
        None
    }

    /// Makes exactly one delivery attempt. Never sleeps or retries. Safe to repeat for the
    /// same delivery: completed steps are skipped, and definitions dedupe at the target.
    ///
    /// # Errors
    /// A classified [`DeliveryError`].
    async fn deliver(
        &self,
        job: &DeliveryJob<'_>,
        checkpoint: &dyn Checkpoint,
    ) -> Result<Receipt, DeliveryError>;

    /// What [`Connector::deliver`] would send, without sending; secrets masked.
    ///
    /// # Errors
    /// When rendering fails.
    fn plan(&self, job: &DeliveryJob<'_>) -> Result<Vec<PlannedRequest>, DeliveryError>;
}

impl dyn Connector {
    /// [`Connector::deliver`], with a panic inside it caught and returned as
    /// [`DeliveryError::Panicked`]: whatever a connector does with a hostile chat, its
    /// attempt ends, is recorded, and gives back what it held. Every caller that runs a
    /// connector goes through here.
    ///
    /// # Errors
    /// As [`Connector::deliver`].
    pub async fn attempt(
        &self,
        job: &DeliveryJob<'_>,
        checkpoint: &dyn Checkpoint,
    ) -> Result<Receipt, DeliveryError> {
        use futures_util::FutureExt as _;
        std::panic::AssertUnwindSafe(self.deliver(job, checkpoint))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(panicked(panic.as_ref())))
    }

    /// [`Connector::plan`], with a panic caught as in [`attempt`](Self::attempt): `render`,
    /// `check` and previews answer with an error instead of crashing.
    ///
    /// # Errors
    /// As [`Connector::plan`].
    pub fn dry_run(&self, job: &DeliveryJob<'_>) -> Result<Vec<PlannedRequest>, DeliveryError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.plan(job)))
            .unwrap_or_else(|panic| Err(panicked(panic.as_ref())))
    }
}

/// The message a panic carries, when it is text.
fn panicked(payload: &(dyn std::any::Any + Send)) -> DeliveryError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    DeliveryError::Panicked(message)
}

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
struct Instance {
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

/// A connector's resolved settings. Knows which are secret, so it can mask them anywhere
/// they might be printed; `Debug` shows only the keys.
#[derive(Clone, Default)]
pub struct Settings {
    values: BTreeMap<String, String>,
    secrets: Vec<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Settings {
    /// Adds a value. A secret is masked as written and in the forms a URL built from it
    /// takes when printed (normalized, without its trailing `/`: a Slack webhook URL ending in
    /// `/` is printed without it). A password written into any URL (`https://u:pw@host`) is
    /// masked too, the setting being secret or not.
    pub fn insert(&mut self, key: &str, value: String, secret: bool) {
        let url = reqwest::Url::parse(&value).ok().filter(|u| u.has_host());
        if secret && !value.is_empty() {
            let mut forms = vec![value.clone()];
            if let Some(url) = &url {
                forms.push(url.as_str().to_owned());
            }
            let trimmed: Vec<String> = forms
                .iter()
                .map(|f| f.trim_end_matches('/').to_owned())
                .collect();
            forms.extend(trimmed);
            self.add_secrets(forms);
        }
        if let Some(password) = url.as_ref().and_then(reqwest::Url::password) {
            let decoded = percent_encoding::percent_decode_str(password)
                .decode_utf8_lossy()
                .into_owned();
            self.add_secrets([password.to_owned(), decoded]);
        }
        self.values.insert(key.to_owned(), value);
    }

    /// Adds texts to mask, longest first, so that a longer form is masked whole before a
    /// shorter one inside it could leave its tail readable.
    fn add_secrets(&mut self, texts: impl IntoIterator<Item = String>) {
        for text in texts {
            if !text.is_empty() && !self.secrets.contains(&text) {
                self.secrets.push(text);
            }
        }
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// A value by key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// All values, secrets included, for template contexts.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// `text` with every secret value replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |acc, secret| {
            acc.replace(secret.as_str(), "***")
        })
    }
}

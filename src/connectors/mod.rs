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
mod error;
pub mod file;
pub mod http;
mod registry;
mod reload;
mod settings;
pub mod throttle;

pub use error::{DeliveryError, Failure};
pub use registry::{
    BuildContext, Exclusion, Limits, LiveRegistry, Registry, Shared, build, placeholder,
};
pub use reload::Reloader;
pub use settings::Settings;

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::model::{Conversation, StepOutputs};
use crate::render::{ConnectorInfo, DeliveryInfo, Reads, RenderContext, RenderError, Renderer};

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

//! The delivery queue as the workers see it: leases, steps, attempts and what comes next.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::model::{StepOutputs, Timestamp};

/// The workers' side of the store: what is due, and what became of an attempt.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Leases up to `limit` due deliveries for `lease_for`, oldest first, of the connectors
    /// in `caps` only, at most `caps[name]` of each (0 skips it: circuit open, rate limit
    /// spent). Only the oldest pending delivery of each (conversation, connector) pair is due.
    ///
    /// Naming the connectors lets each be read from its own index range and stop at what it
    /// takes, so the cost of a lease does not grow with the queue, nor with the backlog of a
    /// connector whose circuit is open. Deliveries of a connector no longer configured wait,
    /// and go out once it is configured again.
    ///
    /// # Errors
    /// When the database fails.
    async fn lease_due(
        &self,
        now: Timestamp,
        limit: usize,
        lease_for: Duration,
        caps: &BTreeMap<String, usize>,
    ) -> Result<Vec<LeasedDelivery>, StoreError>;

    /// Gives these leased deliveries back unattempted (a shutdown cut their attempt short),
    /// so the next process starts them at once instead of after the lease.
    ///
    /// # Errors
    /// When the database fails.
    async fn release(&self, ids: &[i64]) -> Result<u64, StoreError>;

    /// When the next pending delivery of one of `connectors` becomes due, or a lease held
    /// on one runs out, if any. As cheap as a lease: an index range per connector.
    ///
    /// # Errors
    /// When the database fails.
    async fn next_due(&self, connectors: &[String]) -> Result<Option<Timestamp>, StoreError>;

    /// Records a completed step of a delivery, and the ledger entries it yielded, together.
    ///
    /// # Errors
    /// When the database fails.
    async fn complete_step(
        &self,
        delivery_id: i64,
        step: &str,
        outputs: &StepOutputs,
        remember: &StepOutputs,
    ) -> Result<(), StoreError>;

    /// Records an attempt and moves the delivery on; releases its lease.
    ///
    /// # Errors
    /// When the database fails.
    async fn finish_attempt(
        &self,
        delivery_id: i64,
        record: AttemptRecord,
        next: NextState,
    ) -> Result<(), StoreError>;

    /// Extends the leases of `ids` (attempts still running here) to `until`; leases this
    /// process no longer holds are left alone.
    ///
    /// # Errors
    /// When the database fails.
    async fn renew(&self, ids: &[i64], until: Timestamp) -> Result<u64, StoreError>;

    /// Releases the leases no live process holds, at start: in a single-process store every
    /// lease (any was left by a process that died); in a shared store only expired ones,
    /// since the others belong to live replicas.
    ///
    /// # Errors
    /// When the database fails.
    async fn release_leases(&self) -> Result<u64, StoreError>;
}

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeliveryState {
    /// Waiting for its next attempt (or being attempted).
    Pending,
    /// Accepted by the target.
    Delivered,
    /// Given up; kept with its reason until retried.
    Dead,
}

impl DeliveryState {
    /// The name used in the store, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// Parses a state name.
    ///
    /// # Errors
    /// When the name is not one of `pending`, `delivered`, `dead`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "dead" => Ok(Self::Dead),
            other => Err(format!(
                "unknown state `{other}`; use pending, delivered or dead"
            )),
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery handed to a worker, with everything one attempt needs.
#[derive(Debug, Clone)]
pub struct LeasedDelivery {
    /// Store id.
    pub id: i64,
    /// The conversation.
    pub conversation_id: String,
    /// The version to deliver.
    pub version: i64,
    /// Connector instance name.
    pub connector: String,
    /// Idempotency key.
    pub key: String,
    /// Attempts made so far (all kinds).
    pub attempts: u32,
    /// Failures that count against `max_attempts`.
    pub failures: u32,
    /// When the first attempt started.
    pub first_attempt_at: Option<Timestamp>,
    /// When the delivery was queued (for the delivery latency).
    pub queued_at: Timestamp,
    /// The version's raw body.
    pub raw: Vec<u8>,
    /// The version's normalized conversation, as JSON.
    pub normalized: String,
    /// Steps completed by earlier attempts.
    pub completed: BTreeMap<String, StepOutputs>,
    /// What this connector made for this conversation before, by ledger name.
    pub ledger: StepOutputs,
}

/// How an attempt ended, for the attempt log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The target accepted it.
    Delivered,
    /// Failed; another attempt is scheduled.
    Retry,
    /// The connector is unhealthy; the delivery waits without using its budget.
    Waiting,
    /// Failed for good.
    Dead,
}

impl AttemptOutcome {
    /// The name used in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry => "retry",
            Self::Waiting => "waiting",
            Self::Dead => "dead",
        }
    }

    /// Read back from the store.
    ///
    /// # Errors
    /// When the stored name is none of them: a corrupt row.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        [Self::Delivered, Self::Retry, Self::Waiting, Self::Dead]
            .into_iter()
            .find(|o| o.as_str() == text)
            .ok_or_else(|| StoreError::Corrupt(format!("attempt outcome `{text}`").into()))
    }
}

/// One attempt, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// When it started.
    pub started_at: Timestamp,
    /// How long it took.
    pub duration: Duration,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The target's status, when it answered (for a success: to the last step sent).
    pub status: Option<u16>,
    /// The step that failed, or for a success the last step sent.
    pub step: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The start of the target's answer.
    pub excerpt: Option<String>,
}

impl AttemptRecord {
    /// Every e-mail address its error and excerpt mention: what an erasure finds them by.
    pub fn mentions(&self) -> Vec<String> {
        crate::privacy::addresses_in(
            [&self.error, &self.excerpt]
                .into_iter()
                .flatten()
                .map(String::as_bytes),
        )
    }
}

/// A delivery's columns after an attempt, as both stores write them.
#[derive(Debug, Clone, PartialEq)]
pub struct AfterAttempt<'a> {
    /// Where the delivery is now.
    pub state: DeliveryState,
    /// Unix ms of the next attempt (now when settled).
    pub next_attempt_at: i64,
    /// Added to the failures that count against `max_attempts`.
    pub failures: i32,
    /// The reason, unless delivered.
    pub error: Option<&'a str>,
    /// The remote ids as JSON, once delivered.
    pub remote: Option<String>,
}

impl NextState {
    /// The delivery's columns after this outcome, `now` in Unix ms.
    pub fn columns(&self, now: i64) -> AfterAttempt<'_> {
        match self {
            Self::Delivered { remote, .. } => AfterAttempt {
                state: DeliveryState::Delivered,
                next_attempt_at: now,
                failures: 0,
                error: None,
                remote: Some(remote.to_string()),
            },
            Self::RetryAt { at, counts, reason } => AfterAttempt {
                state: DeliveryState::Pending,
                next_attempt_at: at.unix_millis(),
                failures: i32::from(*counts),
                error: Some(reason),
                remote: None,
            },
            Self::Dead { reason } => AfterAttempt {
                state: DeliveryState::Dead,
                next_attempt_at: now,
                failures: 1,
                error: Some(reason),
                remote: None,
            },
        }
    }
}

/// What becomes of a delivery after an attempt.
#[derive(Debug, Clone)]
pub enum NextState {
    /// Done; the remote ids the steps picked out.
    Delivered {
        /// `step.output` → value.
        remote: serde_json::Value,
        /// The connector's ledger for this conversation afterwards.
        ledger: StepOutputs,
    },
    /// Try again at `at`; `counts` says whether this failure uses up the attempt budget
    /// (429s and unhealthy waits do not).
    RetryAt {
        /// When.
        at: Timestamp,
        /// Whether it counts against `max_attempts`.
        counts: bool,
        /// Why it failed.
        reason: String,
    },
    /// Given up.
    Dead {
        /// Why.
        reason: String,
    },
}

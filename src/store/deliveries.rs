//! Deliveries as operators see them: listings, attempts, retries, replays and counts.

use async_trait::async_trait;

use super::*;
use crate::model::Timestamp;

/// The operators' view of deliveries, and the actions they take on them.
#[async_trait]
pub trait Deliveries: Send + Sync {
    /// Lists deliveries, newest first.
    ///
    /// # Errors
    /// When the database fails.
    async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError>;

    /// A delivery's attempts, oldest first.
    ///
    /// # Errors
    /// When the database fails.
    async fn attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRow>, StoreError>;

    /// Puts these dead deliveries back in the queue with a fresh budget; returns how many.
    ///
    /// # Errors
    /// When the database fails.
    async fn retry(&self, ids: &[i64]) -> Result<u64, StoreError>;

    /// Queues the latest version of these conversations again, as a first delivery, for each
    /// connector in `connectors` that received them before. Forgets what the connector made
    /// (the ledger) so the definition's own dedupe decides: one that looks its object up
    /// finds it instead of creating another. Pairs with a pending delivery are skipped.
    ///
    /// # Errors
    /// When the database fails.
    async fn replay(
        &self,
        conversation_ids: &[String],
        connectors: &[String],
    ) -> Result<ReplayReport, StoreError>;

    /// Queue depth per connector, and what each delivered and lost since `since`.
    ///
    /// # Errors
    /// When the database fails.
    async fn connector_stats(&self, since: Timestamp) -> Result<Vec<ConnectorStats>, StoreError>;

    /// Conversation versions received since `since`.
    ///
    /// # Errors
    /// When the database fails.
    async fn received_since(&self, since: Timestamp) -> Result<u64, StoreError>;
}

/// A delivery as listed.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    /// Store id.
    pub id: i64,
    /// The conversation.
    pub conversation_id: String,
    /// Version delivered.
    pub version: i64,
    /// Connector instance.
    pub connector: String,
    /// Idempotency key.
    pub key: String,
    /// Current state.
    pub state: DeliveryState,
    /// Attempts so far.
    pub attempts: u32,
    /// Next attempt (pending only).
    pub next_attempt_at: Timestamp,
    /// Why the last attempt failed; none once delivered (the attempt log keeps every failure).
    pub last_error: Option<String>,
    /// Remote ids, once delivered.
    pub remote: Option<serde_json::Value>,
    /// When it was created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// One recorded attempt, as listed (also the admin API's form).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AttemptRow {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// When it started.
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    /// How long it took.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The target's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The step that failed, or for a success the last step sent.
    pub step: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The start of the answer.
    pub excerpt: Option<String>,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this state.
    pub state: Option<DeliveryState>,
    /// Only this connector instance.
    pub connector: Option<String>,
    /// Only this conversation.
    pub conversation_id: Option<String>,
    /// Only ids below this one (the next page of a newest-first listing).
    pub before: Option<i64>,
    /// At most this many, newest first (0: no limit).
    pub limit: usize,
}

/// Deliveries of one conversation, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Waiting or being attempted.
    pub pending: u64,
    /// Accepted by the target.
    pub delivered: u64,
    /// Given up.
    pub dead: u64,
}

/// Per connector: what its queue holds now and what it did since a given time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectorStats {
    /// Connector instance.
    pub connector: String,
    /// Pending deliveries (queue depth).
    pub pending: u64,
    /// Pending deliveries that failed at least once.
    pub retrying: u64,
    /// When the oldest pending delivery was queued.
    pub oldest_pending: Option<Timestamp>,
    /// Delivered since.
    pub delivered: u64,
    /// Died since.
    pub dead: u64,
    /// Dead now, whenever they died.
    pub dead_total: u64,
}

/// What [`Deliveries::replay`] queued.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// New deliveries, by id.
    pub queued: Vec<i64>,
    /// Pairs skipped because a delivery of them is still pending.
    pub already_pending: u64,
}

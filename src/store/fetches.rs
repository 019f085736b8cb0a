//! Fetch jobs: events whose conversation is read from the product's REST API after the
//! event was acknowledged (Smartsupp v2, Crisp, LiveChat's `chat_deactivated`, Tidio).
//!
//! A job is kept before the product is answered, leased like a delivery, and retried with
//! the same policy; when the conversation it fetched is stored as a version, the job is
//! removed (the version holds the event, in its `raw`). A job that cannot succeed stays,
//! dead, with its reason, until retried.

use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::model::Timestamp;

/// The fetch queue.
#[async_trait]
pub trait Fetches: Send + Sync {
    /// Keeps an event to fetch, once: the same event of the same source again (a product's
    /// re-delivery) is the job already kept.
    ///
    /// # Errors
    /// When the database fails; nothing is kept then.
    async fn enqueue_fetch(&self, fetch: NewFetch) -> Result<Enqueued, StoreError>;

    /// Leases up to `limit` due jobs of `sources` for `lease_for`, oldest first. A lease that
    /// ran out (its process died) is due again.
    ///
    /// # Errors
    /// When the database fails.
    async fn lease_fetches(
        &self,
        now: Timestamp,
        limit: usize,
        lease_for: Duration,
        sources: &[String],
    ) -> Result<Vec<LeasedFetch>, StoreError>;

    /// Records how a leased job's attempt ended, and releases its lease.
    ///
    /// # Errors
    /// When the database fails.
    async fn finish_fetch(
        &self,
        id: i64,
        now: Timestamp,
        next: FetchNext,
    ) -> Result<(), StoreError>;

    /// When the next job of `sources` is due, or a lease held on one runs out.
    ///
    /// # Errors
    /// When the database fails.
    async fn next_fetch_due(&self, sources: &[String]) -> Result<Option<Timestamp>, StoreError>;

    /// Jobs, newest first, of one state and source if given.
    ///
    /// # Errors
    /// When the database fails.
    async fn fetches(
        &self,
        state: Option<FetchState>,
        source: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FetchRow>, StoreError>;

    /// Puts dead jobs back in the queue, due now: those of `ids`, or every dead one when
    /// `ids` is empty. Returns how many.
    ///
    /// # Errors
    /// When the database fails.
    async fn retry_fetches(&self, ids: &[i64], now: Timestamp) -> Result<u64, StoreError>;

    /// Up to `limit` jobs with ids above `after`, oldest first, with their events: a page of
    /// erasure's walk.
    ///
    /// # Errors
    /// When the database fails.
    async fn fetch_bodies_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError>;

    /// Removes these jobs, whatever their state; returns how many.
    ///
    /// # Errors
    /// When the database fails.
    async fn drop_fetches(&self, ids: &[i64]) -> Result<u64, StoreError>;

    /// Removes jobs given up that arrived before `before` (retention); returns how many.
    ///
    /// # Errors
    /// When the database fails.
    async fn purge_dead_fetches(&self, before: Timestamp) -> Result<u64, StoreError>;

    /// Pending and dead jobs per source, for the metrics.
    ///
    /// # Errors
    /// When the database fails.
    async fn fetch_counts(&self) -> Result<Vec<FetchCount>, StoreError>;
}

/// An event to fetch, as ingest keeps it.
#[derive(Debug, Clone)]
pub struct NewFetch {
    /// The source instance (`[sources.NAME]`).
    pub source: String,
    /// The conversation it ends.
    pub conversation_id: String,
    /// The event's name.
    pub event: String,
    /// The event as kept (LiveChat's without its secret).
    pub body: Vec<u8>,
    /// Hex SHA-256 of `body`: a re-delivery is the same job.
    pub body_sha256: String,
    /// When it arrived.
    pub received_at: Timestamp,
}

/// What [`Fetches::enqueue_fetch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The job.
    pub id: i64,
    /// Whether it was already kept (a re-delivery).
    pub duplicate: bool,
}

/// A job leased for an attempt.
#[derive(Debug, Clone)]
pub struct LeasedFetch {
    /// The job.
    pub id: i64,
    /// The source instance.
    pub source: String,
    /// The conversation it ends.
    pub conversation_id: String,
    /// The event as kept.
    pub body: Vec<u8>,
    /// Attempts that counted so far.
    pub attempts: u32,
    /// When the event arrived: the budget of retries runs from here.
    pub received_at: Timestamp,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchNext {
    /// The conversation was fetched and stored: the job is done and removed.
    Done,
    /// Try again at `at`; `counts` when the attempt uses up the retry budget (a throttled
    /// or paused one does not).
    RetryAt {
        /// When.
        at: Timestamp,
        /// Whether it counts as an attempt.
        counts: bool,
        /// Why it failed.
        reason: String,
    },
    /// Given up; kept with the reason until retried.
    Dead {
        /// Why.
        reason: String,
    },
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FetchState {
    /// Waiting for an attempt, or being attempted.
    Pending,
    /// Given up, kept until retried.
    Dead,
}

impl FetchState {
    /// The name used in the store, the API and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Dead => "dead",
        }
    }

    /// The state of that name.
    ///
    /// # Errors
    /// When the name is not `pending` or `dead`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "pending" => Ok(Self::Pending),
            "dead" => Ok(Self::Dead),
            other => Err(format!(
                "unknown fetch state `{other}`; use pending or dead"
            )),
        }
    }
}

/// A job as operators see it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct FetchRow {
    /// The job.
    pub id: i64,
    /// The source instance.
    pub source: String,
    /// The conversation it ends.
    pub conversation_id: String,
    /// The event's name.
    pub event: String,
    /// Its state.
    pub state: FetchState,
    /// Attempts that counted.
    pub attempts: u32,
    /// When it is tried next (pending).
    #[schema(value_type = String, format = DateTime)]
    pub next_at: Timestamp,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the event arrived.
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Timestamp,
}

/// Jobs of one source in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchCount {
    /// The source instance.
    pub source: String,
    /// The state.
    pub state: FetchState,
    /// How many.
    pub count: u64,
}

/// The columns [`FetchRow`] is read from, in its order, for both backends.
pub(crate) const FETCH_COLUMNS: &str =
    "id, source, conversation_id, event, state, attempts, next_at, last_error, received_at";

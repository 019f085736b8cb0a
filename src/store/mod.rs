//! Where conversations and deliveries live: the [`Store`] trait and its implementations.
//!
//! The store is the only memory that matters. Ingest answers the chat product only after
//! [`Store::ingest`] has committed the raw body, the normalized conversation and one delivery
//! per matching connector; the workers work only from leased rows. A crash at any moment
//! therefore loses nothing: a restart finds every pending delivery where it was.
//!
//! Deliveries of one (conversation, connector) pair run one at a time, oldest first; a new
//! version that arrives while an older one still waits, unleased, replaces it in place
//! instead of queueing a second delivery of the same ticket.
//!
//! [`sqlite::SqliteStore`] is the default (one process); [`postgres::PostgresStore`] serves
//! several replicas sharing one queue. Both pass the same test suite.

pub mod postgres;
mod postgres_tls;
pub mod sqlite;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::model::{Conversation, StepOutputs, Timestamp};

/// A storage failure. Ingest answers 503 for these, so the source can send again.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(String),
    /// The batch this work was part of could not be committed.
    #[error("commit failed: {0}")]
    Commit(String),
    /// A stored value could not be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The store is shutting down.
    #[error("store is closed")]
    Closed,
    /// The store could not be opened or migrated.
    #[error("cannot open store: {0}")]
    Open(String),
}

/// An instant as both stores keep it: Unix milliseconds.
pub(crate) fn ms(t: Timestamp) -> i64 {
    t.unix_millis()
}

/// An instant read back from a store.
pub(crate) fn from_ms(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_unix_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("time {ms} out of range")))
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

/// A conversation as received, ready to store.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// The normalized conversation.
    pub conversation: Conversation,
    /// The body as kept and `conversation` as JSON, packed together ([`Packed`]).
    pub packed: Packed,
    /// Hex SHA-256 of the body as sent: an identical resend is a duplicate.
    pub body_sha256: String,
    /// Connector instances that should receive it.
    pub connectors: Vec<String>,
    /// When it arrived.
    pub received_at: Timestamp,
    /// Every e-mail address the kept body and the normalized conversation mention
    /// ([`crate::privacy::addresses`]): what an erasure finds the conversation by.
    pub mentions: Vec<String>,
}

impl NewVersion {
    /// Prepares a received conversation for storing: `sent` is the body as it arrived (its
    /// digest recognises a resend), `kept` the body to store (redacted, if a rule matched).
    /// Serializing, hashing, indexing and compressing happen here, on the caller's task, so
    /// the store's single writer only writes.
    ///
    /// # Errors
    /// When the conversation cannot be serialized (it always can: plain data).
    pub fn new(
        conversation: Conversation,
        sent: &[u8],
        kept: Vec<u8>,
        connectors: Vec<String>,
        received_at: Timestamp,
    ) -> Result<Self, StoreError> {
        use sha2::Digest as _;
        let corrupt = |e: &dyn std::error::Error| StoreError::Corrupt(e.to_string());
        // A normalized chat is somewhat longer than the body it came from; sized for that, the
        // buffer is not copied as it grows.
        let mut normalized = Vec::with_capacity(kept.len() * 3 / 2);
        serde_json::to_writer(&mut normalized, &conversation).map_err(|e| corrupt(&e))?;
        let normalized = String::from_utf8(normalized).map_err(|e| corrupt(&e))?;
        let body_sha256 = hex::encode(sha2::Sha256::digest(sent));
        let mentions = crate::privacy::addresses_in([kept.as_slice(), normalized.as_bytes()]);
        Ok(Self {
            conversation,
            packed: Packed::new(&kept, &normalized),
            body_sha256,
            connectors,
            received_at,
            mentions,
        })
    }
}

/// A version's body and normalized form as `conversation_versions` keeps them, in `body`
/// and `normalized`, the kind told by `codec`:
///
/// - [`Packed::PLAIN`]: the body byte for byte, the normalized form as JSON text (versions
///   stored before compression, and a body zstd could not shrink);
/// - [`Packed::ZSTD_CHATS_1`]: one zstd frame, made with the dictionary `chats-1.dict`, of
///   the body's length (4 bytes, little-endian), the body and the normalized form, which is
///   left empty. The normalized form repeats most of the body's text; in one frame it is
///   kept once. A chat is small, so on its own it holds too little for the compressor to
///   learn from; the dictionary (two chats as Smartsupp sends them, with their normalized
///   forms) gives it the keys and the shape to start with. The 1.7 KB seed chat and its
///   2.0 KB normalized form pack into 0.9 KB so, 1.3 KB without the dictionary, 1.6 KB
///   compressed apart.
///
/// A row needs its codec's dictionary to open, so a dictionary is never edited: a better one
/// comes as a new codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub codec: i64,
    pub body: Vec<u8>,
    pub normalized: String,
}

/// The dictionary of [`Packed::ZSTD_CHATS_1`].
const CHATS_1: &[u8] = include_bytes!("chats-1.dict");

thread_local! {
    /// Each thread's compressor, with the dictionary loaded once.
    static PACKER: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static UNPACKER: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

impl Packed {
    pub const PLAIN: i64 = 0;
    pub const ZSTD_CHATS_1: i64 = 1;
    /// zstd's default: a 4 KB chat in some 20 µs, within a few percent of its best ratio.
    const LEVEL: i32 = 3;
    /// How large a frame may say it opens; a damaged one is not believed past this.
    const LARGEST: usize = 256 << 20;

    /// `raw` and `normalized`, compressed when that is smaller.
    pub fn new(raw: &[u8], normalized: &str) -> Self {
        let mut plain = Vec::with_capacity(4 + raw.len() + normalized.len());
        plain.extend_from_slice(&u32::try_from(raw.len()).unwrap_or(u32::MAX).to_le_bytes());
        plain.extend_from_slice(raw);
        plain.extend_from_slice(normalized.as_bytes());
        let packed = PACKER.with_borrow_mut(|packer| {
            if packer.is_none() {
                *packer = zstd::bulk::Compressor::with_dictionary(Self::LEVEL, CHATS_1).ok();
            }
            packer.as_mut()?.compress(&plain).ok()
        });
        match packed {
            Some(body) if body.len() < raw.len() + normalized.len() => Self {
                codec: Self::ZSTD_CHATS_1,
                body,
                normalized: String::new(),
            },
            _ => Self {
                codec: Self::PLAIN,
                body: raw.to_vec(),
                normalized: normalized.to_owned(),
            },
        }
    }

    /// The body and the normalized form of a stored row.
    ///
    /// # Errors
    /// When the row is not one [`Packed::new`] made.
    pub fn open(
        codec: i64,
        body: Vec<u8>,
        normalized: String,
    ) -> Result<(Vec<u8>, String), StoreError> {
        let bad = |why: &str| StoreError::Corrupt(format!("a stored version's body: {why}"));
        match codec {
            Self::PLAIN => Ok((body, normalized)),
            Self::ZSTD_CHATS_1 => {
                let size = zstd::bulk::Decompressor::upper_bound(&body)
                    .filter(|size| *size <= Self::LARGEST)
                    .ok_or_else(|| bad("not a zstd frame of a size it could have"))?;
                let plain = UNPACKER.with_borrow_mut(|unpacker| {
                    if unpacker.is_none() {
                        *unpacker = Some(
                            zstd::bulk::Decompressor::with_dictionary(CHATS_1)
                                .map_err(|e| bad(&e.to_string()))?,
                        );
                    }
                    let unpacker = unpacker.as_mut().ok_or_else(|| bad("no decompressor"))?;
                    unpacker
                        .decompress(&body, size)
                        .map_err(|e| bad(&e.to_string()))
                })?;
                let (length, rest) = plain
                    .split_first_chunk::<4>()
                    .ok_or_else(|| bad("too short"))?;
                let length = u32::from_le_bytes(*length) as usize;
                if length > rest.len() {
                    return Err(bad("its length is past its end"));
                }
                let (raw, normalized) = rest.split_at(length);
                let normalized = String::from_utf8(normalized.to_vec())
                    .map_err(|_| bad("the normalized form is not UTF-8"))?;
                Ok((raw.to_vec(), normalized))
            }
            other => Err(bad(&format!("codec {other} is unknown"))),
        }
    }
}

/// What ingest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// A new conversation, or a new version of a known one.
    Stored {
        /// Version number (1 for the first).
        version: i64,
        /// Deliveries queued for this version: one per connector that had none waiting.
        deliveries: usize,
        /// Deliveries of an earlier version still waiting, now carrying this one instead:
        /// the connector sends the conversation once, as it is now, not once per version.
        merged: usize,
    },
    /// The very same body was stored before; nothing was created.
    Duplicate {
        /// The version it matches.
        version: i64,
    },
}

/// A body that could not be parsed, kept for inspection.
#[derive(Debug, Clone)]
pub struct Quarantined {
    /// The source route it came to.
    pub source: String,
    /// Why it was refused.
    pub reason: String,
    /// The body, byte for byte.
    pub body: Vec<u8>,
    /// Its `Content-Type`, if any.
    pub content_type: Option<String>,
    /// When it arrived.
    pub received_at: Timestamp,
}

/// A quarantined body with its id, as shown and brought back.
#[derive(Debug, Clone)]
pub struct QuarantinedBody {
    /// Store id.
    pub id: i64,
    /// The body and what is known of it.
    pub item: Quarantined,
}

/// A quarantined body as listed.
#[derive(Debug, Clone)]
pub struct QuarantineRow {
    /// Store id.
    pub id: i64,
    /// Source route.
    pub source: String,
    /// Why it was refused.
    pub reason: String,
    /// Body size in bytes.
    pub size: usize,
    /// When it arrived.
    pub received_at: Timestamp,
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
            .ok_or_else(|| StoreError::Corrupt(format!("attempt outcome `{text}`")))
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

/// Where a newest-first listing of conversations continues: the last row's first-received
/// time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationCursor {
    /// First received.
    pub received_at: Timestamp,
    /// Conversation id (breaks ties).
    pub id: String,
}

impl ConversationCursor {
    /// The opaque text form used in the API (`next` of one page, `cursor` of the next).
    pub fn encode(&self) -> String {
        format!("{}.{}", self.received_at.unix_millis(), self.id)
    }

    /// Reads [`ConversationCursor::encode`]'s form.
    ///
    /// # Errors
    /// When the text is not a cursor this service gave out.
    pub fn decode(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a cursor from a previous page");
        let (millis, id) = text.split_once('.').ok_or_else(bad)?;
        let received_at = millis
            .parse()
            .ok()
            .and_then(Timestamp::from_unix_millis)
            .ok_or_else(bad)?;
        Ok(Self {
            received_at,
            id: id.to_owned(),
        })
    }
}

/// Which conversations to list; every field narrows the search.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    /// First received at or after.
    pub since: Option<Timestamp>,
    /// First received before.
    pub until: Option<Timestamp>,
    /// Conversation status (`completed`, `missed`, `offline`, `dropped`).
    pub status: Option<String>,
    /// The visitor's e-mail, compared without regard to case.
    pub email: Option<String>,
    /// The source (`smartsupp`).
    pub source: Option<String>,
    /// Only conversations with a delivery in this state.
    pub delivery_state: Option<DeliveryState>,
    /// Only conversations for which a connector made something with this id at its target
    /// (a ticket or contact number).
    pub remote: Option<String>,
    /// Continue after this row.
    pub after: Option<ConversationCursor>,
    /// At most this many, newest first (0: no limit).
    pub limit: usize,
}

/// One value of a [`FilterSql`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FilterValue {
    /// A number (Unix milliseconds, an id).
    Integer(i64),
    /// Text.
    Text(String),
}

/// The `WHERE` conditions of a listing's filter, and their values in placeholder order.
/// Only the conditions the filter sets are written: a `(?1 IS NULL OR col = ?1)` condition
/// hides the column from the planner, which then scans the whole table (seconds at a million
/// conversations) where an index would find the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilterSql {
    pub conditions: String,
    pub values: Vec<FilterValue>,
}

/// Builds a [`FilterSql`]: `placeholder(n)` writes parameter `n` (1-based) as the database
/// wants it (`?1`, `$1`).
struct Conditions {
    placeholder: fn(usize) -> String,
    written: Vec<String>,
    values: Vec<FilterValue>,
}

impl Conditions {
    fn new(placeholder: fn(usize) -> String) -> Self {
        Self {
            placeholder,
            written: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Adds `condition`, whose `{}` stand for `given` in order.
    fn add(&mut self, condition: &str, given: Vec<FilterValue>) {
        let mut written = condition.to_owned();
        for value in given {
            self.values.push(value);
            written = written.replacen("{}", &(self.placeholder)(self.values.len()), 1);
        }
        self.written.push(written);
    }

    fn text(&mut self, condition: &str, value: &Option<String>) {
        if let Some(value) = value {
            self.add(condition, vec![FilterValue::Text(value.clone())]);
        }
    }

    fn done(self) -> FilterSql {
        let conditions = if self.written.is_empty() {
            "TRUE".to_owned()
        } else {
            self.written.join(" AND ")
        };
        FilterSql {
            conditions,
            values: self.values,
        }
    }
}

impl FilterSql {
    /// A [`ConversationFilter`] over `conversations c`. `email` is the condition on the
    /// visitor's address with `{}` for its parameter, written to use that database's
    /// case-blind index. The page cursor is a row-value comparison, which both databases
    /// read as a range of the `(created_at, id)` index.
    pub(crate) fn conversations(
        filter: &ConversationFilter,
        placeholder: fn(usize) -> String,
        email: &str,
    ) -> Self {
        let mut sql = Conditions::new(placeholder);
        let time = |t: Timestamp| FilterValue::Integer(ms(t));
        if let Some(since) = filter.since {
            sql.add("c.created_at >= {}", vec![time(since)]);
        }
        if let Some(until) = filter.until {
            sql.add("c.created_at < {}", vec![time(until)]);
        }
        sql.text("c.status = {}", &filter.status);
        sql.text(email, &filter.email);
        sql.text("c.source = {}", &filter.source);
        if let Some(remote) = &filter.remote {
            // The ledger keeps each id as JSON: `4711` when the target gave a number,
            // `"4711"` when it gave text.
            let quoted = serde_json::Value::from(remote.as_str()).to_string();
            sql.add(
                "c.id IN (SELECT l.conversation_id FROM ledger l WHERE l.value IN ({}, {}))",
                vec![FilterValue::Text(remote.clone()), FilterValue::Text(quoted)],
            );
        }
        if let Some(state) = filter.delivery_state {
            sql.add(
                "EXISTS (SELECT 1 FROM deliveries d WHERE d.conversation_id = c.id AND d.state = {})",
                vec![FilterValue::Text(state.as_str().to_owned())],
            );
        }
        if let Some(after) = &filter.after {
            sql.add(
                "(c.created_at, c.id) < ({}, {})",
                vec![time(after.received_at), FilterValue::Text(after.id.clone())],
            );
        }
        sql.done()
    }

    /// A [`DeliveryFilter`] over `deliveries`. The state is written as a literal (one of
    /// three), so that each database may read it from that state's partial index.
    pub(crate) fn deliveries(filter: &DeliveryFilter, placeholder: fn(usize) -> String) -> Self {
        let mut sql = Conditions::new(placeholder);
        if let Some(state) = filter.state {
            sql.add(&format!("state = '{}'", state.as_str()), Vec::new());
        }
        sql.text("connector = {}", &filter.connector);
        sql.text("conversation_id = {}", &filter.conversation_id);
        if let Some(before) = filter.before {
            sql.add("id < {}", vec![FilterValue::Integer(before)]);
        }
        sql.done()
    }
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

/// A conversation as listed.
#[derive(Debug, Clone)]
pub struct ConversationRow {
    /// Conversation id.
    pub id: String,
    /// Chat product.
    pub source: String,
    /// The product's account.
    pub account_id: String,
    /// Status of the latest version.
    pub status: String,
    /// The visitor's e-mail, when known.
    pub visitor_email: Option<String>,
    /// When the chat began.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// Versions received.
    pub latest_version: i64,
    /// First received.
    pub received_at: Timestamp,
    /// Last version received.
    pub updated_at: Timestamp,
    /// Its deliveries by state.
    pub deliveries: StateCounts,
}

/// One stored version of a conversation.
#[derive(Debug, Clone)]
pub struct VersionRow {
    /// Version number, from 1.
    pub version: i64,
    /// When it arrived.
    pub received_at: Timestamp,
    /// Hex SHA-256 of the body.
    pub body_sha256: String,
    /// The normalized conversation, as JSON.
    pub normalized: String,
    /// Body size in bytes.
    pub size: usize,
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

/// What [`Store::replay`] queued.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// New deliveries, by id.
    pub queued: Vec<i64>,
    /// Pairs skipped because a delivery of them is still pending.
    pub already_pending: u64,
}

/// What [`Store::purge`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Conversations, with their versions, deliveries and attempts.
    pub conversations: u64,
    /// Quarantined bodies.
    pub quarantined: u64,
}

impl std::ops::AddAssign for ForgetReport {
    fn add_assign(&mut self, more: Self) {
        self.conversations += more.conversations;
        self.versions += more.versions;
        self.deliveries += more.deliveries;
        self.attempts += more.attempts;
        self.ledger_entries += more.ledger_entries;
        self.quarantined += more.quarantined;
        self.excerpts_blanked += more.excerpts_blanked;
        self.files += more.files;
    }
}

/// What replaces an error that mentioned a forgotten visitor.
pub(crate) const ERASED: &str = "(erased: mentioned a forgotten visitor)";

/// Which texts of an attempt indexed under a forgotten address go: its error and its
/// delivery's last error (replaced by [`ERASED`]), its excerpt (emptied).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Blanked {
    pub error: bool,
    pub excerpt: bool,
    pub last_error: bool,
}

impl Blanked {
    /// Those of the texts that mention `needle`.
    pub(crate) fn of(
        needle: &str,
        error: Option<&str>,
        excerpt: Option<&str>,
        last_error: Option<&str>,
    ) -> Self {
        let mentioned = |text: Option<&str>| {
            text.is_some_and(|t| crate::privacy::mentions(t.as_bytes(), needle))
        };
        Self {
            error: mentioned(error),
            excerpt: mentioned(excerpt),
            last_error: mentioned(last_error),
        }
    }

    /// For [`ForgetReport::excerpts_blanked`]: the attempt, and its delivery.
    pub(crate) fn count(self) -> u64 {
        u64::from(self.error || self.excerpt) + u64::from(self.last_error)
    }
}

/// The conversations one erasure batch takes: found through what their bodies mention and
/// by the visitor's address, each lookup at most `limit`, together at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Doomed {
    pub ids: Vec<String>,
    /// Some may be left for another batch.
    pub more: bool,
}

impl Doomed {
    pub(crate) fn of(limit: usize, by_mention: Vec<String>, by_visitor: Vec<String>) -> Self {
        let full = by_mention.len() >= limit || by_visitor.len() >= limit;
        let mut ids = by_mention;
        ids.extend(by_visitor);
        ids.sort_unstable();
        ids.dedup();
        let more = full || ids.len() > limit;
        ids.truncate(limit);
        Self { ids, more }
    }
}

/// One call of [`Store::forget`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForgetBatch {
    /// Erased by this call.
    pub report: ForgetReport,
    /// Nothing mentioning the address is left to erase.
    pub done: bool,
}

/// How long [`Store::purge`] keeps settled conversations: those whose last activity is
/// older than `delivered_before`, or `dead_before` when one of their deliveries is dead, go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeCutoffs {
    /// For conversations whose deliveries all succeeded.
    pub delivered_before: Timestamp,
    /// For conversations with a dead delivery, and for quarantined bodies.
    pub dead_before: Timestamp,
}

impl PurgeCutoffs {
    /// The later of the two, in Unix ms: no conversation first received since can go.
    pub fn latest_ms(&self) -> i64 {
        ms(self.delivered_before).max(ms(self.dead_before))
    }

    /// Whether a conversation last active at `last_active_ms`, with no pending delivery and
    /// `dead` of them dead, is past its time.
    pub fn expired(&self, last_active_ms: i64, dead: u64) -> bool {
        let cutoff = if dead > 0 {
            self.dead_before
        } else {
            self.delivered_before
        };
        last_active_ms < ms(cutoff)
    }
}

/// One call of [`Store::purge`]: what it removed, and where the next call continues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeBatch {
    /// Removed by this call.
    pub report: PurgeReport,
    /// The last conversation examined; `None` once none are left to examine.
    pub next: Option<ConversationCursor>,
}

/// What [`Store::forget`] erased (also the admin API's answer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ForgetReport {
    /// Conversations of that visitor.
    pub conversations: u64,
    /// Their stored versions (raw bodies and normalized forms).
    pub versions: u64,
    /// Their deliveries.
    pub deliveries: u64,
    /// Their recorded attempts, with answer excerpts.
    pub attempts: u64,
    /// Ledger entries (remote ids) of those conversations.
    pub ledger_entries: u64,
    /// Quarantined bodies that mention the address.
    pub quarantined: u64,
    /// Answer excerpts and errors of other conversations that mentioned the address, blanked.
    pub excerpts_blanked: u64,
    /// Files in connectors' outbox folders that mentioned the address, removed.
    pub files: u64,
}

/// Durable storage for conversations, deliveries and their attempts.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Stores a received conversation and its deliveries in one transaction; returns after
    /// the commit.
    ///
    /// # Errors
    /// When the database fails; nothing is stored then.
    async fn ingest(&self, version: NewVersion) -> Result<IngestOutcome, StoreError>;

    /// Keeps a body that could not be parsed; returns its id.
    ///
    /// # Errors
    /// When the database fails.
    async fn quarantine(&self, item: Quarantined) -> Result<i64, StoreError>;

    /// Quarantined bodies, newest first.
    ///
    /// # Errors
    /// When the database fails.
    async fn quarantined(&self, limit: usize) -> Result<Vec<QuarantineRow>, StoreError>;

    /// One quarantined body, whole.
    ///
    /// # Errors
    /// When the database fails.
    async fn quarantined_body(&self, id: i64) -> Result<Option<QuarantinedBody>, StoreError>;

    /// Up to `limit` quarantined bodies with ids above `after`, oldest first: a page of a walk
    /// through all of them (re-ingest, erasure) that never holds the writer for long.
    ///
    /// # Errors
    /// When the database fails.
    async fn quarantined_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<QuarantinedBody>, StoreError>;

    /// Keeps a new reason for a quarantined body that was tried again and still refused.
    ///
    /// # Errors
    /// When the database fails.
    async fn requarantine(&self, id: i64, reason: &str) -> Result<(), StoreError>;

    /// Removes quarantined bodies; returns how many there were.
    ///
    /// # Errors
    /// When the database fails.
    async fn drop_quarantined(&self, ids: &[i64]) -> Result<u64, StoreError>;

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

    /// Conversations, newest first.
    ///
    /// # Errors
    /// When the database fails.
    async fn conversations(
        &self,
        filter: ConversationFilter,
    ) -> Result<Vec<ConversationRow>, StoreError>;

    /// How many conversations the filter matches (its cursor and limit aside).
    ///
    /// # Errors
    /// When the database fails.
    async fn conversation_count(&self, filter: &ConversationFilter) -> Result<u64, StoreError>;

    /// One conversation with every stored version, oldest first.
    ///
    /// # Errors
    /// When the database fails.
    async fn conversation(
        &self,
        id: &str,
    ) -> Result<Option<(ConversationRow, Vec<VersionRow>)>, StoreError>;

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

    /// Removes settled conversations (no pending delivery) past their `cutoffs`, and
    /// quarantined bodies older than `dead_before`. Examines at most `limit` conversations,
    /// oldest first after `after`, in one short transaction, so that a large purge does not
    /// hold up ingest: call again from the returned `next` until it is `None`.
    ///
    /// # Errors
    /// When the database fails.
    async fn purge(
        &self,
        cutoffs: PurgeCutoffs,
        after: Option<ConversationCursor>,
        limit: usize,
    ) -> Result<PurgeBatch, StoreError>;

    /// Erases the visitor with this e-mail from the conversations: theirs (matched by the
    /// visitor's address or the address anywhere in a stored body, through the index of
    /// what each body mentions) with versions, deliveries, attempts and ledger entries; and
    /// blanks excerpts of other conversations' answers that mention it. At most `limit` of
    /// each in one short transaction: call again until it says it is done. Quarantined
    /// bodies are for [`crate::maintenance::forget`]. `email` is compared as given: the
    /// caller trims it and puts it in lower case.
    ///
    /// # Errors
    /// When the database fails.
    async fn forget(&self, email: &str, limit: usize) -> Result<ForgetBatch, StoreError>;

    /// After an erasure: leaves no copy of what was deleted in the store's own files. SQLite
    /// overwrites deleted content as it deletes (`secure_delete`), and here folds the
    /// write-ahead log into the database and truncates it, so the log's older page images go.
    /// PostgreSQL offers no such guarantee from inside a session (see docs/deploy.md).
    ///
    /// # Errors
    /// When the database fails.
    async fn scrub(&self) -> Result<(), StoreError>;

    /// Checks that the store answers.
    ///
    /// # Errors
    /// When it does not.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Records a dashboard session (and forgets the ones that have ended).
    ///
    /// # Errors
    /// When the database fails.
    async fn open_session(&self, session: NewSession) -> Result<(), StoreError>;

    /// Extends a session that has not ended to `idle_until`; its token MAC, or `None` when
    /// there is no such session or it has ended.
    ///
    /// # Errors
    /// When the database fails.
    async fn touch_session(
        &self,
        id_hash: &str,
        now: Timestamp,
        idle_until: Timestamp,
    ) -> Result<Option<String>, StoreError>;

    /// Ends a session (logout).
    ///
    /// # Errors
    /// When the database fails.
    async fn end_session(&self, id_hash: &str) -> Result<(), StoreError>;
}

/// A dashboard session as the store keeps it; see `http::session`.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// SHA-256 of the session id, hex.
    pub id_hash: String,
    /// HMAC of the session id under the admin token's digest, hex.
    pub token_mac: String,
    /// The login.
    pub created_at: Timestamp,
    /// The end, however busy the session.
    pub expires_at: Timestamp,
    /// The end unless a request comes first.
    pub idle_until: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_version_opens_to_the_body_and_normalized_form_it_was_made_of() {
        let raw = include_bytes!("../../tests/fixtures/smartsupp/seed-example.json");
        let normalized = serde_json::to_string(
            &crate::sources::smartsupp::parse(raw)
                .expect("parses")
                .conversation,
        )
        .unwrap();
        let packed = Packed::new(raw, &normalized);
        assert_eq!(packed.codec, Packed::ZSTD_CHATS_1);
        assert!(
            packed.body.len() * 3 < raw.len() + normalized.len(),
            "{} bytes",
            packed.body.len()
        );
        let opened = Packed::open(packed.codec, packed.body, packed.normalized).unwrap();
        assert_eq!(opened, (raw.to_vec(), normalized));

        // What zstd cannot shrink is kept as it is.
        let noise: Vec<u8> = (0..64).map(|_| fastrand::u8(..)).collect();
        let packed = Packed::new(&noise, "");
        assert_eq!(packed.codec, Packed::PLAIN);
        assert_eq!(
            Packed::open(packed.codec, packed.body, packed.normalized).unwrap(),
            (noise, String::new())
        );
    }

    #[test]
    fn a_damaged_packed_version_is_an_error_not_a_panic() {
        let packed = Packed::new(
            b"{\"a\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
            "{\"a\": \"aaaa\"}",
        );
        assert_eq!(packed.codec, Packed::ZSTD_CHATS_1);
        for damaged in [
            Vec::new(),
            packed.body[..packed.body.len() / 2].to_vec(),
            b"not zstd at all".to_vec(),
            zstd::bulk::compress(&[9, 9], 3).unwrap(),
            zstd::bulk::compress(&[200, 0, 0, 0, b'x'], 3).unwrap(),
        ] {
            assert!(Packed::open(Packed::ZSTD_CHATS_1, damaged, String::new()).is_err());
        }
        assert!(Packed::open(7, Vec::new(), String::new()).is_err());
    }
}

//! Taking conversations in: a received version with its deliveries, or a body kept in
//! quarantine because it could not be parsed.

use async_trait::async_trait;

use super::*;
use crate::model::{Conversation, Timestamp};

/// Where received chats are committed, and unparseable bodies kept.
#[async_trait]
pub trait Inbox: Send + Sync {
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
        let corrupt = |e: &dyn std::error::Error| StoreError::Corrupt(e.to_string().into());
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

//! Keeping the store in shape: retention purges, the erasure of a visitor, and a health check.

use async_trait::async_trait;

use super::*;
use crate::model::Timestamp;

/// Removing what must go, by age (retention) or by visitor (erasure); and the health check.
#[async_trait]
pub trait Maintenance: Send + Sync {
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
}

/// What [`Maintenance::purge`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Conversations, with their versions, deliveries and attempts.
    pub conversations: u64,
    /// Quarantined bodies.
    pub quarantined: u64,
    /// Fetch jobs given up (kept dead) as long as a dead delivery would be.
    pub fetches: u64,
}

impl std::ops::AddAssign for ForgetReport {
    fn add_assign(&mut self, more: Self) {
        self.conversations += more.conversations;
        self.versions += more.versions;
        self.deliveries += more.deliveries;
        self.attempts += more.attempts;
        self.ledger_entries += more.ledger_entries;
        self.quarantined += more.quarantined;
        self.fetches += more.fetches;
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

/// One call of [`Maintenance::forget`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForgetBatch {
    /// Erased by this call.
    pub report: ForgetReport,
    /// Nothing mentioning the address is left to erase.
    pub done: bool,
}

/// How long [`Maintenance::purge`] keeps settled conversations: those whose last activity is
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

/// One call of [`Maintenance::purge`]: what it removed, and where the next call continues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeBatch {
    /// Removed by this call.
    pub report: PurgeReport,
    /// The last conversation examined; `None` once none are left to examine.
    pub next: Option<ConversationCursor>,
}

/// What [`Maintenance::forget`] erased (also the admin API's answer).
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
    /// Fetch jobs whose event mentions the address (their conversation is not fetched).
    pub fetches: u64,
    /// Answer excerpts and errors of other conversations that mentioned the address, blanked.
    pub excerpts_blanked: u64,
    /// Files in connectors' outbox folders that mentioned the address, removed.
    pub files: u64,
}

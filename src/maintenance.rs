//! Operations on many stored conversations at once: replay, retrying dead letters, erasing a
//! visitor, and the retention purge. The CLI and the admin API both call these, so a command
//! and its endpoint do exactly the same thing.
//!
//! Bulk work goes in pages, each its own transaction, so a replay of a month does not hold
//! the store's writer for long and reports progress as it goes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::RetentionConfig;
use crate::connectors::LiveRegistry;
use crate::intake::{Intake, Intaken};
use crate::model::Timestamp;
use crate::privacy;
use crate::sources::instance::{Credential, Instance, Instances};
use crate::store::{
    ConversationFilter, Deliveries, DeliveryFilter, DeliveryState, ForgetReport, IngestOutcome,
    PurgeCutoffs, PurgeReport, QuarantinedBody, Store, StoreError,
};
use crate::telemetry::Escaped;

/// Rows handled per transaction. Ingest commits through the same writer and waits behind
/// each one: a hundred conversations of a replay or of the retention purge take some 10 ms.
const PAGE: usize = 100;
/// Conversations erased per transaction: an erasure also counts what it removes, so each
/// costs about four times what the purge's does (a hundred held ingest back 40 ms a batch
/// on SQLite, a million chats stored).
const ERASE_PAGE: usize = 25;
/// Quarantined bodies read per page in a walk through them (erasure, re-ingest). Each may be
/// as large as `server.max_body_bytes`, so a page of [`PAGE`] could hold a gigabyte.
const BODY_PAGE: usize = 32;
/// How often retention runs (also once at start).
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Told how a bulk operation advances: the CLI draws a bar, the API ignores it.
pub trait Progress: Send {
    /// The total, once known.
    fn total(&mut self, total: u64);
    /// `done` more items handled.
    fn advance(&mut self, done: u64);
}

/// Progress nobody watches.
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn total(&mut self, _: u64) {}
    fn advance(&mut self, _: u64) {}
}

/// Which conversations to deliver again, and through which connectors.
#[derive(Debug, Clone)]
pub struct ReplayRange {
    /// First received at or after.
    pub since: Timestamp,
    /// First received before (default: now).
    pub until: Option<Timestamp>,
    /// Connector instances; each conversation goes again to those that received it before.
    pub connectors: Vec<String>,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReplayTotals {
    /// Conversations in the range.
    pub conversations: u64,
    /// Deliveries queued.
    pub queued: u64,
    /// (conversation, connector) pairs skipped because a delivery of them is still pending.
    pub already_pending: u64,
}

/// Queues every conversation of the range again. Connectors that dedupe at the target (an
/// `external_id` lookup, search before create) find what they made before instead of
/// creating it twice.
///
/// # Errors
/// When the store fails; pages already queued stay queued.
pub async fn replay(
    store: &dyn Store,
    range: &ReplayRange,
    progress: &mut dyn Progress,
) -> Result<ReplayTotals, StoreError> {
    let filter = ConversationFilter {
        since: Some(range.since),
        until: range.until,
        ..ConversationFilter::default()
    };
    progress.total(store.conversation_count(&filter).await?);
    let mut totals = ReplayTotals::default();
    let mut after = None;
    loop {
        let page = store
            .conversations(ConversationFilter {
                after,
                limit: PAGE,
                ..filter.clone()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(crate::store::ConversationCursor {
            received_at: last.received_at,
            id: last.id.clone(),
        });
        let ids: Vec<String> = page.iter().map(|c| c.id.clone()).collect();
        let report = store.replay(&ids, &range.connectors).await?;
        totals.conversations += ids.len() as u64;
        totals.queued += report.queued.len() as u64;
        totals.already_pending += report.already_pending;
        progress.advance(ids.len() as u64);
    }
    Ok(totals)
}

/// Puts every dead delivery (of one connector, if given) back in the queue with a fresh
/// attempt budget; returns how many.
///
/// # Errors
/// When the store fails; pages already retried stay retried.
pub async fn retry_dead(
    store: &dyn Deliveries,
    connector: Option<&str>,
    progress: &mut dyn Progress,
) -> Result<u64, StoreError> {
    let dead: u64 = store
        .connector_stats(Timestamp::now())
        .await?
        .iter()
        .filter(|s| connector.is_none_or(|c| c == s.connector))
        .map(|s| s.dead_total)
        .sum();
    progress.total(dead);
    let mut retried = 0;
    let mut before = None;
    loop {
        // Newest first, below the last page: a delivery that dies again meanwhile is not
        // retried twice by one call.
        let page = store
            .deliveries(DeliveryFilter {
                state: Some(DeliveryState::Dead),
                connector: connector.map(str::to_owned),
                before,
                limit: PAGE,
                ..DeliveryFilter::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        let ids: Vec<i64> = page.iter().map(|d| d.id).collect();
        let n = store.retry(&ids).await?;
        retried += n;
        progress.advance(n);
    }
    Ok(retried)
}

/// Erases every trace of the visitor with this e-mail address that chatbridge wrote: their
/// conversations in the store, quarantined bodies that mention the address however they
/// spell it ([`privacy::mentions`]), files in the connectors' `outboxes` that mention it;
/// then [`Maintenance::scrub`](crate::store::Maintenance::scrub), so the store's files keep no older copy.
///
/// # Errors
/// When the address is blank, or the store fails.
pub async fn forget(
    store: &dyn Store,
    email: &str,
    outboxes: &[PathBuf],
) -> Result<ForgetReport, ForgetError> {
    let email = email.trim();
    if email.is_empty() || !email.contains('@') {
        return Err(ForgetError::NotAnAddress(email.to_owned()));
    }
    let needle = email.to_lowercase();
    let mut report = ForgetReport::default();
    loop {
        let batch = store.forget(&needle, ERASE_PAGE).await?;
        report += batch.report;
        if batch.done {
            break;
        }
    }
    let mut after = 0;
    loop {
        let page = store.quarantined_after(after, BODY_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let matching: Vec<i64> = page
            .iter()
            .filter(|q| privacy::mentions(&q.item.body, &needle))
            .map(|q| q.id)
            .collect();
        if !matching.is_empty() {
            report.quarantined += store.drop_quarantined(&matching).await?;
        }
    }
    // An event kept for fetching can name the visitor too (Smartsupp v2 sends the
    // contact's e-mail with some conversations): its job goes, and nothing is fetched.
    let mut after = 0;
    loop {
        let page = store.fetch_bodies_after(after, BODY_PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        let matching: Vec<i64> = page
            .iter()
            .filter(|(_, body)| privacy::mentions(body, &needle))
            .map(|(id, _)| *id)
            .collect();
        if !matching.is_empty() {
            report.fetches += store.drop_fetches(&matching).await?;
        }
    }
    for dir in outboxes {
        report.files += remove_files(dir, Doomed::Mentioning(&needle)).await?;
    }
    store.scrub().await?;
    // The address itself is not logged: that would be a trace of the visitor.
    tracing::info!(
        conversations = report.conversations,
        versions = report.versions,
        attempts = report.attempts,
        quarantined = report.quarantined,
        fetches = report.fetches,
        files = report.files,
        "erased a visitor's conversations"
    );
    Ok(report)
}

/// Which files of an outbox folder go.
#[derive(Debug, Clone, Copy)]
enum Doomed<'a> {
    /// Those whose content mentions this address (lower case), however spelled.
    Mentioning(&'a str),
    /// Those last written before this time; their content is not read.
    WrittenBefore(std::time::SystemTime),
}

/// Removes the files of `dir` (not its sub-folders) that are `doomed`; returns how many. A
/// folder that does not exist yet holds nothing.
///
/// # Errors
/// When the folder or a file cannot be read or removed: erasure must not report success
/// while a copy stays behind.
async fn remove_files(dir: &Path, doomed: Doomed<'_>) -> Result<u64, std::io::Error> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    while let Some(entry) = entries.next_entry().await? {
        let metadata = entry.metadata().await?;
        if !metadata.is_file() {
            continue;
        }
        let remove = match doomed {
            Doomed::WrittenBefore(cutoff) => metadata.modified()? < cutoff,
            Doomed::Mentioning(needle) => {
                privacy::mentions(&tokio::fs::read(entry.path()).await?, needle)
            }
        };
        if remove {
            tokio::fs::remove_file(entry.path()).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Why [`forget`] refused.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// Not an e-mail address.
    #[error("`{0}` is not an e-mail address")]
    NotAnAddress(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An outbox folder could not be read or cleaned.
    #[error("cannot clean an outbox folder: {0}")]
    Files(#[from] std::io::Error),
}

/// What became of a quarantined body brought back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReingestOutcome {
    /// A new conversation or version, with its deliveries; it left the quarantine.
    Stored,
    /// The very same body was stored since; it left the quarantine.
    Duplicate,
    /// Still not accepted; kept, with the new reason.
    Refused,
    /// No quarantined body has that id.
    Missing,
    /// Read as an event that ends no conversation; it left the quarantine.
    Ignored,
}

/// One quarantined body brought back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Reingested {
    /// Its quarantine id.
    pub id: i64,
    /// What became of it.
    pub outcome: ReingestOutcome,
    /// The conversation it became.
    pub conversation: Option<String>,
    /// Its version.
    pub version: Option<i64>,
    /// Deliveries queued for it.
    pub deliveries: Option<usize>,
    /// Why it is still refused.
    pub reason: Option<String>,
}

/// What a re-ingest did (also the admin API's answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReingestReport {
    /// Counts by outcome.
    pub totals: ReingestTotals,
    /// Each body named by id, in order (empty for all of them).
    pub results: Vec<Reingested>,
}

/// Bodies re-ingested, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReingestTotals {
    /// Bodies that became new conversations or versions.
    pub stored: u64,
    /// Bodies identical to what was stored since.
    pub duplicates: u64,
    /// Bodies still refused, kept with their new reason (or not found).
    pub refused: u64,
    /// Bodies read today as events that end no conversation; they left the quarantine.
    pub ignored: u64,
}

impl ReingestTotals {
    /// Counts one more body.
    pub fn add(&mut self, outcome: ReingestOutcome) {
        match outcome {
            ReingestOutcome::Stored => self.stored += 1,
            ReingestOutcome::Duplicate => self.duplicates += 1,
            ReingestOutcome::Refused | ReingestOutcome::Missing => self.refused += 1,
            ReingestOutcome::Ignored => self.ignored += 1,
        }
    }
}

/// Runs quarantined bodies through today's parser and configuration, as a fresh post would
/// be: `sources` are the sources configured now, and a body's account must be one some
/// token of its source may post for. A body now accepted leaves the quarantine (an identical one stored
/// since is a duplicate, as at ingest); one still refused stays, with the new reason.
///
/// # Errors
/// When the store fails; the bodies handled before stay handled.
pub async fn reingest(
    intake: &Intake<'_>,
    sources: &Instances,
    ids: &[i64],
) -> Result<ReingestReport, StoreError> {
    let mut report = ReingestReport::default();
    for &id in ids {
        let result = match intake.store.quarantined_body(id).await? {
            Some(kept) => reingest_one(intake, sources, kept).await?,
            None => Reingested {
                id,
                outcome: ReingestOutcome::Missing,
                conversation: None,
                version: None,
                deliveries: None,
                reason: Some(format!("no quarantined body {id}")),
            },
        };
        report.totals.add(result.outcome);
        report.results.push(result);
    }
    Ok(report)
}

/// [`reingest`] of every quarantined body, a page at a time.
///
/// # Errors
/// As [`reingest`].
pub async fn reingest_all(
    intake: &Intake<'_>,
    sources: &Instances,
    progress: &mut dyn Progress,
) -> Result<ReingestReport, StoreError> {
    let mut totals = ReingestTotals::default();
    let mut after = 0;
    loop {
        let page = intake.store.quarantined_after(after, BODY_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let count = page.len() as u64;
        for kept in page {
            totals.add(reingest_one(intake, sources, kept).await?.outcome);
        }
        progress.advance(count);
    }
    Ok(ReingestReport {
        totals,
        results: Vec::new(),
    })
}

/// Whether a body of `account` may come from `instance`: any account for a signed source
/// (its secret is one customer's), those of some token's scope for a URL-token source.
fn admits(instance: &Instance, account: &str) -> bool {
    match &instance.credential {
        Credential::Tokens(tokens) => tokens.any_admits(account),
        _ => true,
    }
}

async fn reingest_one(
    intake: &Intake<'_>,
    sources: &Instances,
    kept: QuarantinedBody,
) -> Result<Reingested, StoreError> {
    let id = kept.id;
    let refused = |reason: String| Reingested {
        id,
        outcome: ReingestOutcome::Refused,
        conversation: None,
        version: None,
        deliveries: None,
        reason: Some(reason),
    };
    let Some(instance) = sources.get(&kept.item.source) else {
        let reason = format!("source `{}` is not configured", kept.item.source);
        intake.store.requarantine(id, &reason).await?;
        return Ok(refused(reason));
    };
    let account_refused = |account: &str| {
        (!admits(instance, account))
            .then(|| format!("account {account} is not one of any configured tenant's accounts"))
    };
    let body = axum::body::Bytes::from(kept.item.body);
    match intake
        .admit(instance, body, account_refused, kept.item.received_at)
        .await?
    {
        Ok(Intaken::Fetching {
            conversation_id,
            enqueued,
        }) => {
            intake.store.drop_quarantined(&[id]).await?;
            Ok(Reingested {
                id,
                outcome: if enqueued.duplicate {
                    ReingestOutcome::Duplicate
                } else {
                    ReingestOutcome::Stored
                },
                conversation: Some(conversation_id),
                version: None,
                deliveries: None,
                reason: Some(format!("its conversation is fetched (job {})", enqueued.id)),
            })
        }
        Ok(Intaken::Ignored(event)) => {
            // Read today, the body is an event that ends nothing: nothing to keep.
            intake.store.drop_quarantined(&[id]).await?;
            Ok(Reingested {
                id,
                outcome: ReingestOutcome::Ignored,
                conversation: None,
                version: None,
                deliveries: None,
                reason: Some(format!("`{event}` ends no conversation")),
            })
        }
        Ok(Intaken::Stored(admitted)) => {
            intake.store.drop_quarantined(&[id]).await?;
            let (outcome, version, deliveries) = match admitted.outcome {
                IngestOutcome::Stored {
                    version,
                    deliveries,
                    ..
                } => (ReingestOutcome::Stored, version, Some(deliveries)),
                IngestOutcome::Duplicate { version } => (ReingestOutcome::Duplicate, version, None),
            };
            tracing::info!(quarantine_id = id, conversation_id = %Escaped(&admitted.conversation_id), ?outcome, "quarantined body re-ingested");
            Ok(Reingested {
                id,
                outcome,
                conversation: Some(admitted.conversation_id),
                version: Some(version),
                deliveries,
                reason: None,
            })
        }
        Err(refusal) => {
            intake.store.requarantine(id, refusal.reason()).await?;
            Ok(refused(refusal.reason().to_owned()))
        }
    }
}

/// The retention purge: conversations settled longer ago than `[retention]` allows are
/// removed with everything about them, and so are the outbox files written for them.
#[derive(Debug, Clone)]
pub struct Retention {
    store: Arc<dyn Store>,
    /// The connectors in use, for their outbox folders.
    registry: Arc<LiveRegistry>,
    delivered: Option<Duration>,
    dead: Option<Duration>,
}

impl Retention {
    /// Retention of `store` and the outboxes of `registry`'s connectors by `config` (0 days:
    /// keep forever).
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<LiveRegistry>,
        config: &RetentionConfig,
    ) -> Self {
        let days = |n: u32| (n > 0).then(|| Duration::from_secs(u64::from(n) * 86_400));
        Self {
            store,
            registry,
            delivered: days(config.delivered_days),
            dead: days(config.dead_days),
        }
    }

    /// Removes outbox files written longer ago than `delivered_days`: a file is written when
    /// its delivery succeeds, so it goes when its conversation does. Then, if anything was
    /// removed from the store or the folders, [`Maintenance::scrub`](crate::store::Maintenance::scrub).
    ///
    /// # Errors
    /// When a folder cannot be read or cleaned, or the store fails.
    pub async fn purge_outboxes(&self, now: Timestamp) -> Result<u64, ForgetError> {
        let Some(keep) = self.delivered else {
            return Ok(0);
        };
        let cutoff = std::time::SystemTime::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(now.minus(keep).unix_millis()).unwrap_or(0));
        let mut removed = 0;
        for dir in self.registry.current().outboxes() {
            removed += remove_files(&dir, Doomed::WrittenBefore(cutoff)).await?;
        }
        Ok(removed)
    }

    /// Purges everything past its time, a page per transaction.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn purge(&self, now: Timestamp) -> Result<PurgeReport, StoreError> {
        // "Forever" is the start of time as a cut-off: nothing is older.
        let cutoff = |keep: Option<Duration>| {
            keep.map_or(Timestamp::from_unix_millis(0).expect("the epoch"), |d| {
                now.minus(d)
            })
        };
        let cutoffs = PurgeCutoffs {
            delivered_before: cutoff(self.delivered),
            dead_before: cutoff(self.dead),
        };
        let mut total = PurgeReport::default();
        let mut after = None;
        loop {
            let batch = self.store.purge(cutoffs, after, PAGE).await?;
            total.conversations += batch.report.conversations;
            total.quarantined += batch.report.quarantined;
            match batch.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        total.fetches = self.store.purge_dead_fetches(cutoffs.dead_before).await?;
        Ok(total)
    }

    /// Purges at start and every hour until `shutdown`.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) {
        if self.delivered.is_none() && self.dead.is_none() {
            return;
        }
        tokio::pin!(shutdown);
        loop {
            let now = Timestamp::now();
            let purged = match self.purge(now).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "retention purge failed; trying again later");
                    PurgeReport::default()
                }
            };
            let files = self.purge_outboxes(now).await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "retention: outbox files not purged; trying again later");
                0
            });
            if purged.conversations + purged.quarantined + files > 0 {
                tracing::info!(
                    conversations = purged.conversations,
                    quarantined = purged.quarantined,
                    files,
                    "retention: purged"
                );
                if let Err(e) = self.store.scrub().await {
                    tracing::error!(error = %e, "retention: the store's log still holds purged data; trying again later");
                }
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(RETENTION_EVERY) => {}
            }
        }
    }
}

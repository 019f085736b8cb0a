//! Retention and erasure on SQLite, in short batches that never hold the writer long.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::writer::Checkpoint;
use super::{SqliteStore, db};
use crate::store::{
    Blanked, ConversationCursor, Doomed, ERASED, ForgetBatch, ForgetReport, Maintenance,
    PurgeBatch, PurgeCutoffs, PurgeReport, StoreError, from_ms, ms,
};

/// Conversations first received before `?1`, after (`?2`, `?3`), oldest first, at most `?4`:
/// id, first received, last activity, pending and dead deliveries.
pub(super) const PURGE_PAGE: &str = "SELECT c.id, c.created_at,
        max(c.updated_at, coalesce((SELECT max(d.updated_at) FROM deliveries d WHERE d.conversation_id = c.id), 0)),
        (SELECT count(*) FROM deliveries d WHERE d.conversation_id = c.id AND d.state = 'pending'),
        (SELECT count(*) FROM deliveries d WHERE d.conversation_id = c.id AND d.state = 'dead')
     FROM conversations c
     WHERE c.created_at < ?1 AND (c.created_at, c.id) > (?2, ?3)
     ORDER BY c.created_at, c.id LIMIT ?4";

pub(super) fn purge(
    conn: &Connection,
    cutoffs: PurgeCutoffs,
    after: Option<&ConversationCursor>,
    limit: usize,
) -> Result<PurgeBatch, StoreError> {
    // Oldest first through the `(created_at, id)` index, from where the last batch stopped:
    // a conversation first received after the later cut-off cannot have expired.
    let (after_at, after_id) = after.map_or((i64::MIN, String::new()), |c| {
        (ms(c.received_at), c.id.clone())
    });
    let examined = conn
        .prepare_cached(PURGE_PAGE)
        .and_then(|mut s| {
            s.query_map(
                params![cutoffs.latest_ms(), after_at, after_id, limit as i64],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, u64>(3)?,
                        r.get::<_, u64>(4)?,
                    ))
                },
            )?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(db)?;
    let mut delete = conn
        .prepare_cached("DELETE FROM conversations WHERE id = ?1")
        .map_err(db)?;
    let mut report = PurgeReport::default();
    for (id, _, last_active, pending, dead) in &examined {
        if *pending == 0 && cutoffs.expired(*last_active, *dead) {
            report.conversations += delete.execute([id]).map_err(db)? as u64;
        }
    }
    let next = match examined.last() {
        Some((id, at, ..)) if examined.len() == limit => Some(ConversationCursor {
            received_at: from_ms(*at)?,
            id: id.clone(),
        }),
        _ => None,
    };
    if after.is_none() {
        report.quarantined = conn
            .prepare_cached("DELETE FROM quarantine WHERE received_at < ?1")
            .and_then(|mut s| s.execute([ms(cutoffs.dead_before)]))
            .map_err(db)? as u64;
    }
    Ok(PurgeBatch { report, next })
}

/// At most `?2` conversations whose bodies mention `?1`.
pub(super) const MENTIONED_IN_BODIES: &str =
    "SELECT conversation_id FROM mentions WHERE address = ?1 AND attempt_id = 0 LIMIT ?2";

/// At most `?2` conversations of the visitor with address `?1`.
pub(super) const OF_VISITOR: &str =
    "SELECT id FROM conversations WHERE visitor_email = ?1 COLLATE NOCASE LIMIT ?2";

/// At most `?2` attempts whose answer mentions `?1`, with their conversation.
pub(super) const MENTIONED_IN_ATTEMPTS: &str = "SELECT conversation_id, attempt_id FROM mentions WHERE address = ?1 AND attempt_id <> 0 LIMIT ?2";

pub(super) fn forget(
    conn: &Connection,
    needle: &str,
    limit: usize,
) -> Result<ForgetBatch, StoreError> {
    let limit = limit as i64;
    let ids = |sql: &str| -> Result<Vec<String>, StoreError> {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.query_map(params![needle, limit], |r| r.get(0))?.collect())
            .map_err(db)
    };
    let doomed = Doomed::of(limit as usize, ids(MENTIONED_IN_BODIES)?, ids(OF_VISITOR)?);
    let mut report = ForgetReport::default();
    for id in &doomed.ids {
        let count = |sql: &str| -> Result<u64, StoreError> {
            conn.prepare_cached(sql)
                .and_then(|mut s| s.query_row([id], |r| r.get(0)))
                .map_err(db)
        };
        report.versions +=
            count("SELECT count(*) FROM conversation_versions WHERE conversation_id = ?1")?;
        report.deliveries += count("SELECT count(*) FROM deliveries WHERE conversation_id = ?1")?;
        report.attempts += count(
            "SELECT count(*) FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE conversation_id = ?1)",
        )?;
        report.ledger_entries += count("SELECT count(*) FROM ledger WHERE conversation_id = ?1")?;
        report.conversations += conn
            .prepare_cached("DELETE FROM conversations WHERE id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(db)? as u64;
    }
    // Attempts of other conversations whose answer mentioned the address.
    let attempts: Vec<(String, i64)> = conn
        .prepare_cached(MENTIONED_IN_ATTEMPTS)
        .and_then(|mut s| {
            s.query_map(params![needle, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(db)?;
    let found_attempts = attempts.len();
    for (conversation, attempt) in attempts {
        // The attempt's delivery, and which of their texts mention the address.
        let found: Option<(i64, Blanked)> = conn
            .prepare_cached(
                "SELECT a.delivery_id, a.error, a.excerpt, d.last_error FROM attempts a
                 JOIN deliveries d ON d.id = a.delivery_id WHERE a.id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([attempt], |r| {
                    let text = |i: usize| r.get::<_, Option<String>>(i);
                    let (error, excerpt, last) = (text(1)?, text(2)?, text(3)?);
                    Ok((
                        r.get(0)?,
                        Blanked::of(
                            needle,
                            error.as_deref(),
                            excerpt.as_deref(),
                            last.as_deref(),
                        ),
                    ))
                })
                .optional()
            })
            .map_err(db)?;
        if let Some((delivery, blanked)) = found {
            conn.prepare_cached(
                "UPDATE attempts SET error = CASE WHEN ?2 THEN ?4 ELSE error END,
                                     excerpt = CASE WHEN ?3 THEN NULL ELSE excerpt END
                 WHERE id = ?1 AND (?2 OR ?3)",
            )
            .and_then(|mut s| s.execute(params![attempt, blanked.error, blanked.excerpt, ERASED]))
            .map_err(db)?;
            conn.prepare_cached("UPDATE deliveries SET last_error = ?2 WHERE id = ?1 AND ?3")
                .and_then(|mut s| s.execute(params![delivery, ERASED, blanked.last_error]))
                .map_err(db)?;
            report.excerpts_blanked += blanked.count();
        }
        conn.prepare_cached(
            "DELETE FROM mentions WHERE address = ?1 AND conversation_id = ?2 AND attempt_id = ?3",
        )
        .and_then(|mut s| s.execute(params![needle, conversation, attempt]))
        .map_err(db)?;
    }
    Ok(ForgetBatch {
        report,
        done: !doomed.more && found_attempts < limit as usize,
    })
}

#[async_trait]
impl Maintenance for SqliteStore {
    async fn purge(
        &self,
        cutoffs: PurgeCutoffs,
        after: Option<ConversationCursor>,
        limit: usize,
    ) -> Result<PurgeBatch, StoreError> {
        self.call(move |conn| purge(conn, cutoffs, after.as_ref(), limit.max(1)))
            .await
    }

    async fn forget(&self, email: &str, limit: usize) -> Result<ForgetBatch, StoreError> {
        let email = email.to_owned();
        self.call(move |conn| forget(conn, &email, limit.max(1)))
            .await
    }

    async fn scrub(&self) -> Result<(), StoreError> {
        let (done, finished) = oneshot::channel();
        let checkpoints = self.checkpoints.clone();
        // A full queue waits for the checkpointer; not on an async thread.
        tokio::task::spawn_blocking(move || checkpoints.send(Checkpoint::Truncate(done)))
            .await
            .map_err(|_| StoreError::Closed)?
            .map_err(|_| StoreError::Closed)?;
        finished.await.map_err(|_| StoreError::Closed)?
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.call(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(db))
            .await
    }
}

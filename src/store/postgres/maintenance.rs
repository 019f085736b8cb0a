//! Retention and erasure on PostgreSQL, in short transactions.

use async_trait::async_trait;

use super::{PostgresStore, column, count, pg};
use crate::store::{
    Blanked, ConversationCursor, Doomed, ERASED, ForgetBatch, ForgetReport, Maintenance,
    PurgeBatch, PurgeCutoffs, PurgeReport, StoreError, from_ms, ms,
};

#[async_trait]
impl Maintenance for PostgresStore {
    async fn purge(
        &self,
        cutoffs: PurgeCutoffs,
        after: Option<ConversationCursor>,
        limit: usize,
    ) -> Result<PurgeBatch, StoreError> {
        // Oldest first through the `(created_at, id)` index, from where the last batch
        // stopped: a conversation first received after the later cut-off cannot have expired.
        let (after_at, after_id) = after.as_ref().map_or((i64::MIN, String::new()), |c| {
            (ms(c.received_at), c.id.clone())
        });
        let page = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let examined = tx
            .query(
                "SELECT c.id, c.created_at,
                        greatest(c.updated_at, (SELECT max(d.updated_at) FROM deliveries d WHERE d.conversation_id = c.id)),
                        (SELECT count(*) FROM deliveries d WHERE d.conversation_id = c.id AND d.state = 'pending'),
                        (SELECT count(*) FROM deliveries d WHERE d.conversation_id = c.id AND d.state = 'dead')
                 FROM conversations c
                 WHERE c.created_at < $1 AND (c.created_at, c.id) > ($2, $3)
                 ORDER BY c.created_at, c.id LIMIT $4",
                &[&cutoffs.latest_ms(), &after_at, &after_id, &page],
            )
            .await
            .map_err(pg)?;
        let mut expired = Vec::new();
        for row in &examined {
            let pending: i64 = column(row, 3)?;
            if pending == 0 && cutoffs.expired(column(row, 2)?, count(column(row, 4)?)) {
                expired.push(column::<String>(row, 0)?);
            }
        }
        let mut report = PurgeReport {
            conversations: tx
                .execute("DELETE FROM conversations WHERE id = ANY($1)", &[&expired])
                .await
                .map_err(pg)?,
            quarantined: 0,
            fetches: 0,
        };
        if after.is_none() {
            report.quarantined = tx
                .execute(
                    "DELETE FROM quarantine WHERE received_at < $1",
                    &[&ms(cutoffs.dead_before)],
                )
                .await
                .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        let next = match examined.last() {
            Some(row) if examined.len() == limit.max(1) => Some(ConversationCursor {
                received_at: from_ms(column(row, 1)?)?,
                id: column(row, 0)?,
            }),
            _ => None,
        };
        Ok(PurgeBatch { report, next })
    }

    async fn forget(&self, email: &str, limit: usize) -> Result<ForgetBatch, StoreError> {
        let page = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let mut found: [Vec<String>; 2] = Default::default();
        for (sql, ids) in [
            "SELECT conversation_id FROM mentions WHERE address = $1 AND attempt_id = 0 LIMIT $2",
            "SELECT id FROM conversations WHERE lower(visitor_email) = $1 LIMIT $2",
        ]
        .into_iter()
        .zip(&mut found)
        {
            for row in tx.query(sql, &[&email, &page]).await.map_err(pg)? {
                ids.push(column(&row, 0)?);
            }
        }
        let [by_mention, by_visitor] = found;
        let doomed = Doomed::of(limit.max(1), by_mention, by_visitor);
        let count_of = |sql: &'static str| {
            let (tx, doomed) = (&tx, &doomed.ids);
            async move {
                let row = tx.query_one(sql, &[doomed]).await.map_err(pg)?;
                Ok::<_, StoreError>(count(column(&row, 0)?))
            }
        };
        let mut report = ForgetReport {
            versions: count_of("SELECT count(*) FROM conversation_versions WHERE conversation_id = ANY($1)").await?,
            deliveries: count_of("SELECT count(*) FROM deliveries WHERE conversation_id = ANY($1)").await?,
            attempts: count_of(
                "SELECT count(*) FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE conversation_id = ANY($1))",
            )
            .await?,
            ledger_entries: count_of("SELECT count(*) FROM ledger WHERE conversation_id = ANY($1)").await?,
            ..ForgetReport::default()
        };
        report.conversations = tx
            .execute(
                "DELETE FROM conversations WHERE id = ANY($1)",
                &[&doomed.ids],
            )
            .await
            .map_err(pg)?;
        // Attempts of other conversations whose answer mentioned the address.
        let attempts = tx
            .query(
                "SELECT m.conversation_id, m.attempt_id, a.delivery_id, a.error, a.excerpt, d.last_error
                 FROM mentions m LEFT JOIN attempts a ON a.id = m.attempt_id
                      LEFT JOIN deliveries d ON d.id = a.delivery_id
                 WHERE m.address = $1 AND m.attempt_id <> 0 LIMIT $2",
                &[&email, &page],
            )
            .await
            .map_err(pg)?;
        for row in &attempts {
            let (conversation, attempt): (String, i64) = (column(row, 0)?, column(row, 1)?);
            if let Some(delivery) = column::<Option<i64>>(row, 2)? {
                let blanked = Blanked::of(email, column(row, 3)?, column(row, 4)?, column(row, 5)?);
                tx.execute(
                    "UPDATE attempts SET error = CASE WHEN $2 THEN $4 ELSE error END,
                                         excerpt = CASE WHEN $3 THEN NULL ELSE excerpt END
                     WHERE id = $1 AND ($2 OR $3)",
                    &[&attempt, &blanked.error, &blanked.excerpt, &ERASED],
                )
                .await
                .map_err(pg)?;
                tx.execute(
                    "UPDATE deliveries SET last_error = $2 WHERE id = $1 AND $3",
                    &[&delivery, &ERASED, &blanked.last_error],
                )
                .await
                .map_err(pg)?;
                report.excerpts_blanked += blanked.count();
            }
            tx.execute(
                "DELETE FROM mentions WHERE address = $1 AND conversation_id = $2 AND attempt_id = $3",
                &[&email, &conversation, &attempt],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(ForgetBatch {
            report,
            done: !doomed.more && attempts.len() < limit.max(1),
        })
    }

    async fn scrub(&self) -> Result<(), StoreError> {
        // Deleted rows stay in their pages until VACUUM marks the space free and later
        // writes reuse it; nothing a session can run here overwrites them at once (VACUUM
        // FULL would, by rewriting whole tables under an exclusive lock). docs/deploy.md says
        // what an operator can do.
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client()
            .await?
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(pg)
    }
}

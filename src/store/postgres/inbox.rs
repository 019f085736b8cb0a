//! Ingest and quarantine on PostgreSQL: one transaction per request, the conversation's
//! row locked while its version is numbered.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use super::{PostgresStore, column, describe, pg};
use crate::model::delivery_key;
use crate::store::{
    Cause, Inbox, IngestOutcome, NewVersion, QuarantineRow, Quarantined, QuarantinedBody,
    StoreError, from_ms, ms,
};

/// A conversation's first version, `ingest`'s common case: the conversation row ($1 to $8),
/// the version ($9 to $12), the addresses it mentions ($13) and a delivery per connector
/// ($14, keys $15), in one statement, so one round trip and one commit. Answers 1, or 0
/// having written nothing when the conversation is already stored.
pub(super) const FIRST_VERSION: &str = "WITH conversation AS (
        INSERT INTO conversations (id, source, account_id, status, visitor_email, started_at, ended_at,
                                   latest_version, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8)
        ON CONFLICT (id) DO NOTHING
        RETURNING id),
     kept AS (
        INSERT INTO conversation_versions (conversation_id, version, body_sha256, codec, body, normalized, received_at)
        SELECT id, 1, $9, $10, $11, $12, $8 FROM conversation),
     noted AS (
        INSERT INTO mentions (address, conversation_id)
        SELECT a, id FROM conversation, unnest($13::text[]) AS a
        ON CONFLICT DO NOTHING),
     queued AS (
        INSERT INTO deliveries (conversation_id, version, connector, key, state, next_attempt_at,
                                created_at, updated_at)
        SELECT id, 1, q.c, q.k, 'pending', $8, $8, $8
        FROM conversation, unnest($14::text[], $15::text[]) AS q (c, k))
    SELECT count(*) FROM conversation";

#[async_trait]
impl Inbox for PostgresStore {
    async fn ingest(&self, new: NewVersion) -> Result<IngestOutcome, StoreError> {
        let c = &new.conversation;
        let id = c.id.as_str();
        let now = ms(new.received_at);
        let email = c.visitor.email.as_ref().map(|e| e.as_str());
        let (started, ended) = (c.started_at.map(ms), c.ended_at.map(ms));
        let status = c.status.as_str();
        let codec = i16::try_from(new.packed.codec).unwrap_or(i16::MAX);
        let keys: Vec<String> = new.connectors.iter().map(|c| delivery_key(c, id)).collect();
        // The conversation row's values, $1 to $8: its insert and a later version's update.
        let row: [&(dyn ToSql + Sync); 8] = [
            &id,
            &c.source,
            &c.account_id,
            &status,
            &email,
            &started,
            &ended,
            &now,
        ];
        let first_version: [&(dyn ToSql + Sync); 7] = [
            &new.body_sha256,
            &codec,
            &new.packed.body,
            &new.packed.normalized,
            &new.mentions,
            &new.connectors,
            &keys,
        ];
        let mut client = self.client().await?;
        // The common case, a conversation seen for the first time, is one statement: its
        // row, first version, mentions and deliveries, committed in one round trip. A
        // conversation already stored makes it insert nothing, and the transaction below
        // numbers the new version.
        let first = client.prepare_cached(FIRST_VERSION).await.map_err(pg)?;
        let params: Vec<&(dyn ToSql + Sync)> = row.iter().chain(&first_version).copied().collect();
        let created: i64 = column(
            &client
                .query_one(&first, &params)
                .await
                .map_err(|e| StoreError::Commit(Cause::described(describe(&e), e)))?,
            0,
        )?;
        if created == 1 {
            return Ok(IngestOutcome::Stored {
                version: 1,
                deliveries: new.connectors.len(),
                merged: 0,
            });
        }
        let tx = client.transaction().await.map_err(pg)?;
        let version = {
            // Locked until commit: concurrent versions of one chat are numbered in turn.
            let latest: i64 = match tx
                .query_opt(
                    "SELECT latest_version FROM conversations WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await
                .map_err(pg)?
            {
                Some(row) => column(&row, 0)?,
                None => {
                    return Err(StoreError::Database(
                        "the conversation was erased while this version was stored; send it again"
                            .into(),
                    ));
                }
            };
            let existing = tx
                .query_opt(
                    "SELECT version FROM conversation_versions WHERE conversation_id = $1 AND body_sha256 = $2",
                    &[&id, &new.body_sha256],
                )
                .await
                .map_err(pg)?;
            if let Some(row) = existing {
                tx.rollback().await.map_err(pg)?;
                return Ok(IngestOutcome::Duplicate {
                    version: column(&row, 0)?,
                });
            }
            let statement = tx
                .prepare_cached(
                    "UPDATE conversations SET source = $2, account_id = $3, status = $4, visitor_email = $5,
                            started_at = $6, ended_at = $7, latest_version = latest_version + 1, updated_at = $8
                     WHERE id = $1",
                )
                .await
                .map_err(pg)?;
            tx.execute(&statement, &row).await.map_err(pg)?;
            latest + 1
        };
        let (keep, note, bring_up, queue) = tokio::try_join!(
            tx.prepare_cached(
                "INSERT INTO conversation_versions (conversation_id, version, body_sha256, codec, body, normalized, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            ),
            tx.prepare_cached(
                "INSERT INTO mentions (address, conversation_id)
                 SELECT a, $2 FROM unnest($1::text[]) AS a ON CONFLICT DO NOTHING",
            ),
            tx.prepare_cached(
                // A waiting, unleased delivery of the same pair is brought up to this version
                // rather than queueing a second delivery of the same remote object.
                "UPDATE deliveries SET version = $1, updated_at = $2
                 WHERE conversation_id = $3 AND connector = $4 AND state = 'pending'
                   AND (lease_until IS NULL OR lease_until < $2)",
            ),
            tx.prepare_cached(
                "INSERT INTO deliveries (conversation_id, version, connector, key, state, next_attempt_at,
                                         created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'pending', $5, $5, $5)",
            ),
        )
        .map_err(pg)?;
        let kept: [&(dyn ToSql + Sync); 7] = [
            &id,
            &version,
            &new.body_sha256,
            &codec,
            &new.packed.body,
            &new.packed.normalized,
            &now,
        ];
        let noted: [&(dyn ToSql + Sync); 2] = [&new.mentions, &id];
        // Sent together: the driver pipelines them.
        tokio::try_join!(tx.execute(&keep, &kept), tx.execute(&note, &noted)).map_err(pg)?;
        let mut merged = 0;
        for (connector, key) in new.connectors.iter().zip(&keys) {
            let replaced = tx
                .execute(&bring_up, &[&version, &now, &id, connector])
                .await
                .map_err(pg)?;
            merged += usize::try_from(replaced).unwrap_or(usize::MAX);
            if replaced == 0 {
                tx.execute(&queue, &[&id, &version, connector, key, &now])
                    .await
                    .map_err(pg)?;
            }
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::Commit(Cause::described(describe(&e), e)))?;
        Ok(IngestOutcome::Stored {
            version,
            deliveries: new.connectors.len() - merged,
            merged,
        })
    }

    async fn quarantine(&self, item: Quarantined) -> Result<i64, StoreError> {
        let rows = self
            .query(
                "INSERT INTO quarantine (source, reason, body, content_type, received_at)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[
                    &item.source,
                    &item.reason,
                    &item.body,
                    &item.content_type,
                    &ms(item.received_at),
                ],
            )
            .await?;
        rows.first()
            .map(|r| column(r, 0))
            .unwrap_or_else(|| Err(StoreError::Corrupt("no quarantine id".into())))
    }

    async fn quarantined(&self, limit: usize) -> Result<Vec<QuarantineRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            "SELECT id, source, reason, length(body)::bigint, received_at FROM quarantine ORDER BY id DESC LIMIT $1",
            &[&limit],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(QuarantineRow {
                id: column(r, 0)?,
                source: column(r, 1)?,
                reason: column(r, 2)?,
                size: usize::try_from(column::<i64>(r, 3)?).unwrap_or_default(),
                received_at: from_ms(column(r, 4)?)?,
            })
        })
        .collect()
    }

    async fn quarantined_body(&self, id: i64) -> Result<Option<QuarantinedBody>, StoreError> {
        Ok(self.quarantined_where("id = $1", id, 1).await?.pop())
    }

    async fn quarantined_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<QuarantinedBody>, StoreError> {
        self.quarantined_where("id > $1", after, limit).await
    }

    async fn requarantine(&self, id: i64, reason: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE quarantine SET reason = $2 WHERE id = $1",
            &[&id, &reason],
        )
        .await
        .map(|_| ())
    }

    async fn drop_quarantined(&self, ids: &[i64]) -> Result<u64, StoreError> {
        self.execute("DELETE FROM quarantine WHERE id = ANY($1)", &[&ids])
            .await
    }
}

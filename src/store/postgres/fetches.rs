//! Fetch jobs on PostgreSQL, shared by every replica: a lease is taken with
//! `FOR UPDATE SKIP LOCKED`, so two replicas never fetch the same event at once.

use std::time::Duration;

use async_trait::async_trait;

use super::{PostgresStore, column, count};
use crate::model::Timestamp;
use crate::store::{
    Enqueued, FETCH_COLUMNS, FetchCount, FetchNext, FetchRow, FetchState, Fetches, LeasedFetch,
    NewFetch, StoreError, from_ms, ms,
};

#[async_trait]
impl Fetches for PostgresStore {
    async fn enqueue_fetch(&self, fetch: NewFetch) -> Result<Enqueued, StoreError> {
        let at = ms(fetch.received_at);
        let inserted = self
            .query(
                "INSERT INTO fetches (source, conversation_id, event, body, body_sha256, state, next_at, received_at)
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6)
                 ON CONFLICT (source, body_sha256) DO NOTHING RETURNING id",
                &[&fetch.source, &fetch.conversation_id, &fetch.event, &fetch.body, &fetch.body_sha256, &at],
            )
            .await?;
        if let Some(row) = inserted.first() {
            return Ok(Enqueued {
                id: column(row, 0)?,
                duplicate: false,
            });
        }
        let rows = self
            .query(
                "SELECT id FROM fetches WHERE source = $1 AND body_sha256 = $2",
                &[&fetch.source, &fetch.body_sha256],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("a fetch both conflicted and was missing".into()))?;
        Ok(Enqueued {
            id: column(row, 0)?,
            duplicate: true,
        })
    }

    async fn lease_fetches(
        &self,
        now: Timestamp,
        limit: usize,
        lease_for: Duration,
        sources: &[String],
    ) -> Result<Vec<LeasedFetch>, StoreError> {
        let (now, until) = (ms(now), ms(now.plus(lease_for)));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            "UPDATE fetches SET lease_until = $4 WHERE id IN (
                 SELECT id FROM fetches
                 WHERE state = 'pending' AND source = ANY($1) AND next_at <= $2
                   AND (lease_until IS NULL OR lease_until <= $2)
                 ORDER BY next_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id, source, conversation_id, body, attempts, received_at",
            &[&sources, &now, &limit, &until],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(LeasedFetch {
                id: column(r, 0)?,
                source: column(r, 1)?,
                conversation_id: column(r, 2)?,
                body: column(r, 3)?,
                attempts: u32::try_from(column::<i32>(r, 4)?).unwrap_or_default(),
                received_at: from_ms(column(r, 5)?)?,
            })
        })
        .collect()
    }

    async fn finish_fetch(
        &self,
        id: i64,
        now: Timestamp,
        next: FetchNext,
    ) -> Result<(), StoreError> {
        match next {
            FetchNext::Done => {
                self.execute("DELETE FROM fetches WHERE id = $1", &[&id])
                    .await?
            }
            FetchNext::RetryAt { at, counts, reason } => {
                self.execute(
                    "UPDATE fetches SET next_at = $2, attempts = attempts + $3, last_error = $4,
                     lease_until = NULL WHERE id = $1",
                    &[&id, &ms(at), &i32::from(counts), &reason],
                )
                .await?
            }
            FetchNext::Dead { reason } => {
                self.execute(
                    "UPDATE fetches SET state = 'dead', attempts = attempts + 1, last_error = $2,
                     next_at = $3, lease_until = NULL WHERE id = $1",
                    &[&id, &reason, &ms(now)],
                )
                .await?
            }
        };
        Ok(())
    }

    async fn next_fetch_due(&self, sources: &[String]) -> Result<Option<Timestamp>, StoreError> {
        let rows = self
            .query(
                "SELECT min(greatest(next_at, coalesce(lease_until, 0))) FROM fetches
                 WHERE state = 'pending' AND source = ANY($1)",
                &[&sources],
            )
            .await?;
        rows.first()
            .map(|r| column::<Option<i64>>(r, 0))
            .transpose()?
            .flatten()
            .map(from_ms)
            .transpose()
    }

    async fn fetches(
        &self,
        state: Option<FetchState>,
        source: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FetchRow>, StoreError> {
        let state = state.map(FetchState::as_str);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            &format!(
                "SELECT {FETCH_COLUMNS} FROM fetches
                 WHERE ($1::TEXT IS NULL OR state = $1) AND ($2::TEXT IS NULL OR source = $2)
                 ORDER BY id DESC LIMIT $3"
            ),
            &[&state, &source, &limit],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(FetchRow {
                id: column(r, 0)?,
                source: column(r, 1)?,
                conversation_id: column(r, 2)?,
                event: column(r, 3)?,
                state: FetchState::parse(&column::<String>(r, 4)?)
                    .map_err(|e| StoreError::Corrupt(e.into()))?,
                attempts: u32::try_from(column::<i32>(r, 5)?).unwrap_or_default(),
                next_at: from_ms(column(r, 6)?)?,
                last_error: column(r, 7)?,
                received_at: from_ms(column(r, 8)?)?,
            })
        })
        .collect()
    }

    async fn retry_fetches(&self, ids: &[i64], now: Timestamp) -> Result<u64, StoreError> {
        self.execute(
            "UPDATE fetches SET state = 'pending', next_at = $2, attempts = 0
             WHERE state = 'dead' AND (cardinality($1::BIGINT[]) = 0 OR id = ANY($1))",
            &[&ids, &ms(now)],
        )
        .await
    }

    async fn fetch_bodies_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            "SELECT id, body FROM fetches WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after, &limit],
        )
        .await?
        .iter()
        .map(|r| Ok((column(r, 0)?, column(r, 1)?)))
        .collect()
    }

    async fn drop_fetches(&self, ids: &[i64]) -> Result<u64, StoreError> {
        self.execute("DELETE FROM fetches WHERE id = ANY($1)", &[&ids])
            .await
    }

    async fn purge_dead_fetches(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM fetches WHERE state = 'dead' AND received_at < $1",
            &[&ms(before)],
        )
        .await
    }

    async fn fetch_counts(&self) -> Result<Vec<FetchCount>, StoreError> {
        self.query(
            "SELECT source, state, count(*) FROM fetches GROUP BY source, state",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(FetchCount {
                source: column(r, 0)?,
                state: FetchState::parse(&column::<String>(r, 1)?)
                    .map_err(|e| StoreError::Corrupt(e.into()))?,
                count: count(column(r, 2)?),
            })
        })
        .collect()
    }
}

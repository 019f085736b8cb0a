//! Fetch jobs on SQLite.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteStore, corrupt, db};
use crate::model::Timestamp;
use crate::store::{
    Enqueued, FETCH_COLUMNS, FetchCount, FetchNext, FetchRow, FetchState, Fetches, LeasedFetch,
    NewFetch, StoreError, from_ms, ms,
};

/// What is due, oldest first, of the sources in `?1` (a JSON array): pending, its time come,
/// and not leased by a live attempt.
const DUE: &str = "SELECT id FROM fetches
    WHERE state = 'pending' AND source IN (SELECT value FROM json_each(?1))
      AND next_at <= ?2 AND (lease_until IS NULL OR lease_until <= ?2)
    ORDER BY next_at, id LIMIT ?3";

#[async_trait]
impl Fetches for SqliteStore {
    async fn enqueue_fetch(&self, fetch: NewFetch) -> Result<Enqueued, StoreError> {
        self.call(move |conn| {
            let at = ms(fetch.received_at);
            let inserted: Option<i64> = conn
                .prepare_cached(
                    "INSERT INTO fetches (source, conversation_id, event, body, body_sha256, state, next_at, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6)
                     ON CONFLICT (source, body_sha256) DO NOTHING RETURNING id",
                )
                .and_then(|mut s| {
                    s.query_row(
                        params![fetch.source, fetch.conversation_id, fetch.event, fetch.body, fetch.body_sha256, at],
                        |r| r.get(0),
                    )
                    .optional()
                })
                .map_err(db)?;
            if let Some(id) = inserted {
                return Ok(Enqueued { id, duplicate: false });
            }
            let id = conn
                .prepare_cached("SELECT id FROM fetches WHERE source = ?1 AND body_sha256 = ?2")
                .and_then(|mut s| s.query_row(params![fetch.source, fetch.body_sha256], |r| r.get(0)))
                .map_err(db)?;
            Ok(Enqueued { id, duplicate: true })
        })
        .await
    }

    async fn lease_fetches(
        &self,
        now: Timestamp,
        limit: usize,
        lease_for: Duration,
        sources: &[String],
    ) -> Result<Vec<LeasedFetch>, StoreError> {
        let sources = serde_json::to_string(sources).map_err(corrupt)?;
        let (now, until) = (ms(now), ms(now.plus(lease_for)));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call_soft(move |conn| {
            let ids: Vec<i64> = conn
                .prepare_cached(DUE)
                .and_then(|mut s| {
                    s.query_map(params![sources, now, limit], |r| r.get(0))?
                        .collect()
                })
                .map_err(db)?;
            let mut take = conn
                .prepare_cached(
                    "UPDATE fetches SET lease_until = ?2 WHERE id = ?1
                     RETURNING id, source, conversation_id, body, attempts, received_at",
                )
                .map_err(db)?;
            ids.iter()
                .map(|id| {
                    let (id, source, conversation_id, body, attempts, received_at): (
                        i64,
                        String,
                        String,
                        Vec<u8>,
                        u32,
                        i64,
                    ) = take
                        .query_row(params![id, until], |r| {
                            Ok((
                                r.get(0)?,
                                r.get(1)?,
                                r.get(2)?,
                                r.get(3)?,
                                r.get(4)?,
                                r.get(5)?,
                            ))
                        })
                        .map_err(db)?;
                    Ok(LeasedFetch {
                        id,
                        source,
                        conversation_id,
                        body,
                        attempts,
                        received_at: from_ms(received_at)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn finish_fetch(
        &self,
        id: i64,
        now: Timestamp,
        next: FetchNext,
    ) -> Result<(), StoreError> {
        self.call(move |conn| {
            let done = match &next {
                FetchNext::Done => conn
                    .prepare_cached("DELETE FROM fetches WHERE id = ?1")
                    .and_then(|mut s| s.execute([id])),
                FetchNext::RetryAt { at, counts, reason } => conn
                    .prepare_cached(
                        "UPDATE fetches SET next_at = ?2, attempts = attempts + ?3, last_error = ?4,
                         lease_until = NULL WHERE id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![id, ms(*at), i64::from(*counts), reason])),
                FetchNext::Dead { reason } => conn
                    .prepare_cached(
                        "UPDATE fetches SET state = 'dead', attempts = attempts + 1, last_error = ?2,
                         next_at = ?3, lease_until = NULL WHERE id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![id, reason, ms(now)])),
            };
            done.map(|_| ()).map_err(db)
        })
        .await
    }

    async fn next_fetch_due(&self, sources: &[String]) -> Result<Option<Timestamp>, StoreError> {
        let sources = serde_json::to_string(sources).map_err(corrupt)?;
        self.read(move |conn| {
            let next: Option<i64> = conn
                .prepare_cached(
                    "SELECT min(max(next_at, coalesce(lease_until, 0))) FROM fetches
                     WHERE state = 'pending' AND source IN (SELECT value FROM json_each(?1))",
                )
                .and_then(|mut s| s.query_row([&sources], |r| r.get(0)))
                .map_err(db)?;
            next.map(from_ms).transpose()
        })
        .await
    }

    async fn fetches(
        &self,
        state: Option<FetchState>,
        source: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FetchRow>, StoreError> {
        let state = state.map(FetchState::as_str);
        let source = source.map(str::to_owned);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut rows = conn
                .prepare_cached(&format!(
                    "SELECT {FETCH_COLUMNS} FROM fetches
                     WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR source = ?2)
                     ORDER BY id DESC LIMIT ?3"
                ))
                .map_err(db)?;
            let found = rows
                .query_map(params![state, source, limit], |r| Ok(raw_row(r)))
                .map_err(db)?;
            found.map(|r| r.map_err(db).and_then(|row| row)).collect()
        })
        .await
    }

    async fn retry_fetches(&self, ids: &[i64], now: Timestamp) -> Result<u64, StoreError> {
        let ids = serde_json::to_string(ids).map_err(corrupt)?;
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE fetches SET state = 'pending', next_at = ?2, attempts = 0
                 WHERE state = 'dead'
                   AND (json_array_length(?1) = 0 OR id IN (SELECT value FROM json_each(?1)))",
            )
            .and_then(|mut s| s.execute(params![ids, ms(now)]))
            .map(|n| n as u64)
            .map_err(db)
        })
        .await
    }

    async fn fetch_bodies_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut page = conn
                .prepare_cached("SELECT id, body FROM fetches WHERE id > ?1 ORDER BY id LIMIT ?2")
                .map_err(db)?;
            let rows = page
                .query_map(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db)?;
            rows.map(|r| r.map_err(db)).collect()
        })
        .await
    }

    async fn drop_fetches(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let ids = serde_json::to_string(ids).map_err(corrupt)?;
        self.call(move |conn| {
            conn.prepare_cached("DELETE FROM fetches WHERE id IN (SELECT value FROM json_each(?1))")
                .and_then(|mut s| s.execute([&ids]))
                .map(|n| n as u64)
                .map_err(db)
        })
        .await
    }

    async fn purge_dead_fetches(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.call(move |conn| {
            conn.prepare_cached("DELETE FROM fetches WHERE state = 'dead' AND received_at < ?1")
                .and_then(|mut s| s.execute([ms(before)]))
                .map(|n| n as u64)
                .map_err(db)
        })
        .await
    }

    async fn fetch_counts(&self) -> Result<Vec<FetchCount>, StoreError> {
        self.read(|conn| {
            let mut counts = conn
                .prepare_cached(
                    "SELECT source, state, count(*) FROM fetches GROUP BY source, state",
                )
                .map_err(db)?;
            let rows = counts
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(db)?;
            rows.map(|row| {
                let (source, state, count) = row.map_err(db)?;
                Ok(FetchCount {
                    source,
                    state: FetchState::parse(&state).map_err(|e| StoreError::Corrupt(e.into()))?,
                    count: u64::try_from(count).unwrap_or_default(),
                })
            })
            .collect()
        })
        .await
    }
}

/// A [`FetchRow`] from the columns of [`FETCH_COLUMNS`].
fn raw_row(r: &Row<'_>) -> Result<FetchRow, StoreError> {
    let state: String = r.get(4).map_err(db)?;
    Ok(FetchRow {
        id: r.get(0).map_err(db)?,
        source: r.get(1).map_err(db)?,
        conversation_id: r.get(2).map_err(db)?,
        event: r.get(3).map_err(db)?,
        state: FetchState::parse(&state).map_err(|e| StoreError::Corrupt(e.into()))?,
        attempts: r.get(5).map_err(db)?,
        next_at: from_ms(r.get(6).map_err(db)?)?,
        last_error: r.get(7).map_err(db)?,
        received_at: from_ms(r.get(8).map_err(db)?)?,
    })
}

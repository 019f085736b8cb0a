//! The workers' queue on SQLite: leases read per connector from its own index range.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::schema::mention_in_attempt;
use super::{SqliteStore, corrupt, db, duration_ms};
use crate::model::{StepOutputs, Timestamp};
use crate::store::{
    AttemptRecord, Cause, LeasedDelivery, NextState, Packed, Queue, StoreError, from_ms, ms,
};

/// Connector `?1`'s pending deliveries due by `?2` and not leased at `?4`, oldest first, at
/// most `?3`: an index range read in order, stopped at the limit.
pub(super) const DUE_OF_CONNECTOR: &str =
    "SELECT d.id, d.next_attempt_at FROM deliveries d INDEXED BY deliveries_due_by_connector
     WHERE d.connector = ?1 AND d.state = 'pending' AND d.next_attempt_at <= ?2
       AND (d.lease_until IS NULL OR d.lease_until < ?4)
       AND NOT EXISTS (
           SELECT 1 FROM deliveries e
           WHERE e.conversation_id = d.conversation_id AND e.connector = d.connector
             AND e.state = 'pending' AND e.id < d.id)
     ORDER BY d.next_attempt_at, d.id LIMIT ?3";

pub(super) fn lease(
    conn: &Connection,
    now: i64,
    limit: usize,
    lease_until: i64,
    caps: &BTreeMap<String, usize>,
) -> Result<Vec<LeasedDelivery>, StoreError> {
    let mut candidates: Vec<(i64, i64)> = Vec::new();
    let mut due = conn.prepare_cached(DUE_OF_CONNECTOR).map_err(db)?;
    for (connector, &cap) in caps {
        let cap = cap.min(limit);
        if cap == 0 {
            continue;
        }
        let rows = due
            .query_map(params![connector, now, cap as i64, now], |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(0)?))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(db)?;
        candidates.extend(rows);
    }
    candidates.sort_unstable();
    candidates.truncate(limit);
    let mut take = conn
        .prepare_cached(
            "UPDATE deliveries SET lease_until = ?2 WHERE id = ?1
             RETURNING id, conversation_id, version, connector, key, attempts, failures, first_attempt_at, created_at",
        )
        .map_err(db)?;
    let mut leased = Vec::with_capacity(candidates.len());
    for (_, id) in candidates {
        let delivery = take
            .query_row(params![id, lease_until], |r| {
                Ok(LeasedDelivery {
                    id: r.get(0)?,
                    conversation_id: r.get(1)?,
                    version: r.get(2)?,
                    connector: r.get(3)?,
                    key: r.get(4)?,
                    attempts: r.get(5)?,
                    failures: r.get(6)?,
                    first_attempt_at: r
                        .get::<_, Option<i64>>(7)?
                        .and_then(Timestamp::from_unix_millis),
                    queued_at: Timestamp::from_unix_millis(r.get(8)?)
                        .ok_or(rusqlite::Error::IntegralValueOutOfRange(8, 0))?,
                    raw: Vec::new(),
                    normalized: String::new(),
                    completed: BTreeMap::new(),
                    ledger: StepOutputs::new(),
                })
            })
            .map_err(db)?;
        leased.push(delivery);
    }
    for delivery in &mut leased {
        let (codec, body, normalized) = conn
            .prepare_cached("SELECT codec, body, normalized FROM conversation_versions WHERE conversation_id = ?1 AND version = ?2")
            .and_then(|mut s| {
                s.query_row(params![delivery.conversation_id, delivery.version], |r| {
                    Ok((r.get(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?))
                })
            })
            .map_err(db)?;
        let (raw, normalized) = Packed::open(codec, body, normalized)?;
        delivery.raw = raw;
        delivery.normalized = normalized;
        delivery.ledger = conn
            .prepare_cached(
                "SELECT name, value FROM ledger WHERE conversation_id = ?1 AND connector = ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![delivery.conversation_id, delivery.connector], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db)?
            .into_iter()
            .map(|(name, value)| Ok((name, serde_json::from_str(&value).map_err(corrupt)?)))
            .collect::<Result<_, StoreError>>()?;
        let steps = conn
            .prepare_cached("SELECT step, outputs FROM delivery_steps WHERE delivery_id = ?1")
            .and_then(|mut s| {
                s.query_map([delivery.id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db)?;
        for (step, outputs) in steps {
            let outputs: StepOutputs = serde_json::from_str(&outputs).map_err(|e| {
                StoreError::Corrupt(Cause::described(format!("step outputs: {e}"), e))
            })?;
            delivery.completed.insert(step, outputs);
        }
    }
    Ok(leased)
}

pub(super) fn finish(
    conn: &Connection,
    id: i64,
    record: &AttemptRecord,
    mentions: &[String],
    next: &NextState,
) -> Result<(), StoreError> {
    let started = ms(record.started_at);
    conn.prepare_cached(
        "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, outcome, status, step, error, excerpt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            record.attempt,
            started,
            duration_ms(record.duration),
            record.outcome.as_str(),
            record.status,
            record.step,
            record.error,
            record.excerpt
        ])
    })
    .map_err(db)?;
    mention_in_attempt(conn, id, conn.last_insert_rowid(), mentions)?;
    let now = ms(Timestamp::now());
    if let NextState::Delivered { ledger, .. } = next {
        remember(conn, id, ledger, now)?;
    }
    let after = next.columns(now);
    conn.prepare_cached(
        "UPDATE deliveries SET state = ?2, attempts = attempts + 1, failures = failures + ?3,
                next_attempt_at = ?4, lease_until = NULL, first_attempt_at = COALESCE(first_attempt_at, ?5),
                last_error = ?6, remote = COALESCE(?7, remote), updated_at = ?8
         WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            after.state.as_str(),
            after.failures,
            after.next_attempt_at,
            started,
            after.error,
            after.remote,
            now
        ])
    })
    .map_err(db)?;
    Ok(())
}

/// Keeps `entries` in the ledger of delivery `id`'s conversation and connector.
pub(super) fn remember(
    conn: &Connection,
    id: i64,
    entries: &StepOutputs,
    now: i64,
) -> Result<(), StoreError> {
    for (name, value) in entries {
        conn.prepare_cached(
            "INSERT INTO ledger (conversation_id, connector, name, value, updated_at)
             SELECT conversation_id, connector, ?2, ?3, ?4 FROM deliveries WHERE id = ?1
             ON CONFLICT (conversation_id, connector, name) DO UPDATE SET
                value = excluded.value, updated_at = excluded.updated_at",
        )
        .and_then(|mut s| s.execute(params![id, name, value.to_string(), now]))
        .map_err(db)?;
    }
    Ok(())
}

#[async_trait]
impl Queue for SqliteStore {
    async fn lease_due(
        &self,
        now: Timestamp,
        limit: usize,
        lease_for: Duration,
        caps: &BTreeMap<String, usize>,
    ) -> Result<Vec<LeasedDelivery>, StoreError> {
        let caps = caps.clone();
        let until = ms(now.plus(lease_for));
        self.call_soft(move |conn| lease(conn, ms(now), limit, until, &caps))
            .await
    }

    async fn release(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let ids = serde_json::to_string(ids).map_err(corrupt)?;
        self.call_soft(move |conn| {
            conn.prepare_cached(
                "UPDATE deliveries SET lease_until = NULL
                 WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'pending'",
            )
            .and_then(|mut s| s.execute([&ids]))
            .map(|n| n as u64)
            .map_err(db)
        })
        .await
    }

    async fn next_due(&self, connectors: &[String]) -> Result<Option<Timestamp>, StoreError> {
        let connectors = connectors.to_vec();
        let now = ms(Timestamp::now());
        self.call_soft(move |conn| {
            // What the next lease would take first, per connector (a time in the past means
            // now), and when a lease held on a delivery runs out.
            let mut first = conn.prepare_cached(DUE_OF_CONNECTOR).map_err(db)?;
            let mut next: Option<i64> = conn
                .prepare_cached(
                    "SELECT min(lease_until) FROM deliveries WHERE state = 'pending' AND lease_until IS NOT NULL",
                )
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(db)?;
            for connector in &connectors {
                let at: Option<i64> = first
                    .query_row(params![connector, i64::MAX, 1, now], |r| r.get(1))
                    .optional()
                    .map_err(db)?;
                next = [next, at].into_iter().flatten().min();
            }
            next.map(from_ms).transpose()
        })
        .await
    }

    async fn complete_step(
        &self,
        delivery_id: i64,
        step: &str,
        outputs: &StepOutputs,
        remember: &StepOutputs,
    ) -> Result<(), StoreError> {
        let step = step.to_owned();
        let encoded = serde_json::to_string(outputs).map_err(corrupt)?;
        let remembered = remember.clone();
        self.call(move |conn| {
            let now = ms(Timestamp::now());
            conn.prepare_cached(
                "INSERT INTO delivery_steps (delivery_id, step, outputs, completed_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (delivery_id, step) DO UPDATE SET outputs = excluded.outputs, completed_at = excluded.completed_at",
            )
            .and_then(|mut s| s.execute(params![delivery_id, step, encoded, now]))
            .map_err(db)?;
            self::remember(conn, delivery_id, &remembered, now)
        })
        .await
    }

    async fn finish_attempt(
        &self,
        delivery_id: i64,
        record: AttemptRecord,
        next: NextState,
    ) -> Result<(), StoreError> {
        let mentions = record.mentions();
        self.call(move |conn| finish(conn, delivery_id, &record, &mentions, &next))
            .await
    }

    async fn renew(&self, ids: &[i64], until: Timestamp) -> Result<u64, StoreError> {
        let ids = serde_json::to_string(ids).map_err(corrupt)?;
        self.call_soft(move |conn| {
            conn.prepare_cached(
                "UPDATE deliveries SET lease_until = ?2
                 WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'pending' AND lease_until IS NOT NULL",
            )
            .and_then(|mut s| s.execute(params![ids, ms(until)]))
            .map(|n| n as u64)
            .map_err(db)
        })
        .await
    }

    async fn release_leases(&self) -> Result<u64, StoreError> {
        self.call(|conn| {
            let n = conn
                .execute("UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL AND state = 'pending'", [])
                .map_err(db)?;
            // Fetch jobs' leases too: a lease of a process that died.
            conn.execute("UPDATE fetches SET lease_until = NULL WHERE lease_until IS NOT NULL", [])
                .map_err(db)?;
            Ok(n as u64)
        })
        .await
    }
}

//! Deliveries as operators see them, on SQLite.

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::archive::{bound, placeholder};
use super::{SqliteStore, corrupt, db};
use crate::model::{Timestamp, delivery_key};
use crate::store::{
    AttemptOutcome, AttemptRow, ConnectorStats, Deliveries, DeliveryFilter, DeliveryRow,
    DeliveryState, FilterSql, ReplayReport, StoreError, from_ms, ms,
};

pub(super) fn delivery_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(DeliveryRow, String, i64, i64, i64, Option<String>)> {
    Ok((
        DeliveryRow {
            id: r.get(0)?,
            conversation_id: r.get(1)?,
            version: r.get(2)?,
            connector: r.get(3)?,
            key: r.get(4)?,
            state: DeliveryState::Pending,
            attempts: r.get(6)?,
            next_attempt_at: Timestamp::now(),
            last_error: r.get(8)?,
            remote: None,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        },
        r.get(5)?,
        r.get(7)?,
        r.get(10)?,
        r.get(11)?,
        r.get(9)?,
    ))
}

pub(super) fn replay(
    conn: &Connection,
    ids: &[String],
    connectors: &[String],
) -> Result<ReplayReport, StoreError> {
    let now = ms(Timestamp::now());
    let mut report = ReplayReport::default();
    for id in ids {
        let pairs: Vec<(String, bool)> = conn
            .prepare_cached(
                "SELECT connector, max(state = 'pending') FROM deliveries
                 WHERE conversation_id = ?1 AND connector IN (SELECT value FROM json_each(?2))
                 GROUP BY connector",
            )
            .and_then(|mut s| {
                s.query_map(
                    params![id, serde_json::to_string(connectors).unwrap_or_default()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect()
            })
            .map_err(db)?;
        for (connector, pending) in pairs {
            if pending {
                report.already_pending += 1;
                continue;
            }
            conn.prepare_cached("DELETE FROM ledger WHERE conversation_id = ?1 AND connector = ?2")
                .and_then(|mut s| s.execute(params![id, connector]))
                .map_err(db)?;
            let delivery = conn
                .prepare_cached(
                    "INSERT INTO deliveries (conversation_id, version, connector, key, state, next_attempt_at,
                                             created_at, updated_at)
                     SELECT id, latest_version, ?2, ?3, 'pending', ?4, ?4, ?4 FROM conversations WHERE id = ?1
                     RETURNING id",
                )
                .and_then(|mut s| s.query_row(params![id, connector, delivery_key(&connector, id), now], |r| r.get(0)))
                .map_err(db)?;
            report.queued.push(delivery);
        }
    }
    Ok(report)
}

/// Versions received since `?1`.
pub(super) const RECEIVED_SINCE: &str =
    "SELECT count(*) FROM conversation_versions WHERE received_at >= ?1";

/// The first connector after `?1` with a delivery in `state`.
pub(super) fn next_connector(state: DeliveryState) -> String {
    format!(
        "SELECT min(connector) FROM deliveries WHERE state = '{}' AND connector > ?1",
        state.as_str()
    )
}

/// Connector `?1`'s pending deliveries, those retried, and the oldest one's creation.
pub(super) const PENDING_OF: &str =
    "SELECT count(*), coalesce(sum(attempts > 0), 0), min(created_at) FROM deliveries
     WHERE state = 'pending' AND connector = ?1";

/// Connector `?1`'s deliveries that succeeded since `?2`.
pub(super) const DELIVERED_SINCE: &str = "SELECT count(*) FROM deliveries WHERE state = 'delivered' AND connector = ?1 AND updated_at >= ?2";

/// Connector `?1`'s dead deliveries, and those that died since `?2`.
pub(super) const DEAD_OF: &str =
    "SELECT count(*), coalesce(sum(updated_at >= ?2), 0) FROM deliveries
     WHERE state = 'dead' AND connector = ?1";

/// Each connector's queue and outcomes. Every figure is a range of one state's partial
/// index led by the connector, as are the connectors' names, walked one at a time: the
/// cost follows the queue and the day's deliveries, not the history kept.
pub(super) fn connector_stats(
    conn: &Connection,
    since: i64,
) -> Result<Vec<ConnectorStats>, StoreError> {
    let mut names = std::collections::BTreeSet::new();
    for state in [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Dead,
    ] {
        let mut next = conn.prepare_cached(&next_connector(state)).map_err(db)?;
        let mut after = String::new();
        while let Some(name) = next
            .query_row([&after], |r| r.get::<_, Option<String>>(0))
            .map_err(db)?
        {
            names.insert(name.clone());
            after = name;
        }
    }
    names
        .into_iter()
        .map(|connector| {
            let (pending, retrying, oldest): (u64, u64, Option<i64>) = conn
                .prepare_cached(PENDING_OF)
                .and_then(|mut s| {
                    s.query_row([&connector], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                })
                .map_err(db)?;
            let delivered: u64 = conn
                .prepare_cached(DELIVERED_SINCE)
                .and_then(|mut s| s.query_row(params![connector, since], |r| r.get(0)))
                .map_err(db)?;
            let (dead_total, dead): (u64, u64) = conn
                .prepare_cached(DEAD_OF)
                .and_then(|mut s| {
                    s.query_row(params![connector, since], |r| Ok((r.get(0)?, r.get(1)?)))
                })
                .map_err(db)?;
            Ok(ConnectorStats {
                connector,
                pending,
                retrying,
                oldest_pending: oldest.and_then(Timestamp::from_unix_millis),
                delivered,
                dead,
                dead_total,
            })
        })
        .collect()
}

#[async_trait]
impl Deliveries for SqliteStore {
    async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        let (conditions, mut values) = bound(FilterSql::deliveries(&filter, placeholder));
        let limit = if filter.limit == 0 {
            -1
        } else {
            filter.limit as i64
        };
        values.push(rusqlite::types::Value::Integer(limit));
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT id, conversation_id, version, connector, key, state, attempts, next_attempt_at, last_error,
                            remote, created_at, updated_at
                     FROM deliveries WHERE {conditions} ORDER BY id DESC LIMIT ?{}",
                    values.len()
                ))
                .and_then(|mut s| {
                    s.query_map(rusqlite::params_from_iter(values), delivery_row)?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(db)?;
            rows.into_iter()
                .map(|(mut row, state, next, created, updated, remote)| {
                    row.state = DeliveryState::parse(&state).map_err(|e| StoreError::Corrupt(e.into()))?;
                    row.next_attempt_at = from_ms(next)?;
                    row.created_at = from_ms(created)?;
                    row.updated_at = from_ms(updated)?;
                    row.remote = remote.and_then(|r| serde_json::from_str(&r).ok());
                    Ok(row)
                })
                .collect()
        })
        .await
    }

    async fn attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRow>, StoreError> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT attempt, started_at, duration_ms, outcome, status, step, error, excerpt
                     FROM attempts WHERE delivery_id = ?1 ORDER BY id",
                )
                .and_then(|mut s| {
                    s.query_map([delivery_id], |r| {
                        Ok((
                            r.get::<_, u32>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, Option<u16>>(4)?,
                            r.get::<_, Option<String>>(5)?,
                            r.get::<_, Option<String>>(6)?,
                            r.get::<_, Option<String>>(7)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()
                })
                .map_err(db)?;
            rows.into_iter()
                .map(
                    |(attempt, started, duration, outcome, status, step, error, excerpt)| {
                        Ok(AttemptRow {
                            attempt,
                            started_at: from_ms(started)?,
                            duration_ms: u64::try_from(duration).unwrap_or_default(),
                            outcome: AttemptOutcome::parse(&outcome)?,
                            status,
                            step,
                            error,
                            excerpt,
                        })
                    },
                )
                .collect()
        })
        .await
    }

    async fn retry(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let ids = serde_json::to_string(ids).map_err(corrupt)?;
        self.call(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE deliveries SET state = 'pending', failures = 0, first_attempt_at = NULL,
                            next_attempt_at = ?2, updated_at = ?2
                     WHERE state = 'dead' AND id IN (SELECT value FROM json_each(?1))",
                )
                .and_then(|mut s| s.execute(params![ids, ms(Timestamp::now())]))
                .map_err(db)?;
            Ok(n as u64)
        })
        .await
    }

    async fn replay(
        &self,
        conversation_ids: &[String],
        connectors: &[String],
    ) -> Result<ReplayReport, StoreError> {
        let ids = conversation_ids.to_vec();
        let connectors = connectors.to_vec();
        self.call(move |conn| replay(conn, &ids, &connectors)).await
    }

    async fn connector_stats(&self, since: Timestamp) -> Result<Vec<ConnectorStats>, StoreError> {
        self.read(move |conn| connector_stats(conn, ms(since)))
            .await
    }

    async fn received_since(&self, since: Timestamp) -> Result<u64, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(RECEIVED_SINCE)
                .and_then(|mut s| s.query_row([ms(since)], |r| r.get(0)))
                .map_err(db)
        })
        .await
    }
}

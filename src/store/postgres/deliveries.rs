//! Deliveries as operators see them, on PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use super::archive::{bound, placeholder};
use super::{PostgresStore, column, count, pg};
use crate::model::{Timestamp, delivery_key};
use crate::store::{
    AttemptOutcome, AttemptRow, ConnectorStats, Deliveries, DeliveryFilter, DeliveryRow,
    DeliveryState, FilterSql, ReplayReport, StoreError, from_ms, ms,
};

/// A replay's page in one statement: of the (conversation, connector, key) triples $1 to $3,
/// the pairs delivered before are queued again at the conversation's latest version, due at
/// $4, their ledger cleared (what the connector made is looked up again, not assumed);
/// pairs with a delivery still pending are counted and left alone. Answers that count and
/// the new deliveries' ids.
pub(super) const REPLAY: &str = "WITH pairs AS (
        SELECT w.conversation_id, w.connector, w.key, bool_or(d.state = 'pending') AS pending
        FROM unnest($1::text[], $2::text[], $3::text[]) AS w (conversation_id, connector, key)
        JOIN deliveries d ON d.conversation_id = w.conversation_id AND d.connector = w.connector
        GROUP BY w.conversation_id, w.connector, w.key),
     cleared AS (
        DELETE FROM ledger l USING pairs p
        WHERE NOT p.pending AND l.conversation_id = p.conversation_id AND l.connector = p.connector),
     queued AS (
        INSERT INTO deliveries (conversation_id, version, connector, key, state, next_attempt_at,
                                created_at, updated_at)
        SELECT c.id, c.latest_version, p.connector, p.key, 'pending', $4, $4, $4
        FROM pairs p JOIN conversations c ON c.id = p.conversation_id
        WHERE NOT p.pending
        RETURNING id)
    SELECT (SELECT count(*) FROM pairs WHERE pending), ARRAY(SELECT id FROM queued ORDER BY id)";

pub(super) fn delivery_row(r: &tokio_postgres::Row) -> Result<DeliveryRow, StoreError> {
    let state: String = column(r, 5)?;
    let remote: Option<String> = column(r, 9)?;
    Ok(DeliveryRow {
        id: column(r, 0)?,
        conversation_id: column(r, 1)?,
        version: column(r, 2)?,
        connector: column(r, 3)?,
        key: column(r, 4)?,
        state: DeliveryState::parse(&state).map_err(|e| StoreError::Corrupt(e.into()))?,
        attempts: u32::try_from(column::<i32>(r, 6)?).unwrap_or_default(),
        next_attempt_at: from_ms(column(r, 7)?)?,
        last_error: column(r, 8)?,
        remote: remote.and_then(|r| serde_json::from_str(&r).ok()),
        created_at: from_ms(column(r, 10)?)?,
        updated_at: from_ms(column(r, 11)?)?,
    })
}

#[async_trait]
impl Deliveries for PostgresStore {
    async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        let (conditions, mut values) = bound(FilterSql::deliveries(&filter, placeholder));
        let limit = (filter.limit > 0).then(|| i64::try_from(filter.limit).unwrap_or(i64::MAX));
        values.push(Box::new(limit));
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as _).collect();
        self.query(
            &format!(
                "SELECT id, conversation_id, version, connector, key, state, attempts, next_attempt_at, last_error,
                        remote, created_at, updated_at
                 FROM deliveries WHERE {conditions} ORDER BY id DESC LIMIT ${}",
                params.len()
            ),
            &params,
        )
        .await?
        .iter()
        .map(delivery_row)
        .collect()
    }

    async fn attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRow>, StoreError> {
        self.query(
            "SELECT attempt, started_at, duration_ms, outcome, status, step, error, excerpt
             FROM attempts WHERE delivery_id = $1 ORDER BY id",
            &[&delivery_id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(AttemptRow {
                attempt: u32::try_from(column::<i32>(r, 0)?).unwrap_or_default(),
                started_at: from_ms(column(r, 1)?)?,
                duration_ms: u64::try_from(column::<i64>(r, 2)?).unwrap_or_default(),
                outcome: AttemptOutcome::parse(&column::<String>(r, 3)?)?,
                status: column::<Option<i32>>(r, 4)?.and_then(|s| u16::try_from(s).ok()),
                step: column(r, 5)?,
                error: column(r, 6)?,
                excerpt: column(r, 7)?,
            })
        })
        .collect()
    }

    async fn retry(&self, ids: &[i64]) -> Result<u64, StoreError> {
        self.execute(
            "UPDATE deliveries SET state = 'pending', failures = 0, first_attempt_at = NULL,
                    next_attempt_at = $2, updated_at = $2
             WHERE state = 'dead' AND id = ANY($1)",
            &[&ids, &ms(Timestamp::now())],
        )
        .await
    }

    async fn replay(
        &self,
        conversation_ids: &[String],
        connectors: &[String],
    ) -> Result<ReplayReport, StoreError> {
        let now = ms(Timestamp::now());
        // Every (conversation, connector) pair asked for, with its delivery key: the
        // statement keeps those that were delivered before and have nothing pending.
        let (mut ids, mut names, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        for id in conversation_ids {
            for connector in connectors {
                keys.push(delivery_key(connector, id));
                ids.push(id.as_str());
                names.push(connector.as_str());
            }
        }
        let client = self.client().await?;
        let statement = client.prepare_cached(REPLAY).await.map_err(pg)?;
        let row = client
            .query_one(&statement, &[&ids, &names, &keys, &now])
            .await
            .map_err(pg)?;
        Ok(ReplayReport {
            already_pending: count(column(&row, 0)?),
            queued: column(&row, 1)?,
        })
    }

    async fn connector_stats(&self, since: Timestamp) -> Result<Vec<ConnectorStats>, StoreError> {
        // Every figure is a range of one state's partial index led by the connector, as are
        // the connectors' names, walked one at a time: the cost follows the queue and the
        // day's deliveries, not the history kept.
        let client = self.client().await?;
        let mut names = std::collections::BTreeSet::new();
        for state in [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Dead,
        ] {
            let next = client
                .prepare_cached(&format!(
                    "SELECT min(connector) FROM deliveries WHERE state = '{}' AND connector > $1",
                    state.as_str()
                ))
                .await
                .map_err(pg)?;
            let mut after = String::new();
            while let Some(name) = client
                .query_one(&next, &[&after])
                .await
                .map_err(pg)?
                .get::<_, Option<String>>(0)
            {
                names.insert(name.clone());
                after = name;
            }
        }
        let since = ms(since);
        let mut stats = Vec::with_capacity(names.len());
        for connector in names {
            let (one, two): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 2]) =
                ([&connector], [&connector, &since]);
            let (pending, delivered, dead) = tokio::try_join!(
                client.query_one(
                    "SELECT count(*), count(*) FILTER (WHERE attempts > 0), min(created_at) FROM deliveries
                     WHERE state = 'pending' AND connector = $1",
                    &one,
                ),
                client.query_one(
                    "SELECT count(*) FROM deliveries WHERE state = 'delivered' AND connector = $1 AND updated_at >= $2",
                    &two,
                ),
                client.query_one(
                    "SELECT count(*), count(*) FILTER (WHERE updated_at >= $2) FROM deliveries
                     WHERE state = 'dead' AND connector = $1",
                    &two,
                ),
            )
            .map_err(pg)?;
            stats.push(ConnectorStats {
                connector,
                pending: count(column(&pending, 0)?),
                retrying: count(column(&pending, 1)?),
                oldest_pending: column::<Option<i64>>(&pending, 2)?
                    .and_then(Timestamp::from_unix_millis),
                delivered: count(column(&delivered, 0)?),
                dead: count(column(&dead, 1)?),
                dead_total: count(column(&dead, 0)?),
            });
        }
        Ok(stats)
    }

    async fn received_since(&self, since: Timestamp) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM conversation_versions WHERE received_at >= $1",
            &[&ms(since)],
        )
        .await
    }
}

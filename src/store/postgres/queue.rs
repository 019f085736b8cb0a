//! The workers' queue on PostgreSQL: leases with `FOR UPDATE SKIP LOCKED`, per connector.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use super::{PostgresStore, column, corrupt, pg};
use crate::model::{StepOutputs, Timestamp};
use crate::store::{
    AttemptRecord, Cause, LeasedDelivery, NextState, Packed, Queue, StoreError, from_ms, ms,
};

/// Connector `$1`'s deliveries that may be leased: pending, due by `$2`, not leased by a
/// live process at `$4`, and the oldest pending one of its (conversation, connector) pair,
/// so one pair's deliveries run one at a time, in order. At most `$3`, oldest first: the
/// connector's range of the due index read in order and stopped at the limit.
///
/// `OFFSET 0` keeps the older-sibling check a subplan run per candidate, one lookup in
/// `deliveries_conversation`. Without it the planner makes it an anti-join, and on a table whose
/// statistics are young (a new deployment's first burst, before autoanalyze) it chose to
/// scan the connector's whole pending range once per candidate: 313 ms per lease with 8,000
/// pending, against 0.45 ms.
pub(super) const DUE_OF_CONNECTOR: &str = "SELECT d.id, d.next_attempt_at FROM deliveries d
    WHERE d.connector = $1 AND d.state = 'pending' AND d.next_attempt_at <= $2
      AND (d.lease_until IS NULL OR d.lease_until < $4)
      AND NOT EXISTS (
          SELECT 1 FROM deliveries e
          WHERE e.conversation_id = d.conversation_id AND e.connector = d.connector
            AND e.state = 'pending' AND e.id < d.id
          OFFSET 0)
    ORDER BY d.next_attempt_at, d.id LIMIT $3";

/// Keeps `entries` in the ledger of delivery `id`'s conversation and connector.
pub(super) async fn remember(
    tx: &deadpool_postgres::Transaction<'_>,
    id: i64,
    entries: &StepOutputs,
    now: i64,
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(
            "INSERT INTO ledger (conversation_id, connector, name, value, updated_at)
             SELECT conversation_id, connector, $2, $3, $4 FROM deliveries WHERE id = $1
             ON CONFLICT (conversation_id, connector, name) DO UPDATE SET
                value = excluded.value, updated_at = excluded.updated_at",
        )
        .await
        .map_err(pg)?;
    for (name, value) in entries {
        tx.execute(&statement, &[&id, name, &value.to_string(), &now])
            .await
            .map_err(pg)?;
    }
    Ok(())
}

#[async_trait]
impl Queue for PostgresStore {
    async fn lease_due(
        &self,
        now: Timestamp,
        limit: usize,
        lease_for: Duration,
        caps: &BTreeMap<String, usize>,
    ) -> Result<Vec<LeasedDelivery>, StoreError> {
        let (now, until) = (ms(now), ms(now.plus(lease_for)));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // A lease lost in a crash of the server only lets the delivery be leased again: its
        // commit need not wait for the WAL to reach the disk.
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await
            .map_err(pg)?;
        // Each connector's query walks its range of the due index in order, locks what it
        // takes, skips rows another replica is leasing right now (they do not count towards
        // the limit), and stops: a lease costs what it takes, however long the queue. The
        // oldest `limit` of all that are taken; the other locked rows are let go at commit.
        let due = tx
            .prepare_cached(&format!("{DUE_OF_CONNECTOR} FOR UPDATE SKIP LOCKED"))
            .await
            .map_err(pg)?;
        let mut candidates: Vec<(i64, i64)> = Vec::new();
        for (connector, &cap) in caps {
            let cap = i64::try_from(cap).unwrap_or(i64::MAX).min(limit);
            if cap == 0 {
                continue;
            }
            for row in tx
                .query(&due, &[connector, &now, &cap, &now])
                .await
                .map_err(pg)?
            {
                candidates.push((column(&row, 1)?, column(&row, 0)?));
            }
        }
        candidates.sort_unstable();
        let ids: Vec<i64> = candidates
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|(_, id)| id)
            .collect();
        let statement = tx
            .prepare_cached(
                "UPDATE deliveries SET lease_until = $1 WHERE id = ANY($2)
                 RETURNING id, conversation_id, version, connector, key, attempts, failures,
                           first_attempt_at, created_at",
            )
            .await
            .map_err(pg)?;
        let rows = tx.query(&statement, &[&until, &ids]).await.map_err(pg)?;
        let mut leased = Vec::with_capacity(rows.len());
        for r in &rows {
            leased.push(LeasedDelivery {
                id: column(r, 0)?,
                conversation_id: column(r, 1)?,
                version: column(r, 2)?,
                connector: column(r, 3)?,
                key: column(r, 4)?,
                attempts: u32::try_from(column::<i32>(r, 5)?).unwrap_or_default(),
                failures: u32::try_from(column::<i32>(r, 6)?).unwrap_or_default(),
                first_attempt_at: column::<Option<i64>>(r, 7)?
                    .and_then(Timestamp::from_unix_millis),
                queued_at: from_ms(column(r, 8)?)?,
                raw: Vec::new(),
                normalized: String::new(),
                completed: BTreeMap::new(),
                ledger: StepOutputs::new(),
            });
        }
        leased.sort_by_key(|d| d.id);
        // What each attempt needs, in one query per table for the whole batch.
        let ids: Vec<i64> = leased.iter().map(|d| d.id).collect();
        let conversations: Vec<String> = leased.iter().map(|d| d.conversation_id.clone()).collect();
        let versions: Vec<i64> = leased.iter().map(|d| d.version).collect();
        let connectors: Vec<String> = leased.iter().map(|d| d.connector.clone()).collect();
        let index: std::collections::HashMap<i64, usize> =
            ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        // Sent together: the driver pipelines them, one round trip for the three.
        let (bodies, ledger, steps) = tokio::try_join!(
            tx.prepare_cached(
                "SELECT w.id, v.codec, v.body, v.normalized
                 FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS w (id, conversation_id, version)
                 JOIN conversation_versions v ON v.conversation_id = w.conversation_id AND v.version = w.version",
            ),
            tx.prepare_cached(
                "SELECT w.id, l.name, l.value
                 FROM unnest($1::bigint[], $2::text[], $3::text[]) AS w (id, conversation_id, connector)
                 JOIN ledger l ON l.conversation_id = w.conversation_id AND l.connector = w.connector",
            ),
            tx.prepare_cached(
                "SELECT delivery_id, step, outputs FROM delivery_steps WHERE delivery_id = ANY($1)",
            ),
        )
        .map_err(pg)?;
        let by_version: [&(dyn ToSql + Sync); 3] = [&ids, &conversations, &versions];
        let by_connector: [&(dyn ToSql + Sync); 3] = [&ids, &conversations, &connectors];
        let by_delivery: [&(dyn ToSql + Sync); 1] = [&ids];
        let (bodies, ledger, steps) = tokio::try_join!(
            tx.query(&bodies, &by_version),
            tx.query(&ledger, &by_connector),
            tx.query(&steps, &by_delivery),
        )
        .map_err(pg)?;
        for row in bodies {
            let delivery = &mut leased[index[&column::<i64>(&row, 0)?]];
            (delivery.raw, delivery.normalized) = Packed::open(
                column::<i16>(&row, 1)?.into(),
                column(&row, 2)?,
                column(&row, 3)?,
            )?;
        }
        for row in ledger {
            let value: String = column(&row, 2)?;
            leased[index[&column::<i64>(&row, 0)?]].ledger.insert(
                column(&row, 1)?,
                serde_json::from_str(&value).map_err(corrupt)?,
            );
        }
        for row in steps {
            let outputs: String = column(&row, 2)?;
            let outputs: StepOutputs = serde_json::from_str(&outputs).map_err(|e| {
                StoreError::Corrupt(Cause::described(format!("step outputs: {e}"), e))
            })?;
            leased[index[&column::<i64>(&row, 0)?]]
                .completed
                .insert(column(&row, 1)?, outputs);
        }
        tx.commit().await.map_err(pg)?;
        Ok(leased)
    }

    async fn release(&self, ids: &[i64]) -> Result<u64, StoreError> {
        self.execute(
            "UPDATE deliveries SET lease_until = NULL WHERE id = ANY($1) AND state = 'pending'",
            &[&ids],
        )
        .await
    }

    async fn next_due(&self, connectors: &[String]) -> Result<Option<Timestamp>, StoreError> {
        let now = ms(Timestamp::now());
        let client = self.client().await?;
        // What the next lease would take first, per connector (a time in the past means now),
        // and when a lease held on a delivery runs out: another replica's, perhaps dead.
        let leases = client
            .prepare_cached(
                "SELECT min(lease_until) FROM deliveries WHERE state = 'pending' AND lease_until IS NOT NULL",
            )
            .await
            .map_err(pg)?;
        let mut next: Option<i64> = column(&client.query_one(&leases, &[]).await.map_err(pg)?, 0)?;
        let first = client.prepare_cached(DUE_OF_CONNECTOR).await.map_err(pg)?;
        for connector in connectors {
            if let Some(row) = client
                .query_opt(&first, &[connector, &i64::MAX, &1_i64, &now])
                .await
                .map_err(pg)?
            {
                next = [next, Some(column(&row, 1)?)].into_iter().flatten().min();
            }
        }
        next.map(from_ms).transpose()
    }

    async fn complete_step(
        &self,
        delivery_id: i64,
        step: &str,
        outputs: &StepOutputs,
        remembered: &StepOutputs,
    ) -> Result<(), StoreError> {
        let encoded = serde_json::to_string(outputs).map_err(corrupt)?;
        let now = ms(Timestamp::now());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            "INSERT INTO delivery_steps (delivery_id, step, outputs, completed_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (delivery_id, step) DO UPDATE SET outputs = excluded.outputs, completed_at = excluded.completed_at",
            &[&delivery_id, &step, &encoded, &now],
        )
        .await
        .map_err(pg)?;
        remember(&tx, delivery_id, remembered, now).await?;
        tx.commit().await.map_err(pg)
    }

    async fn finish_attempt(
        &self,
        id: i64,
        record: AttemptRecord,
        next: NextState,
    ) -> Result<(), StoreError> {
        let started = ms(record.started_at);
        let now = ms(Timestamp::now());
        let after = next.columns(now);
        // One statement records the attempt and moves the delivery on: one round trip and
        // an implicit transaction, unless ledger entries are kept with it.
        // What the answer mentions is indexed with it, but for the addresses the
        // conversation's own bodies mention (erasing those takes the whole conversation).
        let sql = "WITH attempt AS (
                INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, outcome, status, step, error, excerpt)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id),
             noted AS (
                INSERT INTO mentions (address, conversation_id, attempt_id)
                SELECT a, d.conversation_id, attempt.id FROM attempt, deliveries d, unnest($16::text[]) AS a
                WHERE d.id = $1 AND NOT EXISTS (SELECT 1 FROM mentions m
                      WHERE m.address = a AND m.conversation_id = d.conversation_id AND m.attempt_id = 0)
                ON CONFLICT DO NOTHING)
             UPDATE deliveries SET state = $10, attempts = attempts + 1, failures = failures + $11,
                    next_attempt_at = $12, lease_until = NULL, first_attempt_at = coalesce(first_attempt_at, $3),
                    last_error = $13, remote = coalesce($14, remote), updated_at = $15
             WHERE id = $1";
        let attempt = i32::try_from(record.attempt).unwrap_or(i32::MAX);
        let duration = i64::try_from(record.duration.as_millis()).unwrap_or(i64::MAX);
        let status = record.status.map(i32::from);
        let mentions = record.mentions();
        let params: [&(dyn ToSql + Sync); 16] = [
            &id,
            &attempt,
            &started,
            &duration,
            &record.outcome.as_str(),
            &status,
            &record.step,
            &record.error,
            &record.excerpt,
            &after.state.as_str(),
            &after.failures,
            &after.next_attempt_at,
            &after.error,
            &after.remote,
            &now,
            &mentions,
        ];
        let mut client = self.client().await?;
        match &next {
            NextState::Delivered { ledger, .. } if !ledger.is_empty() => {
                let tx = client.transaction().await.map_err(pg)?;
                remember(&tx, id, ledger, now).await?;
                let statement = tx.prepare_cached(sql).await.map_err(pg)?;
                tx.execute(&statement, &params).await.map_err(pg)?;
                tx.commit().await.map_err(pg)
            }
            _ => {
                let statement = client.prepare_cached(sql).await.map_err(pg)?;
                client.execute(&statement, &params).await.map_err(pg)?;
                Ok(())
            }
        }
    }

    async fn renew(&self, ids: &[i64], until: Timestamp) -> Result<u64, StoreError> {
        self.execute(
            "UPDATE deliveries SET lease_until = $2
             WHERE id = ANY($1) AND state = 'pending' AND lease_until IS NOT NULL",
            &[&ids, &ms(until)],
        )
        .await
    }

    async fn release_leases(&self) -> Result<u64, StoreError> {
        // Several replicas share the queue: only leases that have run out are this
        // process's to hand back; a live replica's leases stay with it.
        self.execute(
            "UPDATE deliveries SET lease_until = NULL
             WHERE lease_until IS NOT NULL AND lease_until < $1 AND state = 'pending'",
            &[&ms(Timestamp::now())],
        )
        .await
    }
}

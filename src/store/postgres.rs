//! The store for several replicas: PostgreSQL, chosen by `store.url = "postgres://..."`.
//!
//! Every replica runs the same queries on one database; correctness never depends on which
//! replica does what:
//!
//! - Ingest is one transaction per request. A conversation's row is locked (`FOR UPDATE`)
//!   before a later version is numbered, so two replicas receiving versions of one chat at
//!   once number them one after the other. PostgreSQL's own group commit shares the fsync
//!   of concurrent commits, which the SQLite store has to do by hand.
//! - Deliveries are leased with `FOR UPDATE SKIP LOCKED` and a lease expiry: replicas never
//!   wait for each other's rows, a row leased by one is skipped by the others (the lease
//!   condition is checked again on the locked row), and the lease of a replica that died
//!   mid-attempt expires, after which another replica takes the delivery over. A lease walks
//!   each connector's range of the due index and stops at what it takes, so its cost does not
//!   grow with the queue; what the attempts need is then read in one query per table.
//! - Migrations run at start under an advisory lock on a connection of their own, so
//!   replicas started together apply them once; the lock goes with the connection.
//!
//! Times are Unix milliseconds in `BIGINT` columns, as in the SQLite store. Connections come
//! from a pool (`store.max_connections`); when the database is down, calls fail with
//! [`StoreError::Database`], which ingest answers 503 so the source sends again.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    AttemptOutcome, AttemptRecord, AttemptRow, Blanked, ConnectorStats, ConversationCursor,
    ConversationFilter, ConversationRow, DeliveryFilter, DeliveryRow, DeliveryState, Doomed,
    ERASED, FilterSql, FilterValue, ForgetBatch, ForgetReport, IngestOutcome, LeasedDelivery,
    NewSession, NewVersion, NextState, Packed, PurgeBatch, PurgeCutoffs, PurgeReport,
    QuarantineRow, Quarantined, QuarantinedBody, ReplayReport, StateCounts, Store, StoreError,
    VersionRow, from_ms, ms,
};
use crate::model::{StepOutputs, Timestamp, delivery_key};

/// Migrations in order; `chatbridge_migrations` records which have run.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/postgres/0001_init.sql"),
    include_str!("migrations/postgres/0002_leased.sql"),
    include_str!("migrations/postgres/0003_sessions.sql"),
    include_str!("migrations/postgres/0004_email_listing.sql"),
    include_str!("migrations/postgres/0005_mentions_and_counts.sql"),
    include_str!("migrations/postgres/0006_packed_versions.sql"),
    include_str!("migrations/postgres/0007_fewer_queue_indexes.sql"),
];

/// The migration that creates `mentions`: in its transaction, what was stored before is
/// indexed too.
const MENTIONS_MIGRATION: i32 = 5;

/// Rows read per page while indexing what stored rows mention.
const INDEX_PAGE: i64 = 500;

/// The advisory lock held while migrating (any fixed number; this one spells "chatbrdg").
const MIGRATION_LOCK: i64 = 0x6368_6174_6272_6467;

/// A PostgreSQL-backed [`Store`]. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: show the pool's size only.
        f.debug_struct("PostgresStore")
            .field("max_connections", &self.pool.status().max_size)
            .finish()
    }
}

impl PostgresStore {
    /// Connects, applies migrations (once, whatever the number of replicas starting), and
    /// keeps a pool of at most `max_connections`.
    ///
    /// # Errors
    /// When the URL is invalid, the server cannot be reached, or a migration fails.
    pub async fn open(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let (config, tls) = super::postgres_tls::connect_config(url)?;
        migrate(&config, tls.clone()).await?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .wait_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Open(e.to_string()))?;
        Ok(Self { pool })
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Database(format!("no connection to PostgreSQL: {e}")))
    }

    /// Runs one statement; the number of rows it touched.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg)?;
        client.execute(&statement, params).await.map_err(pg)
    }

    /// Runs a `SELECT count(*) ...`; the count.
    async fn count(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let rows = self.query(sql, params).await?;
        Ok(rows
            .first()
            .map(|r| column::<i64>(r, 0))
            .transpose()?
            .map_or(0, count))
    }

    /// Runs one query; its rows.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg)?;
        client.query(&statement, params).await.map_err(pg)
    }

    /// Quarantined bodies matching `condition` on `$1`, oldest first.
    async fn quarantined_where(
        &self,
        condition: &str,
        value: i64,
        limit: usize,
    ) -> Result<Vec<QuarantinedBody>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            &format!(
                "SELECT id, source, reason, body, content_type, received_at FROM quarantine
                 WHERE {condition} ORDER BY id LIMIT $2"
            ),
            &[&value, &limit],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(QuarantinedBody {
                id: column(r, 0)?,
                item: Quarantined {
                    source: column(r, 1)?,
                    reason: column(r, 2)?,
                    body: column(r, 3)?,
                    content_type: column(r, 4)?,
                    received_at: from_ms(column(r, 5)?)?,
                },
            })
        })
        .collect()
    }
}

/// Applies the migrations not yet recorded, holding the advisory lock on a connection of
/// its own for the whole run.
async fn migrate(
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
) -> Result<(), StoreError> {
    let open = |e: tokio_postgres::Error| StoreError::Open(describe(&e));
    let (mut client, connection) = config.connect(tls).await.map_err(open)?;
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "SELECT pg_advisory_lock({MIGRATION_LOCK});
             CREATE TABLE IF NOT EXISTS chatbridge_migrations (
                 version    INTEGER PRIMARY KEY,
                 applied_at BIGINT NOT NULL
             );"
        ))
        .await
        .map_err(open)?;
    let applied: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM chatbridge_migrations",
            &[],
        )
        .await
        .map_err(open)?
        .get(0);
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Open(format!(
            "the database is at schema version {applied}, newer than this chatbridge knows ({}); upgrade chatbridge",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        let failed = |e: tokio_postgres::Error| {
            StoreError::Open(format!("migration {version} failed: {}", describe(&e)))
        };
        let tx = client.transaction().await.map_err(failed)?;
        tx.batch_execute(sql).await.map_err(failed)?;
        if version == MENTIONS_MIGRATION {
            index_mentions(&tx).await.map_err(failed)?;
        }
        tx.execute(
            "INSERT INTO chatbridge_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &ms(Timestamp::now())],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(version, "store migration applied");
    }
    // The queue's rows are updated at every lease and attempt: without autovacuum, its
    // indexes fill with dead entries and the planner keeps the statistics of an empty table.
    // A lease then took 0.26 s against 3 ms, with a million chats stored.
    let autovacuum: String = client
        .query_one("SHOW autovacuum", &[])
        .await
        .map_err(open)?
        .get(0);
    if autovacuum != "on" {
        tracing::warn!(
            "PostgreSQL's autovacuum is off: the queue slows down as rows are updated; turn it on (autovacuum = on), or VACUUM ANALYZE the database every few minutes"
        );
    }
    // Closing the connection releases the advisory lock.
    drop(client);
    let _ = connection.await;
    Ok(())
}

/// A driver error as a sentence: the server's message when it sent one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => crate::render::error_chain(e),
    }
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::Database(describe(&e))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// `?` for a row's typed column.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    index: usize,
) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|e| StoreError::Corrupt(format!("column {index}: {e}")))
}

/// A conversation's first version, `ingest`'s common case: the conversation row ($1 to $8),
/// the version ($9 to $12), the addresses it mentions ($13) and a delivery per connector
/// ($14, keys $15), in one statement, so one round trip and one commit. Answers 1, or 0
/// having written nothing when the conversation is already stored.
const FIRST_VERSION: &str = "WITH conversation AS (
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

/// A replay's page in one statement: of the (conversation, connector, key) triples $1 to $3,
/// the pairs delivered before are queued again at the conversation's latest version, due at
/// $4, their ledger cleared (what the connector made is looked up again, not assumed);
/// pairs with a delivery still pending are counted and left alone. Answers that count and
/// the new deliveries' ids.
const REPLAY: &str = "WITH pairs AS (
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
const DUE_OF_CONNECTOR: &str = "SELECT d.id, d.next_attempt_at FROM deliveries d
    WHERE d.connector = $1 AND d.state = 'pending' AND d.next_attempt_at <= $2
      AND (d.lease_until IS NULL OR d.lease_until < $4)
      AND NOT EXISTS (
          SELECT 1 FROM deliveries e
          WHERE e.conversation_id = d.conversation_id AND e.connector = d.connector
            AND e.state = 'pending' AND e.id < d.id
          OFFSET 0)
    ORDER BY d.next_attempt_at, d.id LIMIT $3";

/// The columns [`conversation_row`] reads, from `conversations c`.
const CONVERSATION_COLUMNS: &str = "c.id, c.source, c.account_id, c.status, c.visitor_email, c.started_at, c.ended_at,
        c.latest_version, c.created_at, c.updated_at,
        (SELECT count(*) FROM deliveries d WHERE d.conversation_id = c.id AND d.state = 'pending'),
        (SELECT count(*) FROM deliveries d WHERE d.conversation_id = c.id AND d.state = 'delivered'),
        (SELECT count(*) FROM deliveries d WHERE d.conversation_id = c.id AND d.state = 'dead')";

fn conversation_row(r: &tokio_postgres::Row) -> Result<ConversationRow, StoreError> {
    let time = |i: usize| -> Result<Option<Timestamp>, StoreError> {
        column::<Option<i64>>(r, i)?.map(from_ms).transpose()
    };
    Ok(ConversationRow {
        id: column(r, 0)?,
        source: column(r, 1)?,
        account_id: column(r, 2)?,
        status: column(r, 3)?,
        visitor_email: column(r, 4)?,
        started_at: time(5)?,
        ended_at: time(6)?,
        latest_version: column(r, 7)?,
        received_at: from_ms(column(r, 8)?)?,
        updated_at: from_ms(column(r, 9)?)?,
        deliveries: StateCounts {
            pending: count(column(r, 10)?),
            delivered: count(column(r, 11)?),
            dead: count(column(r, 12)?),
        },
    })
}

/// The conditions of `f` over `conversations c`, and their values as PostgreSQL takes them.
fn conversation_filter(f: &ConversationFilter) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    bound(FilterSql::conversations(
        f,
        placeholder,
        // The `conversations_email` index is on this expression.
        "lower(c.visitor_email) = lower({})",
    ))
}

/// Parameter `n` as PostgreSQL writes it.
fn placeholder(n: usize) -> String {
    format!("${n}")
}

/// `sql`'s conditions, and its values as PostgreSQL takes them.
fn bound(sql: FilterSql) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let values = sql
        .values
        .into_iter()
        .map(|v| -> Box<dyn ToSql + Sync + Send> {
            match v {
                FilterValue::Integer(n) => Box::new(n),
                FilterValue::Text(text) => Box::new(text),
            }
        })
        .collect();
    (sql.conditions, values)
}

fn delivery_row(r: &tokio_postgres::Row) -> Result<DeliveryRow, StoreError> {
    let state: String = column(r, 5)?;
    let remote: Option<String> = column(r, 9)?;
    Ok(DeliveryRow {
        id: column(r, 0)?,
        conversation_id: column(r, 1)?,
        version: column(r, 2)?,
        connector: column(r, 3)?,
        key: column(r, 4)?,
        state: DeliveryState::parse(&state).map_err(StoreError::Corrupt)?,
        attempts: u32::try_from(column::<i32>(r, 6)?).unwrap_or_default(),
        next_attempt_at: from_ms(column(r, 7)?)?,
        last_error: column(r, 8)?,
        remote: remote.and_then(|r| serde_json::from_str(&r).ok()),
        created_at: from_ms(column(r, 10)?)?,
        updated_at: from_ms(column(r, 11)?)?,
    })
}

/// Fills `mentions` for the bodies and attempts stored before it existed, a page at a time.
async fn index_mentions(tx: &tokio_postgres::Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    let insert = tx
        .prepare(
            "INSERT INTO mentions (address, conversation_id, attempt_id)
             SELECT q.a, q.c, q.t FROM unnest($1::text[], $2::text[], $3::bigint[]) AS q (a, c, t)
             WHERE q.t = 0 OR NOT EXISTS (SELECT 1 FROM mentions m
                                          WHERE m.address = q.a AND m.conversation_id = q.c AND m.attempt_id = 0)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let (mut after_id, mut after_version) = (String::new(), 0_i64);
    loop {
        let rows = tx
            .query(
                "SELECT conversation_id, version, raw, normalized FROM conversation_versions
                 WHERE (conversation_id, version) > ($1, $2) ORDER BY conversation_id, version LIMIT $3",
                &[&after_id, &after_version, &INDEX_PAGE],
            )
            .await?;
        let Some(last) = rows.last() else { break };
        (after_id, after_version) = (last.get(0), last.get(1));
        let (mut addresses, mut ids, mut attempts) = (Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            let body: [&[u8]; 2] = [row.get(2), row.get::<_, &str>(3).as_bytes()];
            for address in crate::privacy::addresses_in(body) {
                addresses.push(address);
                ids.push(row.get::<_, String>(0));
                attempts.push(0_i64);
            }
        }
        tx.execute(&insert, &[&addresses, &ids, &attempts]).await?;
    }
    let mut after = 0_i64;
    loop {
        let rows = tx
            .query(
                "SELECT a.id, d.conversation_id, a.error, a.excerpt FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
                 WHERE a.id > $1 AND (a.error IS NOT NULL OR a.excerpt IS NOT NULL) ORDER BY a.id LIMIT $2",
                &[&after, &INDEX_PAGE],
            )
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        let (mut addresses, mut ids, mut attempts) = (Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            let answer = [row.get::<_, Option<&str>>(2), row.get(3)];
            for address in
                crate::privacy::addresses_in(answer.into_iter().flatten().map(str::as_bytes))
            {
                addresses.push(address);
                ids.push(row.get::<_, String>(1));
                attempts.push(row.get::<_, i64>(0));
            }
        }
        tx.execute(&insert, &[&addresses, &ids, &attempts]).await?;
    }
    Ok(())
}

/// Keeps `entries` in the ledger of delivery `id`'s conversation and connector.
async fn remember(
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
impl Store for PostgresStore {
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
                .map_err(|e| StoreError::Commit(describe(&e)))?,
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
            .map_err(|e| StoreError::Commit(describe(&e)))?;
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
            let outputs: StepOutputs = serde_json::from_str(&outputs)
                .map_err(|e| StoreError::Corrupt(format!("step outputs: {e}")))?;
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

    async fn conversations(
        &self,
        filter: ConversationFilter,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        let (conditions, mut values) = conversation_filter(&filter);
        let limit = (filter.limit > 0).then(|| i64::try_from(filter.limit).unwrap_or(i64::MAX));
        values.push(Box::new(limit));
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as _).collect();
        self.query(
            &format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE {conditions}
                 ORDER BY c.created_at DESC, c.id DESC LIMIT ${}",
                params.len()
            ),
            &params,
        )
        .await?
        .iter()
        .map(conversation_row)
        .collect()
    }

    async fn conversation_count(&self, filter: &ConversationFilter) -> Result<u64, StoreError> {
        let (conditions, values) = conversation_filter(filter);
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as _).collect();
        self.count(
            &format!("SELECT count(*) FROM conversations c WHERE {conditions}"),
            &params,
        )
        .await
    }

    async fn conversation(
        &self,
        id: &str,
    ) -> Result<Option<(ConversationRow, Vec<VersionRow>)>, StoreError> {
        let rows = self
            .query(
                &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = $1"),
                &[&id],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let versions = self
            .query(
                "SELECT version, received_at, body_sha256, codec, body, normalized FROM conversation_versions
                 WHERE conversation_id = $1 ORDER BY version",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| {
                let (raw, normalized) =
                    Packed::open(column::<i16>(r, 3)?.into(), column(r, 4)?, column(r, 5)?)?;
                Ok(VersionRow {
                    version: column(r, 0)?,
                    received_at: from_ms(column(r, 1)?)?,
                    body_sha256: column(r, 2)?,
                    normalized,
                    size: raw.len(),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some((conversation_row(row)?, versions)))
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

    async fn ping(&self) -> Result<(), StoreError> {
        self.client()
            .await?
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(pg)
    }

    async fn open_session(&self, session: NewSession) -> Result<(), StoreError> {
        let now = ms(session.created_at);
        self.execute(
            "DELETE FROM sessions WHERE expires_at <= $1 OR idle_until <= $1",
            &[&now],
        )
        .await?;
        self.execute(
            "INSERT INTO sessions (id_hash, token_mac, created_at, expires_at, idle_until)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &session.id_hash,
                &session.token_mac,
                &now,
                &ms(session.expires_at),
                &ms(session.idle_until),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn touch_session(
        &self,
        id_hash: &str,
        now: Timestamp,
        idle_until: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        let rows = self
            .query(
                "UPDATE sessions SET idle_until = $3
                 WHERE id_hash = $1 AND expires_at > $2 AND idle_until > $2
                 RETURNING token_mac",
                &[&id_hash, &ms(now), &ms(idle_until)],
            )
            .await?;
        rows.first().map(|r| column::<String>(r, 0)).transpose()
    }

    async fn end_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM sessions WHERE id_hash = $1", &[&id_hash])
            .await
            .map(|_| ())
    }
}

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
//! [`StoreError::Database`](crate::store::StoreError::Database), which ingest answers 503 so the source sends again.

mod archive;
mod deliveries;
mod fetches;
mod inbox;
mod maintenance;
mod queue;
mod schema;
mod sessions;
mod tls;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;

use self::schema::migrate;
use crate::store::{Cause, Quarantined, QuarantinedBody, StoreError, from_ms};

/// A PostgreSQL-backed [`Store`](crate::store::Store). Cheap to clone; clones share the pool.
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
        let (config, tls) = tls::connect_config(url)?;
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
            .map_err(|e| StoreError::Open(Cause::of(e)))?;
        Ok(Self { pool })
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(|e| {
            StoreError::Database(Cause::described(
                format!("no connection to PostgreSQL: {e}"),
                e,
            ))
        })
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

/// A driver error as a sentence: the server's message when it sent one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => crate::render::error_chain(e),
    }
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::Database(Cause::described(describe(&e), e))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(Cause::of(e))
}

/// `?` for a row's typed column.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    index: usize,
) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|e| StoreError::Corrupt(Cause::described(format!("column {index}: {e}"), e)))
}

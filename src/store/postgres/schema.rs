//! The schema: migrations in order, run once under an advisory lock, and the index of what
//! each stored body mentions.

use tokio_postgres_rustls::MakeRustlsConnect;

use super::describe;
use crate::model::Timestamp;
use crate::store::{Cause, StoreError, ms};

/// Migrations in order; `chatbridge_migrations` records which have run.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_leased.sql"),
    include_str!("migrations/0003_sessions.sql"),
    include_str!("migrations/0004_email_listing.sql"),
    include_str!("migrations/0005_mentions_and_counts.sql"),
    include_str!("migrations/0006_packed_versions.sql"),
    include_str!("migrations/0007_fewer_queue_indexes.sql"),
    include_str!("migrations/0008_fetches.sql"),
];

/// The migration that creates `mentions`: in its transaction, what was stored before is
/// indexed too.
pub(super) const MENTIONS_MIGRATION: i32 = 5;

/// Rows read per page while indexing what stored rows mention.
pub(super) const INDEX_PAGE: i64 = 500;

/// The advisory lock held while migrating (any fixed number; this one spells "chatbrdg").
pub(super) const MIGRATION_LOCK: i64 = 0x6368_6174_6272_6467;

/// Applies the migrations not yet recorded, holding the advisory lock on a connection of
/// its own for the whole run.
pub(super) async fn migrate(
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
) -> Result<(), StoreError> {
    let open = |e: tokio_postgres::Error| StoreError::Open(Cause::described(describe(&e), e));
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
        return Err(StoreError::newer_schema(applied, MIGRATIONS.len()));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        let failed = |e: tokio_postgres::Error| {
            StoreError::Open(Cause::described(
                format!("migration {version} failed: {}", describe(&e)),
                e,
            ))
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

/// Fills `mentions` for the bodies and attempts stored before it existed, a page at a time.
pub(super) async fn index_mentions(
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<(), tokio_postgres::Error> {
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

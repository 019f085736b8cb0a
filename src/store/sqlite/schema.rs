//! The schema: migrations in order, and the index of what each stored body mentions.

use rusqlite::{Connection, params};

use super::db;
use crate::store::{Cause, StoreError};

/// Migrations in order; `PRAGMA user_version` records how many have run.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_ledger.sql"),
    include_str!("migrations/0003_admin.sql"),
    include_str!("migrations/0004_lease_ranges.sql"),
    include_str!("migrations/0005_drop_unused_due_index.sql"),
    include_str!("migrations/0006_sessions.sql"),
    include_str!("migrations/0007_listing_indexes.sql"),
    include_str!("migrations/0008_mentions_and_counts.sql"),
    include_str!("migrations/0009_packed_versions.sql"),
    include_str!("migrations/0010_fewer_queue_indexes.sql"),
    include_str!("migrations/0011_fetches.sql"),
];

/// The migration that creates `mentions`: in its transaction, what was stored before is
/// indexed too.
pub(super) const MENTIONS_MIGRATION: usize = 8;

pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let applied: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::Open(Cause::of(e)))?;
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::newer_schema(applied, MIGRATIONS.len()));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = index + 1;
        let failed = |e: &dyn std::fmt::Display| {
            let _ = conn.execute_batch("ROLLBACK");
            StoreError::Open(format!("migration {version} failed: {e}").into())
        };
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql}"))
            .map_err(|e| failed(&e))?;
        if version == MENTIONS_MIGRATION {
            index_mentions(conn).map_err(|e| failed(&e))?;
        }
        conn.execute_batch(&format!("PRAGMA user_version = {version}; COMMIT;"))
            .map_err(|e| failed(&e))?;
    }
    Ok(())
}

/// Fills `mentions` for the bodies and attempts stored before it existed.
pub(super) fn index_mentions(conn: &Connection) -> Result<(), StoreError> {
    let mut versions = conn
        .prepare("SELECT conversation_id, raw, normalized FROM conversation_versions")
        .map_err(db)?;
    let mut rows = versions.query([]).map_err(db)?;
    while let Some(row) = rows.next().map_err(db)? {
        let id: String = row.get(0).map_err(db)?;
        let (raw, normalized): (Vec<u8>, String) =
            (row.get(1).map_err(db)?, row.get(2).map_err(db)?);
        let found = crate::privacy::addresses_in([raw.as_slice(), normalized.as_bytes()]);
        mention(conn, &id, 0, found.iter())?;
    }
    let mut attempts = conn
        .prepare(
            "SELECT a.id, d.id, a.error, a.excerpt FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
             WHERE a.error IS NOT NULL OR a.excerpt IS NOT NULL",
        )
        .map_err(db)?;
    let mut rows = attempts.query([]).map_err(db)?;
    while let Some(row) = rows.next().map_err(db)? {
        let (error, excerpt): (Option<String>, Option<String>) =
            (row.get(2).map_err(db)?, row.get(3).map_err(db)?);
        let found =
            crate::privacy::addresses_in([error, excerpt].iter().flatten().map(String::as_bytes));
        mention_in_attempt(
            conn,
            row.get(1).map_err(db)?,
            row.get(0).map_err(db)?,
            &found,
        )?;
    }
    Ok(())
}

/// Records that conversation `id`'s bodies (`attempt` 0) mention `addresses`.
pub(super) fn mention<'a>(
    conn: &Connection,
    id: &str,
    attempt: i64,
    addresses: impl Iterator<Item = &'a String>,
) -> Result<(), StoreError> {
    let mut insert = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO mentions (address, conversation_id, attempt_id) VALUES (?1, ?2, ?3)",
        )
        .map_err(db)?;
    for address in addresses {
        insert.execute(params![address, id, attempt]).map_err(db)?;
    }
    Ok(())
}

/// Records that attempt `attempt` of delivery `delivery` mentions `addresses`, those its
/// conversation's bodies do not (erasing those takes the whole conversation anyway).
pub(super) fn mention_in_attempt(
    conn: &Connection,
    delivery: i64,
    attempt: i64,
    addresses: &[String],
) -> Result<(), StoreError> {
    if addresses.is_empty() {
        return Ok(());
    }
    let mut insert = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO mentions (address, conversation_id, attempt_id)
             SELECT ?1, d.conversation_id, ?2 FROM deliveries d WHERE d.id = ?3
               AND NOT EXISTS (SELECT 1 FROM mentions m
                               WHERE m.address = ?1 AND m.conversation_id = d.conversation_id AND m.attempt_id = 0)",
        )
        .map_err(db)?;
    for address in addresses {
        insert
            .execute(params![address, attempt, delivery])
            .map_err(db)?;
    }
    Ok(())
}

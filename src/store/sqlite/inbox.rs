//! Ingest and quarantine on SQLite.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::schema::mention;
use super::{SqliteStore, db};
use crate::model::delivery_key;
use crate::store::{
    Inbox, IngestOutcome, NewVersion, QuarantineRow, Quarantined, QuarantinedBody, StoreError,
    from_ms, ms,
};

pub(super) fn ingest(conn: &Connection, new: &NewVersion) -> Result<IngestOutcome, StoreError> {
    let c = &new.conversation;
    let id = c.id.as_str();
    let now = ms(new.received_at);
    let latest: Option<i64> = conn
        .prepare_cached("SELECT latest_version FROM conversations WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(db)?;
    let row = params![
        id,
        c.source,
        c.account_id,
        c.status.as_str(),
        c.visitor.email.as_ref().map(|e| e.as_str()),
        c.started_at.map(ms),
        c.ended_at.map(ms),
        now
    ];
    // The common case, a conversation seen for the first time, needs no duplicate check.
    let version = match latest {
        None => {
            conn.prepare_cached(
                "INSERT INTO conversations (id, source, account_id, status, visitor_email, started_at, ended_at,
                                            latest_version, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?8)",
            )
            .and_then(|mut s| s.execute(row))
            .map_err(db)?;
            1
        }
        Some(latest) => {
            let existing: Option<i64> = conn
                .prepare_cached(
                    "SELECT version FROM conversation_versions WHERE conversation_id = ?1 AND body_sha256 = ?2",
                )
                .and_then(|mut s| s.query_row(params![id, new.body_sha256], |r| r.get(0)).optional())
                .map_err(db)?;
            if let Some(version) = existing {
                return Ok(IngestOutcome::Duplicate { version });
            }
            conn.prepare_cached(
                "UPDATE conversations SET source = ?2, account_id = ?3, status = ?4, visitor_email = ?5,
                        started_at = ?6, ended_at = ?7, latest_version = latest_version + 1, updated_at = ?8
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(row))
            .map_err(db)?;
            latest + 1
        }
    };
    conn.prepare_cached(
        "INSERT INTO conversation_versions (conversation_id, version, body_sha256, codec, body, normalized, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        let p = &new.packed;
        s.execute(params![id, version, new.body_sha256, p.codec, p.body, p.normalized, now])
    })
    .map_err(db)?;
    mention(conn, id, 0, new.mentions.iter())?;
    let mut merged = 0;
    for connector in &new.connectors {
        // A waiting, unleased delivery of the same pair is brought up to this version rather
        // than queueing a second delivery of the same remote object. A first version has none.
        let replaced = if version == 1 {
            0
        } else {
            conn.prepare_cached(
                "UPDATE deliveries SET version = ?1, updated_at = ?2
                 WHERE conversation_id = ?3 AND connector = ?4 AND state = 'pending'
                   AND (lease_until IS NULL OR lease_until < ?2)",
            )
            .and_then(|mut s| s.execute(params![version, now, id, connector]))
            .map_err(db)?
        };
        merged += replaced;
        if replaced == 0 {
            let key = delivery_key(connector, id);
            conn.prepare_cached(
                "INSERT INTO deliveries (conversation_id, version, connector, key, state, next_attempt_at,
                                         created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5)",
            )
            .and_then(|mut s| s.execute(params![id, version, connector, key, now]))
            .map_err(db)?;
        }
    }
    Ok(IngestOutcome::Stored {
        version,
        deliveries: new.connectors.len() - merged,
        merged,
    })
}

/// Quarantined bodies matching `condition` on `?1`, oldest first.
pub(super) fn quarantined_where(
    conn: &Connection,
    condition: &str,
    value: i64,
    limit: usize,
) -> Result<Vec<QuarantinedBody>, StoreError> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT id, source, reason, body, content_type, received_at FROM quarantine
             WHERE {condition} ORDER BY id LIMIT ?2"
        ))
        .and_then(|mut s| {
            s.query_map(params![value, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(db)?;
    rows.into_iter()
        .map(|(id, source, reason, body, content_type, at)| {
            Ok(QuarantinedBody {
                id,
                item: Quarantined {
                    source,
                    reason,
                    body,
                    content_type,
                    received_at: from_ms(at)?,
                },
            })
        })
        .collect()
}

#[async_trait]
impl Inbox for SqliteStore {
    async fn ingest(&self, version: NewVersion) -> Result<IngestOutcome, StoreError> {
        self.call(move |conn| ingest(conn, &version)).await
    }

    async fn quarantine(&self, item: Quarantined) -> Result<i64, StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO quarantine (source, reason, body, content_type, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![item.source, item.reason, item.body, item.content_type, ms(item.received_at)]))
            .map_err(db)?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn quarantined(&self, limit: usize) -> Result<Vec<QuarantineRow>, StoreError> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached("SELECT id, source, reason, length(body), received_at FROM quarantine ORDER BY id DESC LIMIT ?1")
                .and_then(|mut s| {
                    s.query_map([limit as i64], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)?, r.get::<_, i64>(4)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()
                })
                .map_err(db)?;
            rows.into_iter()
                .map(|(id, source, reason, size, at)| {
                    Ok(QuarantineRow { id, source, reason, size: size as usize, received_at: from_ms(at)? })
                })
                .collect()
        })
        .await
    }

    async fn quarantined_body(&self, id: i64) -> Result<Option<QuarantinedBody>, StoreError> {
        self.read(move |conn| quarantined_where(conn, "id = ?1", id, 1).map(|mut rows| rows.pop()))
            .await
    }

    async fn quarantined_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<QuarantinedBody>, StoreError> {
        self.read(move |conn| quarantined_where(conn, "id > ?1", after, limit))
            .await
    }

    async fn requarantine(&self, id: i64, reason: &str) -> Result<(), StoreError> {
        let reason = reason.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE quarantine SET reason = ?2 WHERE id = ?1",
                params![id, reason],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn drop_quarantined(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let ids = ids.to_vec();
        self.call(move |conn| {
            let mut delete = conn
                .prepare_cached("DELETE FROM quarantine WHERE id = ?1")
                .map_err(db)?;
            let mut dropped = 0;
            for id in &ids {
                dropped += delete.execute([id]).map_err(db)? as u64;
            }
            Ok(dropped)
        })
        .await
    }
}

//! Conversation listings and searches on SQLite, on the read connections.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension};

use super::{SqliteStore, db};
use crate::model::Timestamp;
use crate::store::{
    Archive, CONVERSATION_COLUMNS, ConversationFilter, ConversationRow, FilterSql, FilterValue,
    Packed, StateCounts, StoreError, VersionRow, from_ms,
};

pub(super) fn conversation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConversationRow> {
    let time = |i: usize| -> rusqlite::Result<Option<Timestamp>> {
        Ok(r.get::<_, Option<i64>>(i)?
            .and_then(Timestamp::from_unix_millis))
    };
    let required = |i: usize| -> rusqlite::Result<Timestamp> {
        time(i)?.ok_or(rusqlite::Error::IntegralValueOutOfRange(i, 0))
    };
    Ok(ConversationRow {
        id: r.get(0)?,
        source: r.get(1)?,
        account_id: r.get(2)?,
        status: r.get(3)?,
        visitor_email: r.get(4)?,
        started_at: time(5)?,
        ended_at: time(6)?,
        latest_version: r.get(7)?,
        received_at: required(8)?,
        updated_at: required(9)?,
        deliveries: StateCounts {
            pending: r.get(10)?,
            delivered: r.get(11)?,
            dead: r.get(12)?,
        },
    })
}

/// The conditions of `f` over `conversations c`, and their values as SQLite takes them.
pub(super) fn conversation_filter(f: &ConversationFilter) -> (String, Vec<rusqlite::types::Value>) {
    bound(FilterSql::conversations(
        f,
        placeholder,
        // The `conversations_email` index is in this collation.
        "c.visitor_email = {} COLLATE NOCASE",
    ))
}

/// Parameter `n` as SQLite writes it.
pub(super) fn placeholder(n: usize) -> String {
    format!("?{n}")
}

/// `sql`'s conditions, and its values as SQLite takes them.
pub(super) fn bound(sql: FilterSql) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let values = sql
        .values
        .into_iter()
        .map(|v| match v {
            FilterValue::Integer(n) => Value::Integer(n),
            FilterValue::Text(text) => Value::Text(text),
        })
        .collect();
    (sql.conditions, values)
}

pub(super) fn conversations(
    conn: &Connection,
    f: &ConversationFilter,
) -> Result<Vec<ConversationRow>, StoreError> {
    let limit = if f.limit == 0 { -1 } else { f.limit as i64 };
    let (conditions, mut values) = conversation_filter(f);
    values.push(rusqlite::types::Value::Integer(limit));
    conn.prepare_cached(&format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE {conditions}
         ORDER BY c.created_at DESC, c.id DESC LIMIT ?{}",
        values.len()
    ))
    .and_then(|mut s| {
        s.query_map(rusqlite::params_from_iter(values), conversation_row)?
            .collect()
    })
    .map_err(db)
}

#[async_trait]
impl Archive for SqliteStore {
    async fn conversations(
        &self,
        filter: ConversationFilter,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        self.read(move |conn| conversations(conn, &filter)).await
    }

    async fn conversation_count(&self, filter: &ConversationFilter) -> Result<u64, StoreError> {
        let (conditions, values) = conversation_filter(filter);
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT count(*) FROM conversations c WHERE {conditions}"
            ))
            .and_then(|mut s| s.query_row(rusqlite::params_from_iter(values.iter()), |r| r.get(0)))
            .map_err(db)
        })
        .await
    }

    async fn conversation(
        &self,
        id: &str,
    ) -> Result<Option<(ConversationRow, Vec<VersionRow>)>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let Some(row) = conn
                .prepare_cached(&format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?1"))
                .and_then(|mut s| s.query_row([&id], conversation_row).optional())
                .map_err(db)?
            else {
                return Ok(None);
            };
            let versions = conn
                .prepare_cached(
                    "SELECT version, received_at, body_sha256, codec, body, normalized FROM conversation_versions
                     WHERE conversation_id = ?1 ORDER BY version",
                )
                .and_then(|mut s| {
                    s.query_map([&id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()
                })
                .map_err(db)?
                .into_iter()
                .map(|(version, at, body_sha256, codec, body, normalized)| {
                    let (raw, normalized) = Packed::open(codec, body, normalized)?;
                    Ok(VersionRow { version, received_at: from_ms(at)?, body_sha256, normalized, size: raw.len() })
                })
                .collect::<Result<_, StoreError>>()?;
            Ok(Some((row, versions)))
        })
        .await
    }
}

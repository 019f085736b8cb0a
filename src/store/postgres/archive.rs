//! Conversation listings and searches on PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use super::{PostgresStore, column, count};
use crate::model::Timestamp;
use crate::store::{
    Archive, CONVERSATION_COLUMNS, ConversationFilter, ConversationRow, FilterSql, FilterValue,
    Packed, StateCounts, StoreError, VersionRow, from_ms,
};

pub(super) fn conversation_row(r: &tokio_postgres::Row) -> Result<ConversationRow, StoreError> {
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
pub(super) fn conversation_filter(
    f: &ConversationFilter,
) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    bound(FilterSql::conversations(
        f,
        placeholder,
        // The `conversations_email` index is on this expression.
        "lower(c.visitor_email) = lower({})",
    ))
}

/// Parameter `n` as PostgreSQL writes it.
pub(super) fn placeholder(n: usize) -> String {
    format!("${n}")
}

/// `sql`'s conditions, and its values as PostgreSQL takes them.
pub(super) fn bound(sql: FilterSql) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
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

#[async_trait]
impl Archive for PostgresStore {
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
}

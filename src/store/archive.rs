//! Stored conversations as operators browse them: listings, searches and versions.

use async_trait::async_trait;

use super::*;
use crate::model::Timestamp;

/// The columns a [`ConversationRow`] is read from, out of `conversations c`: the same SQL
/// for both backends.
pub(crate) const CONVERSATION_COLUMNS: &str = "c.id, c.source, c.account_id, c.status, c.visitor_email, c.started_at, c.ended_at,
        c.latest_version, c.created_at, c.updated_at,
        (SELECT count(*) FROM deliveries d WHERE d.conversation_id = c.id AND d.state = 'pending'),
        (SELECT count(*) FROM deliveries d WHERE d.conversation_id = c.id AND d.state = 'delivered'),
        (SELECT count(*) FROM deliveries d WHERE d.conversation_id = c.id AND d.state = 'dead')";

/// Stored conversations, listed, counted and opened.
#[async_trait]
pub trait Archive: Send + Sync {
    /// Conversations, newest first.
    ///
    /// # Errors
    /// When the database fails.
    async fn conversations(
        &self,
        filter: ConversationFilter,
    ) -> Result<Vec<ConversationRow>, StoreError>;

    /// How many conversations the filter matches (its cursor and limit aside).
    ///
    /// # Errors
    /// When the database fails.
    async fn conversation_count(&self, filter: &ConversationFilter) -> Result<u64, StoreError>;

    /// One conversation with every stored version, oldest first.
    ///
    /// # Errors
    /// When the database fails.
    async fn conversation(
        &self,
        id: &str,
    ) -> Result<Option<(ConversationRow, Vec<VersionRow>)>, StoreError>;
}

/// Where a newest-first listing of conversations continues: the last row's first-received
/// time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationCursor {
    /// First received.
    pub received_at: Timestamp,
    /// Conversation id (breaks ties).
    pub id: String,
}

impl ConversationCursor {
    /// The opaque text form used in the API (`next` of one page, `cursor` of the next).
    pub fn encode(&self) -> String {
        format!("{}.{}", self.received_at.unix_millis(), self.id)
    }

    /// Reads [`ConversationCursor::encode`]'s form.
    ///
    /// # Errors
    /// When the text is not a cursor this service gave out.
    pub fn decode(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a cursor from a previous page");
        let (millis, id) = text.split_once('.').ok_or_else(bad)?;
        let received_at = millis
            .parse()
            .ok()
            .and_then(Timestamp::from_unix_millis)
            .ok_or_else(bad)?;
        Ok(Self {
            received_at,
            id: id.to_owned(),
        })
    }
}

/// Which conversations to list; every field narrows the search.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    /// First received at or after.
    pub since: Option<Timestamp>,
    /// First received before.
    pub until: Option<Timestamp>,
    /// Conversation status (`completed`, `missed`, `offline`, `dropped`).
    pub status: Option<String>,
    /// The visitor's e-mail, compared without regard to case.
    pub email: Option<String>,
    /// The source (`smartsupp`).
    pub source: Option<String>,
    /// Only conversations with a delivery in this state.
    pub delivery_state: Option<DeliveryState>,
    /// Only conversations for which a connector made something with this id at its target
    /// (a ticket or contact number).
    pub remote: Option<String>,
    /// Continue after this row.
    pub after: Option<ConversationCursor>,
    /// At most this many, newest first (0: no limit).
    pub limit: usize,
}

/// One value of a [`FilterSql`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FilterValue {
    /// A number (Unix milliseconds, an id).
    Integer(i64),
    /// Text.
    Text(String),
}

/// The `WHERE` conditions of a listing's filter, and their values in placeholder order.
/// Only the conditions the filter sets are written: a `(?1 IS NULL OR col = ?1)` condition
/// hides the column from the planner, which then scans the whole table (seconds at a million
/// conversations) where an index would find the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilterSql {
    pub conditions: String,
    pub values: Vec<FilterValue>,
}

/// Builds a [`FilterSql`]: `placeholder(n)` writes parameter `n` (1-based) as the database
/// wants it (`?1`, `$1`).
struct Conditions {
    placeholder: fn(usize) -> String,
    written: Vec<String>,
    values: Vec<FilterValue>,
}

impl Conditions {
    fn new(placeholder: fn(usize) -> String) -> Self {
        Self {
            placeholder,
            written: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Adds `condition`, whose `{}` stand for `given` in order.
    fn add(&mut self, condition: &str, given: Vec<FilterValue>) {
        let mut written = condition.to_owned();
        for value in given {
            self.values.push(value);
            written = written.replacen("{}", &(self.placeholder)(self.values.len()), 1);
        }
        self.written.push(written);
    }

    fn text(&mut self, condition: &str, value: &Option<String>) {
        if let Some(value) = value {
            self.add(condition, vec![FilterValue::Text(value.clone())]);
        }
    }

    fn done(self) -> FilterSql {
        let conditions = if self.written.is_empty() {
            "TRUE".to_owned()
        } else {
            self.written.join(" AND ")
        };
        FilterSql {
            conditions,
            values: self.values,
        }
    }
}

impl FilterSql {
    /// A [`ConversationFilter`] over `conversations c`. `email` is the condition on the
    /// visitor's address with `{}` for its parameter, written to use that database's
    /// case-blind index. The page cursor is a row-value comparison, which both databases
    /// read as a range of the `(created_at, id)` index.
    pub(crate) fn conversations(
        filter: &ConversationFilter,
        placeholder: fn(usize) -> String,
        email: &str,
    ) -> Self {
        let mut sql = Conditions::new(placeholder);
        let time = |t: Timestamp| FilterValue::Integer(ms(t));
        if let Some(since) = filter.since {
            sql.add("c.created_at >= {}", vec![time(since)]);
        }
        if let Some(until) = filter.until {
            sql.add("c.created_at < {}", vec![time(until)]);
        }
        sql.text("c.status = {}", &filter.status);
        sql.text(email, &filter.email);
        sql.text("c.source = {}", &filter.source);
        if let Some(remote) = &filter.remote {
            // The ledger keeps each id as JSON: `4711` when the target gave a number,
            // `"4711"` when it gave text.
            let quoted = serde_json::Value::from(remote.as_str()).to_string();
            sql.add(
                "c.id IN (SELECT l.conversation_id FROM ledger l WHERE l.value IN ({}, {}))",
                vec![FilterValue::Text(remote.clone()), FilterValue::Text(quoted)],
            );
        }
        if let Some(state) = filter.delivery_state {
            sql.add(
                "EXISTS (SELECT 1 FROM deliveries d WHERE d.conversation_id = c.id AND d.state = {})",
                vec![FilterValue::Text(state.as_str().to_owned())],
            );
        }
        if let Some(after) = &filter.after {
            sql.add(
                "(c.created_at, c.id) < ({}, {})",
                vec![time(after.received_at), FilterValue::Text(after.id.clone())],
            );
        }
        sql.done()
    }

    /// A [`DeliveryFilter`] over `deliveries`. The state is written as a literal (one of
    /// three), so that each database may read it from that state's partial index.
    pub(crate) fn deliveries(filter: &DeliveryFilter, placeholder: fn(usize) -> String) -> Self {
        let mut sql = Conditions::new(placeholder);
        if let Some(state) = filter.state {
            sql.add(&format!("state = '{}'", state.as_str()), Vec::new());
        }
        sql.text("connector = {}", &filter.connector);
        sql.text("conversation_id = {}", &filter.conversation_id);
        if let Some(before) = filter.before {
            sql.add("id < {}", vec![FilterValue::Integer(before)]);
        }
        sql.done()
    }
}

/// A conversation as listed.
#[derive(Debug, Clone)]
pub struct ConversationRow {
    /// Conversation id.
    pub id: String,
    /// Chat product.
    pub source: String,
    /// The product's account.
    pub account_id: String,
    /// Status of the latest version.
    pub status: String,
    /// The visitor's e-mail, when known.
    pub visitor_email: Option<String>,
    /// When the chat began.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// Versions received.
    pub latest_version: i64,
    /// First received.
    pub received_at: Timestamp,
    /// Last version received.
    pub updated_at: Timestamp,
    /// Its deliveries by state.
    pub deliveries: StateCounts,
}

/// One stored version of a conversation.
#[derive(Debug, Clone)]
pub struct VersionRow {
    /// Version number, from 1.
    pub version: i64,
    /// When it arrived.
    pub received_at: Timestamp,
    /// Hex SHA-256 of the body.
    pub body_sha256: String,
    /// The normalized conversation, as JSON.
    pub normalized: String,
    /// Body size in bytes.
    pub size: usize,
}

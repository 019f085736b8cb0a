//! Conversations: the list, searched and paged by cursor, and one with its versions and
//! deliveries.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::deliveries::{DeliveryItem, delivery_item};
use super::{nonempty, page_size, time};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::model::Timestamp;
use crate::store::{
    ConversationCursor, ConversationFilter, ConversationRow, DeliveryFilter, DeliveryState,
    VersionRow,
};

/// A conversation as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationItem {
    /// `source:account:channel`.
    pub id: String,
    /// Chat product.
    pub source: String,
    /// `completed`, `missed`, `offline` or `dropped`.
    pub status: String,
    /// The visitor's e-mail.
    pub visitor_email: Option<String>,
    /// When the chat began.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    /// When it ended.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    /// Versions received.
    pub versions: i64,
    /// First received.
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Timestamp,
    /// Last version received.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// Deliveries pending.
    pub pending: u64,
    /// Deliveries delivered.
    pub delivered: u64,
    /// Deliveries dead.
    pub dead: u64,
}

impl From<ConversationRow> for ConversationItem {
    fn from(row: ConversationRow) -> Self {
        Self {
            id: row.id,
            source: row.source,
            status: row.status,
            visitor_email: row.visitor_email,
            started_at: row.started_at,
            ended_at: row.ended_at,
            versions: row.latest_version,
            received_at: row.received_at,
            updated_at: row.updated_at,
            pending: row.deliveries.pending,
            delivered: row.deliveries.delivered,
            dead: row.deliveries.dead,
        }
    }
}

/// A page of conversations.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationPage {
    /// This page.
    pub items: Vec<ConversationItem>,
    /// The `cursor` of the next page; absent on the last.
    pub next: Option<String>,
}

/// `GET /api/conversations` filters.
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    /// First received at or after (RFC 3339).
    pub since: Option<String>,
    /// First received before (RFC 3339).
    pub until: Option<String>,
    /// Conversation status.
    pub status: Option<String>,
    /// The visitor's e-mail (any case).
    pub email: Option<String>,
    /// Chat product.
    pub source: Option<String>,
    /// Only conversations with a delivery in this state (`pending`, `delivered`, `dead`).
    pub delivery_state: Option<String>,
    /// Only the conversation for which a connector made this id at its target (a ticket or
    /// contact number).
    pub remote: Option<String>,
    /// `next` of the previous page.
    pub cursor: Option<String>,
    /// Page size (default 50, at most 500).
    pub limit: Option<usize>,
}

impl ConversationQuery {
    /// The store filter, or what is wrong with the query.
    pub fn filter(&self) -> Result<ConversationFilter, ApiError> {
        Ok(ConversationFilter {
            since: time(self.since.as_deref(), "since")?,
            until: time(self.until.as_deref(), "until")?,
            status: nonempty(&self.status),
            email: nonempty(&self.email),
            source: nonempty(&self.source),
            delivery_state: nonempty(&self.delivery_state)
                .map(|s| DeliveryState::parse(&s))
                .transpose()
                .map_err(ApiError::Invalid)?,
            remote: nonempty(&self.remote),
            after: self
                .cursor
                .as_deref()
                .filter(|c| !c.is_empty())
                .map(ConversationCursor::decode)
                .transpose()
                .map_err(ApiError::Invalid)?,
            limit: page_size(self.limit),
        })
    }
}

/// Conversations, newest first, searched by time, status, visitor e-mail and source.
#[utoipa::path(get, path = "/api/conversations", params(ConversationQuery),
    responses((status = 200, body = ConversationPage), (status = 400), (status = 401)))]
pub(super) async fn list_conversations(
    State(state): State<AppState>,
    Query(query): Query<ConversationQuery>,
) -> Result<Json<ConversationPage>, ApiError> {
    let filter = query.filter()?;
    let limit = filter.limit;
    let rows = state.store.conversations(filter).await?;
    Ok(Json(conversation_page(rows, limit)))
}

/// A page of rows and the cursor after its last one (when the page is full).
pub fn conversation_page(rows: Vec<ConversationRow>, limit: usize) -> ConversationPage {
    let next = (rows.len() == limit)
        .then(|| rows.last())
        .flatten()
        .map(|last| {
            ConversationCursor {
                received_at: last.received_at,
                id: last.id.clone(),
            }
            .encode()
        });
    ConversationPage {
        items: rows.into_iter().map(ConversationItem::from).collect(),
        next,
    }
}

/// One stored version of a conversation.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionItem {
    /// From 1.
    pub version: i64,
    /// When it arrived.
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Timestamp,
    /// Body size in bytes.
    pub size: usize,
    /// Hex SHA-256 of the body as sent.
    pub body_sha256: String,
    /// The normalized conversation (messages, visitor, agents).
    #[schema(value_type = Object)]
    pub conversation: Value,
}

impl From<VersionRow> for VersionItem {
    fn from(row: VersionRow) -> Self {
        Self {
            version: row.version,
            received_at: row.received_at,
            size: row.size,
            body_sha256: row.body_sha256,
            conversation: serde_json::from_str(&row.normalized).unwrap_or(Value::Null),
        }
    }
}

/// A conversation with its versions and deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationDetail {
    /// The conversation.
    pub conversation: ConversationItem,
    /// Every version, oldest first.
    pub versions: Vec<VersionItem>,
    /// Every delivery with its attempts, newest first.
    pub deliveries: Vec<DeliveryItem>,
}

/// A conversation with every stored version and every delivery's attempts.
#[utoipa::path(get, path = "/api/conversations/{id}",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = ConversationDetail), (status = 404), (status = 401)))]
pub(super) async fn get_conversation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ConversationDetail>, ApiError> {
    Ok(Json(conversation_detail(&state, &id).await?))
}

/// The detail of conversation `id`.
///
/// # Errors
/// 404 when there is no such conversation.
pub async fn conversation_detail(
    state: &AppState,
    id: &str,
) -> Result<ConversationDetail, ApiError> {
    let (row, versions) = state
        .store
        .conversation(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no conversation `{id}`")))?;
    let rows = state
        .store
        .deliveries(DeliveryFilter {
            conversation_id: Some(id.to_owned()),
            ..DeliveryFilter::default()
        })
        .await?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in rows {
        deliveries.push(delivery_item(state, row).await?);
    }
    Ok(ConversationDetail {
        conversation: row.into(),
        versions: versions.into_iter().map(VersionItem::from).collect(),
        deliveries,
    })
}

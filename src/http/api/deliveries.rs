//! Deliveries: the list with every attempt, and retrying dead ones.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{nonempty, page_size};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::maintenance::{self, Silent};
use crate::model::Timestamp;
use crate::store::{AttemptRow, DeliveryFilter, DeliveryRow, DeliveryState};

/// A delivery with every attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryItem {
    /// Store id.
    pub id: i64,
    /// The conversation.
    pub conversation_id: String,
    /// Version delivered.
    pub version: i64,
    /// Connector instance.
    pub connector: String,
    /// Idempotency key offered to the target.
    pub key: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Next attempt, while pending.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    /// Why the last attempt failed; none once delivered.
    pub last_error: Option<String>,
    /// What the target made (ticket id, contact id), once delivered.
    #[schema(value_type = Option<Object>)]
    pub remote: Option<Value>,
    /// Queued.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Last change.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<AttemptRow>,
}

/// A delivery row with its attempts read from the store.
pub async fn delivery_item(state: &AppState, row: DeliveryRow) -> Result<DeliveryItem, ApiError> {
    let attempts = state.store.attempts(row.id).await?;
    Ok(DeliveryItem {
        id: row.id,
        conversation_id: row.conversation_id,
        version: row.version,
        connector: row.connector,
        key: row.key,
        state: row.state.as_str().to_owned(),
        attempts: row.attempts,
        next_attempt_at: (row.state == DeliveryState::Pending).then_some(row.next_attempt_at),
        last_error: row.last_error,
        remote: row.remote,
        created_at: row.created_at,
        updated_at: row.updated_at,
        attempt_log: attempts,
    })
}

/// `GET /api/deliveries` filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// `pending`, `delivered` or `dead`.
    pub state: Option<String>,
    /// Connector instance.
    pub connector: Option<String>,
    /// Only this conversation.
    pub conversation: Option<String>,
    /// `next` of the previous page.
    pub cursor: Option<i64>,
    /// Page size (default 50, at most 500).
    pub limit: Option<usize>,
}

/// A page of deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    /// This page.
    pub items: Vec<DeliveryItem>,
    /// The `cursor` of the next page; absent on the last.
    pub next: Option<i64>,
}

/// Deliveries, newest first, each with every attempt (time, status, duration, excerpt).
#[utoipa::path(get, path = "/api/deliveries", params(DeliveryQuery),
    responses((status = 200, body = DeliveryPage), (status = 400), (status = 401)))]
pub(super) async fn list_deliveries(
    State(state): State<AppState>,
    Query(query): Query<DeliveryQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    Ok(Json(delivery_page(&state, &query).await?))
}

/// A page of deliveries for `query`.
///
/// # Errors
/// 400 for an unknown state.
pub async fn delivery_page(
    state: &AppState,
    query: &DeliveryQuery,
) -> Result<DeliveryPage, ApiError> {
    let limit = page_size(query.limit);
    let rows = state
        .store
        .deliveries(DeliveryFilter {
            state: nonempty(&query.state)
                .map(|s| DeliveryState::parse(&s))
                .transpose()
                .map_err(ApiError::Invalid)?,
            connector: nonempty(&query.connector),
            conversation_id: nonempty(&query.conversation),
            before: query.cursor,
            limit,
        })
        .await?;
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(delivery_item(state, row).await?);
    }
    Ok(DeliveryPage { items, next })
}

/// How many deliveries went back in the queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    /// Deliveries queued again.
    pub retried: u64,
}

/// Puts a dead delivery back in the queue with a fresh attempt budget.
#[utoipa::path(post, path = "/api/deliveries/{id}/retry",
    params(("id" = i64, Path, description = "Delivery id")),
    responses((status = 200, body = Retried), (status = 404), (status = 409, description = "Not dead"), (status = 401)))]
pub(super) async fn retry_delivery(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Retried>, ApiError> {
    let retried = retry_one(&state, id).await?;
    Ok(Json(Retried { retried }))
}

/// Retries delivery `id`, waking the worker.
///
/// # Errors
/// 404 when it does not exist, 409 when it is not dead.
pub async fn retry_one(state: &AppState, id: i64) -> Result<u64, ApiError> {
    let retried = state.store.retry(&[id]).await?;
    if retried == 0 {
        let exists = state
            .store
            .deliveries(DeliveryFilter {
                before: Some(id + 1),
                limit: 1,
                ..DeliveryFilter::default()
            })
            .await?
            .into_iter()
            .any(|d| d.id == id);
        return Err(if exists {
            ApiError::Conflict(format!(
                "delivery {id} is not dead; only dead deliveries are retried"
            ))
        } else {
            ApiError::NotFound(format!("no delivery {id}"))
        });
    }
    state.wake.notify_one();
    Ok(retried)
}

/// Which dead deliveries to retry.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RetryDeadRequest {
    /// Only this connector instance.
    pub connector: Option<String>,
}

/// Puts every dead delivery (of one connector, if given) back in the queue.
#[utoipa::path(post, path = "/api/deliveries/retry-dead", request_body = RetryDeadRequest,
    responses((status = 200, body = Retried), (status = 401)))]
pub(super) async fn retry_dead(
    State(state): State<AppState>,
    body: Option<Json<RetryDeadRequest>>,
) -> Result<Json<Retried>, ApiError> {
    let request = body.map(|Json(b)| b).unwrap_or_default();
    let retried = maintenance::retry_dead(
        state.store.as_ref(),
        request.connector.as_deref(),
        &mut Silent,
    )
    .await?;
    state.wake.notify_one();
    Ok(Json(Retried { retried }))
}

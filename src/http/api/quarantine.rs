//! Bodies refused at ingest: listed, shown, removed, or run through today's intake again.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::page_size;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::maintenance::{self, Silent};
use crate::model::Timestamp;

/// A body refused at ingest and kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantineItem {
    /// Quarantine id.
    pub id: i64,
    /// The source route it came to.
    pub source: String,
    /// Why it was refused (the latest try's reason).
    pub reason: String,
    /// Body size in bytes.
    pub size: usize,
    /// When it arrived.
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Timestamp,
}

/// Quarantined bodies, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantinePage {
    /// The bodies.
    pub items: Vec<QuarantineItem>,
}

/// How many to list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuarantineQuery {
    /// At most this many (default 50, at most 500).
    pub limit: Option<usize>,
}

/// Bodies refused at ingest (unparseable, or of an account the token may not post for),
/// newest first.
#[utoipa::path(get, path = "/api/quarantine", params(QuarantineQuery),
    responses((status = 200, body = QuarantinePage), (status = 401)))]
pub(super) async fn list_quarantine(
    State(state): State<AppState>,
    Query(query): Query<QuarantineQuery>,
) -> Result<Json<QuarantinePage>, ApiError> {
    Ok(Json(quarantine_page(&state, query.limit).await?))
}

/// The newest `limit` quarantined bodies (default 50, at most 500), for the API and the
/// dashboard.
///
/// # Errors
/// When the store fails.
pub async fn quarantine_page(
    state: &AppState,
    limit: Option<usize>,
) -> Result<QuarantinePage, ApiError> {
    let rows = state.store.quarantined(page_size(limit)).await?;
    Ok(QuarantinePage {
        items: rows
            .into_iter()
            .map(|r| QuarantineItem {
                id: r.id,
                source: r.source,
                reason: r.reason,
                size: r.size,
                received_at: r.received_at,
            })
            .collect(),
    })
}

/// A quarantined body, whole.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantinedDetail {
    /// Quarantine id, source, reason, size and arrival.
    #[serde(flatten)]
    pub item: QuarantineItem,
    /// The request's `Content-Type`.
    pub content_type: Option<String>,
    /// The body as text (bytes that are not UTF-8 shown as U+FFFD).
    pub body: String,
}

/// One quarantined body with its content.
#[utoipa::path(get, path = "/api/quarantine/{id}",
    params(("id" = i64, Path, description = "Quarantine id")),
    responses((status = 200, body = QuarantinedDetail), (status = 404), (status = 401)))]
pub(super) async fn get_quarantined(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<QuarantinedDetail>, ApiError> {
    Ok(Json(quarantined_detail(&state, id).await?))
}

/// The quarantined body `id`, for the API and the dashboard.
///
/// # Errors
/// 404 when there is none.
pub async fn quarantined_detail(state: &AppState, id: i64) -> Result<QuarantinedDetail, ApiError> {
    let kept = state
        .store
        .quarantined_body(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no quarantined body {id}")))?;
    Ok(QuarantinedDetail {
        item: QuarantineItem {
            id,
            size: kept.item.body.len(),
            source: kept.item.source,
            reason: kept.item.reason,
            received_at: kept.item.received_at,
        },
        content_type: kept.item.content_type,
        body: String::from_utf8_lossy(&kept.item.body).into_owned(),
    })
}

/// How many bodies were removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dropped {
    /// Bodies removed.
    pub dropped: u64,
}

/// Removes a quarantined body for good.
#[utoipa::path(delete, path = "/api/quarantine/{id}",
    params(("id" = i64, Path, description = "Quarantine id")),
    responses((status = 200, body = Dropped), (status = 404), (status = 401)))]
pub(super) async fn drop_quarantined(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Dropped>, ApiError> {
    match state.store.drop_quarantined(&[id]).await? {
        0 => Err(ApiError::NotFound(format!("no quarantined body {id}"))),
        dropped => Ok(Json(Dropped { dropped })),
    }
}

/// Which quarantined bodies to try again.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ReingestRequest {
    /// These quarantine ids.
    #[serde(default)]
    pub ids: Vec<i64>,
    /// Every quarantined body (instead of `ids`).
    #[serde(default)]
    pub all: bool,
}

/// Runs quarantined bodies through today's parser and configuration, as if posted now:
/// those that pass become conversations with deliveries (or duplicates of what was stored
/// since) and leave the quarantine; the others stay, with the new reason.
#[utoipa::path(post, path = "/api/quarantine/reingest", request_body = ReingestRequest,
    responses((status = 200, body = maintenance::ReingestReport), (status = 400), (status = 401)))]
pub(super) async fn reingest(
    State(state): State<AppState>,
    Json(request): Json<ReingestRequest>,
) -> Result<Json<maintenance::ReingestReport>, ApiError> {
    Ok(Json(reingest_quarantined(&state, &request).await?))
}

/// [`reingest`]'s work, shared with the dashboard.
///
/// # Errors
/// 400 when the request names nothing.
pub async fn reingest_quarantined(
    state: &AppState,
    request: &ReingestRequest,
) -> Result<maintenance::ReingestReport, ApiError> {
    if request.ids.is_empty() != request.all {
        return Err(ApiError::Invalid(
            "give quarantine `ids`, or `all: true`".into(),
        ));
    }
    let registry = state.registry.current();
    let intake = crate::intake::Intake {
        store: state.store.as_ref(),
        registry: &registry,
        redactor: &state.redactor,
        wake: Some(&state.wake),
        fetch_wake: Some(&state.fetch_wake),
    };
    // Tenants as configured now: a reload may have added the one a body was waiting for.
    let sources = state.reloader.config().sources.instances();
    Ok(if request.all {
        maintenance::reingest_all(&intake, &sources, &mut Silent).await?
    } else {
        maintenance::reingest(&intake, &sources, &request.ids).await?
    })
}

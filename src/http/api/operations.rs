//! Work over many conversations: a replay of a time range, and a visitor's erasure.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{connector_names, time};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::maintenance::{self, ReplayRange, ReplayTotals, Silent};
use crate::store::ForgetReport;

/// Which conversations to deliver again.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReplayRequest {
    /// First received at or after (RFC 3339).
    pub since: String,
    /// First received before (RFC 3339; default now).
    pub until: Option<String>,
    /// Only through this connector instance (default: every configured one).
    pub connector: Option<String>,
}

/// Delivers the conversations of a time range again, to the connectors that received them.
/// Connectors that dedupe at the target find what they made instead of duplicating it.
#[utoipa::path(post, path = "/api/replay", request_body = ReplayRequest,
    responses((status = 200, body = ReplayTotals), (status = 400), (status = 401)))]
pub(super) async fn replay(
    State(state): State<AppState>,
    Json(request): Json<ReplayRequest>,
) -> Result<Json<ReplayTotals>, ApiError> {
    let range = ReplayRange {
        since: time(Some(&request.since), "since")?
            .ok_or_else(|| ApiError::Invalid("`since` is required".into()))?,
        until: time(request.until.as_deref(), "until")?,
        connectors: connector_names(&state, request.connector.as_deref())?,
    };
    let totals = maintenance::replay(state.store.as_ref(), &range, &mut Silent).await?;
    state.wake.notify_one();
    Ok(Json(totals))
}

/// Whose traces to erase.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ForgetRequest {
    /// The visitor's e-mail address.
    pub email: String,
}

/// Erases every stored conversation, version, attempt excerpt and quarantined body of a
/// visitor, and says what it removed.
#[utoipa::path(post, path = "/api/forget", request_body = ForgetRequest,
    responses((status = 200, body = ForgetReport), (status = 400), (status = 401)))]
pub(super) async fn forget(
    State(state): State<AppState>,
    Json(request): Json<ForgetRequest>,
) -> Result<Json<ForgetReport>, ApiError> {
    let outboxes = state.registry.current().outboxes();
    let report = maintenance::forget(state.store.as_ref(), &request.email, &outboxes)
        .await
        .map_err(|e| match e {
            maintenance::ForgetError::NotAnAddress(_) => ApiError::Invalid(e.to_string()),
            maintenance::ForgetError::Store(e) => ApiError::Unavailable(e),
            maintenance::ForgetError::Files(_) => ApiError::Internal(e.to_string()),
        })?;
    Ok(Json(report))
}

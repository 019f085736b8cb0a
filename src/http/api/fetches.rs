//! Fetch jobs: events whose conversation is read from the product's API, those waiting and
//! those given up, and putting given-up ones back in the queue.

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Retried, nonempty, page_size};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::model::Timestamp;
use crate::store::{FetchRow, FetchState};

/// `GET /api/fetches` filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FetchQuery {
    /// `pending` or `dead`.
    pub state: Option<String>,
    /// Source instance.
    pub source: Option<String>,
    /// Page size (default 50, at most 500).
    pub limit: Option<usize>,
}

/// A source whose fetches wait because its product refused the API credentials.
#[derive(Debug, Serialize, ToSchema)]
pub struct PausedSource {
    /// The source instance.
    pub source: String,
    /// When one job probes again.
    #[schema(value_type = String, format = DateTime)]
    pub until: Timestamp,
    /// The refusal.
    pub reason: String,
}

/// Fetch jobs, and the sources paused now.
#[derive(Debug, Serialize, ToSchema)]
pub struct FetchPage {
    /// Jobs, newest first.
    pub items: Vec<FetchRow>,
    /// Sources whose fetches are paused.
    pub paused: Vec<PausedSource>,
}

/// Fetch jobs waiting or given up, newest first, with the sources paused now.
#[utoipa::path(get, path = "/api/fetches", params(FetchQuery),
    responses((status = 200, body = FetchPage), (status = 400), (status = 401)))]
pub(super) async fn list_fetches(
    State(state): State<AppState>,
    Query(query): Query<FetchQuery>,
) -> Result<Json<FetchPage>, ApiError> {
    let wanted = nonempty(&query.state)
        .map(|s| FetchState::parse(&s))
        .transpose()
        .map_err(ApiError::Invalid)?;
    let source = nonempty(&query.source);
    let items = state
        .store
        .fetches(wanted, source.as_deref(), page_size(query.limit))
        .await?;
    let paused = state
        .fetcher
        .as_ref()
        .map(|f| f.paused())
        .unwrap_or_default()
        .into_iter()
        .map(|(source, pause)| PausedSource {
            source,
            until: pause.until,
            reason: pause.reason,
        })
        .collect();
    Ok(Json(FetchPage { items, paused }))
}

/// Which dead fetch jobs to retry.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RetryFetchesRequest {
    /// These jobs; every dead one when empty or absent.
    #[serde(default)]
    pub ids: Vec<i64>,
}

/// Puts dead fetch jobs back in the queue with a fresh attempt budget.
#[utoipa::path(post, path = "/api/fetches/retry", request_body = RetryFetchesRequest,
    responses((status = 200, body = Retried), (status = 401)))]
pub(super) async fn retry_fetches(
    State(state): State<AppState>,
    body: Option<Json<RetryFetchesRequest>>,
) -> Result<Json<Retried>, ApiError> {
    let request = body.map(|Json(b)| b).unwrap_or_default();
    let retried = state
        .store
        .retry_fetches(&request.ids, Timestamp::now())
        .await?;
    if retried > 0 {
        state.fetch_wake.notify_one();
    }
    Ok(Json(Retried { retried }))
}

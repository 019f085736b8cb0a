//! Liveness and readiness probes, and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::delivery::limits::CircuitState;
use crate::model::Timestamp;

/// `GET /healthz`: 200 while the process serves HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when the store answers, 503 otherwise; each connector's circuit is
/// shown (an open one does not make the service unready: ingest still works).
///
/// The probe needs no token, so it shows states and counts only: the failure that opened a
/// circuit can name a file path, a conversation id or a target's answer, and is in the
/// admin API (`GET /api/connectors`) instead.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let gates: Vec<Value> = state
        .worker
        .as_ref()
        .map(|w| w.gates())
        .unwrap_or_default()
        .into_iter()
        .map(|g| {
            json!({
                "connector": g.connector,
                "circuit": g.circuit,
                "failures": g.failures,
                "retry_at": g.retry_at,
                "running": g.running,
            })
        })
        .collect();
    // Sources whose product refused the API credentials: names and times only, as above.
    let paused: Vec<Value> = state
        .fetcher
        .as_ref()
        .map(|f| f.paused())
        .unwrap_or_default()
        .into_iter()
        .map(|(source, pause)| json!({ "source": source, "until": pause.until }))
        .collect();
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "connectors": gates, "paused_sources": paused })),
        ),
        Err(e) => {
            tracing::error!(error = %e, "readiness check: store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "store unavailable" })),
            )
        }
    }
}

/// `GET /metrics`: Prometheus / OpenMetrics text; queue gauges are read from the store now.
///
/// # Errors
/// 503 when the store does not answer.
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let stats = state.store.connector_stats(Timestamp::now()).await?;
    let circuits: Vec<(String, bool)> = state
        .worker
        .as_ref()
        .map(|w| w.gates())
        .unwrap_or_default()
        .into_iter()
        .map(|g| (g.connector, g.circuit == CircuitState::Open))
        .collect();
    let fetches = state.store.fetch_counts().await?;
    Ok((
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(&stats, &circuits, &fetches),
    ))
}

//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// `GET /healthz`: 200 while the process serves HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when the store answers, 503 otherwise; paused connectors are listed
/// (they do not make the service unready: ingest still works).
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let paused = state
        .worker
        .as_ref()
        .map(|w| w.paused_connectors())
        .unwrap_or_default();
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "paused_connectors": paused })),
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

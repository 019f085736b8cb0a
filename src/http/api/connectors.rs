//! The connectors' health and queues, and reloading their definitions and templates.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::delivery::limits::GateView;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::model::Timestamp;
use crate::store::ConnectorStats;

/// One connector's health and queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectorItem {
    /// Instance name.
    pub name: String,
    /// Type (definition).
    #[serde(rename = "type")]
    pub kind: String,
    /// `closed`, `open` or `half_open`.
    pub circuit: String,
    /// Why the circuit opened.
    pub circuit_reason: Option<String>,
    /// Pending deliveries.
    pub pending: u64,
    /// Pending deliveries that failed at least once.
    pub retrying: u64,
    /// Age of the oldest pending delivery, in seconds.
    pub oldest_pending_seconds: Option<i64>,
    /// Delivered in the last 24 hours.
    pub delivered_24h: u64,
    /// Died in the last 24 hours.
    pub dead_24h: u64,
    /// Dead now.
    pub dead: u64,
}

/// The last 24 hours and each connector's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    /// Conversation versions received in the last 24 hours.
    pub received_24h: u64,
    /// Per connector.
    pub connectors: Vec<ConnectorItem>,
}

/// Received in the last 24 hours, and per connector: circuit, queue, delivered and dead.
#[utoipa::path(get, path = "/api/connectors",
    responses((status = 200, body = Overview), (status = 401)))]
pub(super) async fn connectors(State(state): State<AppState>) -> Result<Json<Overview>, ApiError> {
    Ok(Json(overview(&state).await?))
}

/// The overview shown by the API and the dashboard.
///
/// # Errors
/// When the store fails.
pub async fn overview(state: &AppState) -> Result<Overview, ApiError> {
    let now = Timestamp::now();
    let since = now.minus(std::time::Duration::from_secs(86_400));
    let stats: BTreeMap<String, ConnectorStats> = state
        .store
        .connector_stats(since)
        .await?
        .into_iter()
        .map(|s| (s.connector.clone(), s))
        .collect();
    let gates: BTreeMap<String, GateView> = state
        .worker
        .as_ref()
        .map(|w| w.gates())
        .unwrap_or_default()
        .into_iter()
        .map(|g| (g.connector.clone(), g))
        .collect();
    let registry = state.registry.current();
    let connectors = registry
        .connectors()
        .map(|c| {
            let s = stats.get(c.name()).cloned().unwrap_or_default();
            let gate = gates.get(c.name());
            ConnectorItem {
                name: c.name().to_owned(),
                kind: c.kind().to_owned(),
                circuit: gate.map_or("closed", |g| g.circuit.as_str()).to_owned(),
                circuit_reason: gate.and_then(|g| g.reason.clone()),
                pending: s.pending,
                retrying: s.retrying,
                oldest_pending_seconds: s
                    .oldest_pending
                    .map(|t| (now.unix_millis() - t.unix_millis()) / 1000),
                delivered_24h: s.delivered,
                dead_24h: s.dead,
                dead: s.dead_total,
            }
        })
        .collect();
    Ok(Overview {
        received_24h: state.store.received_since(since).await?,
        connectors,
    })
}

/// The connector instances configured after a reload.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reloaded {
    /// Instance names.
    pub connectors: Vec<String>,
}

/// Reloads connector definitions and templates from disk after validating them; a broken
/// edit is refused with every problem, and the running set stays.
#[utoipa::path(post, path = "/api/reload",
    responses((status = 200, body = Reloaded), (status = 422, description = "Refused; the running set stays"), (status = 401)))]
pub(super) async fn reload(State(state): State<AppState>) -> Result<Json<Reloaded>, ApiError> {
    let connectors = state
        .reloader
        .reload()
        .await
        .map_err(|e| ApiError::Unrenderable(e.to_string()))?;
    Ok(Json(Reloaded { connectors }))
}

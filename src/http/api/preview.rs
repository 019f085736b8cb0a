//! What a connector would send for a payload, with unsaved template edits.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::connector_names;
use crate::connectors::PlannedRequest;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::preview::Prepared;
use crate::sources::Source;

/// A payload to render through a connector.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PreviewRequest {
    /// Connector instance.
    pub connector: String,
    /// A chat product's payload, as it would be posted.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Template texts by name, rendered instead of the files (nothing is saved).
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
}

/// One request the connector would send.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlannedItem {
    /// Step name.
    pub step: String,
    /// HTTP method.
    pub method: String,
    /// URL (or file path), secrets masked.
    pub target: String,
    /// Headers as `[name, value]` pairs, secrets masked.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    /// The body, exactly as it would be sent.
    pub body: Option<String>,
    /// The step reads answers of earlier steps, shown as if they found nothing.
    pub depends_on_earlier: bool,
}

impl From<PlannedRequest> for PlannedItem {
    fn from(p: PlannedRequest) -> Self {
        Self {
            step: p.step,
            method: p.method,
            target: p.target,
            headers: p.headers,
            body: p.body,
            depends_on_earlier: p.depends_on_earlier,
        }
    }
}

/// What a connector would send for a payload.
#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    /// The requests, in order.
    pub requests: Vec<PlannedItem>,
    /// The connector's templates, by name, as rendered (edits included).
    pub templates: BTreeMap<String, String>,
}

/// Renders a payload through a connector without sending anything.
#[utoipa::path(post, path = "/api/preview", request_body = PreviewRequest,
    responses((status = 200, body = Preview), (status = 400), (status = 422, description = "A template does not render"), (status = 401)))]
pub(super) async fn preview(
    State(state): State<AppState>,
    Json(request): Json<PreviewRequest>,
) -> Result<Json<Preview>, ApiError> {
    Ok(Json(render_preview(&state, request).await?))
}

/// The preview of `request`, shared with the dashboard's playground.
///
/// # Errors
/// 400 for an unknown connector or a payload that does not parse; 422 when a template does
/// not parse or render.
pub async fn render_preview(
    state: &AppState,
    request: PreviewRequest,
) -> Result<Preview, ApiError> {
    let names = connector_names(state, Some(&request.connector))?;
    let registry = state
        .reloader
        .with_templates(request.templates)
        .await
        .map_err(|e| ApiError::Unrenderable(e.to_string()))?;
    let body =
        serde_json::to_vec(&request.payload).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let connector = registry
        .get(&names[0])
        .ok_or_else(|| ApiError::Invalid(format!("no connector instance `{}`", names[0])))?;
    // Rendered whether or not the instance's filters let this chat through: a template is
    // tried on whatever chat is at hand.
    let smartsupp = (Source::Smartsupp, Source::Smartsupp.name());
    let chat = Prepared::new(&state.redactor, connector.name(), smartsupp, &body).map_err(|e| {
        ApiError::Invalid(format!("the payload is not a Smartsupp hook payload: {e}"))
    })?;
    let plan = connector
        .dry_run(&chat.job())
        .map_err(|e| ApiError::Unrenderable(e.to_string()))?;
    let templates = registry
        .definitions()
        .get(connector.kind())
        .map(|d| {
            d.templates()
                .filter_map(|name| {
                    registry
                        .renderer()
                        .source(name)
                        .map(|text| (name.to_owned(), text.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Preview {
        requests: plan.into_iter().map(PlannedItem::from).collect(),
        templates,
    })
}

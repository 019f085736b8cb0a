//! The admin API under `/api`: what happened to each chat, and pushing stuck ones through
//! again, without a database shell.
//!
//! Every route needs the admin token (`Authorization: Bearer TOKEN`, or the dashboard's
//! session cookie); without `[admin] token` the whole tree answers 404. Lists are newest
//! first and paginated by cursor (`next` of one page is `cursor` of the following one), so
//! paging stays correct while new chats arrive. The OpenAPI document at
//! `/api/openapi.json` is generated from these handlers and types.

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::OpenApi;

use super::AppState;
use super::auth::Admitted;
use super::error::ApiError;
use crate::model::Timestamp;

mod connectors;
mod conversations;
mod deliveries;
mod fetches;
mod operations;
mod preview;
mod quarantine;

pub use connectors::*;
pub use conversations::*;
pub use deliveries::*;
pub use fetches::*;
pub use operations::*;
pub use preview::*;
pub use quarantine::*;

/// Largest page size.
const MAX_LIMIT: usize = 500;
/// Page size when none is asked for.
const DEFAULT_LIMIT: usize = 50;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chatbridge admin API",
        description = "Conversations, deliveries and their attempts, fetch jobs; retry, replay, preview and erasure."
    ),
    paths(
        list_conversations,
        get_conversation,
        list_deliveries,
        retry_delivery,
        retry_dead,
        list_fetches,
        retry_fetches,
        replay,
        preview,
        forget,
        list_quarantine,
        get_quarantined,
        drop_quarantined,
        reingest,
        connectors,
        reload
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// The OpenAPI 3.1 document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The `/api` routes.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/conversations", get(list_conversations))
        .route("/conversations/{id}", get(get_conversation))
        .route("/deliveries", get(list_deliveries))
        .route("/deliveries/retry-dead", post(retry_dead))
        .route("/deliveries/{id}/retry", post(retry_delivery))
        .route("/fetches", get(list_fetches))
        .route("/fetches/retry", post(retry_fetches))
        .route("/replay", post(replay))
        .route("/preview", post(preview))
        .route("/forget", post(forget))
        .route("/quarantine", get(list_quarantine))
        .route("/quarantine/reingest", post(reingest))
        .route(
            "/quarantine/{id}",
            get(get_quarantined).delete(drop_quarantined),
        )
        .route("/connectors", get(connectors))
        .route("/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(state, require_admin))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
}

/// 404 when the admin API is off, 401 without the token.
async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(access) = &state.admin else {
        return ApiError::NotFound("the admin API is off; set admin.token to turn it on".into())
            .into_response();
    };
    match access.admit(state.store.as_ref(), request.headers()).await {
        Ok(Admitted::Bearer) => next.run(request).await,
        Ok(Admitted::Session) if super::auth::cross_site(request.headers()) => ApiError::Forbidden(
            "the session cookie is not accepted from another site's page; use a bearer token"
                .into(),
        )
        .into_response(),
        Ok(Admitted::Session) => next.run(request).await,
        Ok(Admitted::Nobody) => ApiError::Unauthorized.into_response(),
        Err(e) => ApiError::Unavailable(e).into_response(),
    }
}

pub(super) fn nonempty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

pub(super) fn time(value: Option<&str>, name: &str) -> Result<Option<Timestamp>, ApiError> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            Timestamp::parse(v).map_err(|e| {
                ApiError::Invalid(format!(
                    "`{name}`: `{v}` is not an RFC 3339 time like 2026-11-24T09:00:00Z ({e})"
                ))
            })
        })
        .transpose()
}

pub(super) fn page_size(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// `[name]` if it is configured, or every configured instance.
pub(super) fn connector_names(
    state: &AppState,
    only: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let registry = state.registry.current();
    match only.map(str::trim).filter(|c| !c.is_empty()) {
        Some(name) if registry.get(name).is_some() => Ok(vec![name.to_owned()]),
        Some(name) => Err(ApiError::Invalid(format!(
            "no connector instance `{name}`; configured: {}",
            registry.names().join(", ")
        ))),
        None => Ok(registry.names()),
    }
}

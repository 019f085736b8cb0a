//! The admin API under `/api`: what happened to each chat, and pushing stuck ones through
//! again, without a database shell.
//!
//! Every route needs the admin token (`Authorization: Bearer TOKEN`, or the dashboard's
//! session cookie); without `[admin] token` the whole tree answers 404. Lists are newest
//! first and paginated by cursor (`next` of one page is `cursor` of the following one), so
//! paging stays correct while new chats arrive. The OpenAPI document at
//! `/api/openapi.json` is generated from these handlers and types.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::AppState;
use super::error::ApiError;
use super::session::Admitted;
use crate::connectors::PlannedRequest;
use crate::delivery::limits::GateView;
use crate::maintenance::{self, ReplayRange, ReplayTotals, Silent};
use crate::model::Timestamp;
use crate::preview::Prepared;
use crate::sources::auth::SourceAuth;
use crate::store::{
    AttemptRow, ConnectorStats, ConversationCursor, ConversationFilter, ConversationRow,
    DeliveryFilter, DeliveryRow, DeliveryState, ForgetReport, VersionRow,
};

/// Largest page size.
const MAX_LIMIT: usize = 500;
/// Page size when none is asked for.
const DEFAULT_LIMIT: usize = 50;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chatbridge admin API",
        description = "Conversations, deliveries and their attempts; retry, replay, preview and erasure."
    ),
    paths(
        list_conversations,
        get_conversation,
        list_deliveries,
        retry_delivery,
        retry_dead,
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
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "the admin API is off; set admin.token to turn it on" })),
        )
            .into_response();
    };
    match access.admit(state.store.as_ref(), request.headers()).await {
        Ok(Admitted::Bearer) => next.run(request).await,
        Ok(Admitted::Session) if super::cross_site(request.headers()) => ApiError::Forbidden(
            "the session cookie is not accepted from another site's page; use a bearer token"
                .into(),
        )
        .into_response(),
        Ok(Admitted::Session) => next.run(request).await,
        Ok(Admitted::Nobody) => ApiError::Unauthorized.into_response(),
        Err(e) => ApiError::Unavailable(e).into_response(),
    }
}

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

fn nonempty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn time(value: Option<&str>, name: &str) -> Result<Option<Timestamp>, ApiError> {
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

fn page_size(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// Conversations, newest first, searched by time, status, visitor e-mail and source.
#[utoipa::path(get, path = "/api/conversations", params(ConversationQuery),
    responses((status = 200, body = ConversationPage), (status = 400), (status = 401)))]
async fn list_conversations(
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
async fn get_conversation(
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
async fn list_deliveries(
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
async fn retry_delivery(
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
async fn retry_dead(
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
async fn replay(
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

/// `[name]` if it is configured, or every configured instance.
fn connector_names(state: &AppState, only: Option<&str>) -> Result<Vec<String>, ApiError> {
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
async fn preview(
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
    let chat = Prepared::new(&state.redactor, connector.name(), &body).map_err(|e| {
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
async fn forget(
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
async fn list_quarantine(
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
async fn get_quarantined(
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
async fn drop_quarantined(
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
async fn reingest(
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
    };
    // Tenants as configured now: a reload may have added the one a body was waiting for.
    let tokens = SourceAuth::from_config(&state.reloader.config());
    Ok(if request.all {
        maintenance::reingest_all(&intake, &tokens, &mut Silent).await?
    } else {
        maintenance::reingest(&intake, &tokens, &request.ids).await?
    })
}

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
async fn connectors(State(state): State<AppState>) -> Result<Json<Overview>, ApiError> {
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
async fn reload(State(state): State<AppState>) -> Result<Json<Reloaded>, ApiError> {
    let connectors = state
        .reloader
        .reload()
        .await
        .map_err(|e| ApiError::Unrenderable(e.to_string()))?;
    Ok(Json(Reloaded { connectors }))
}

//! The pages that show and act: overview, conversations, dead deliveries, quarantine.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Dashboard, PageError, local_path, number, with_notice};
use crate::http::api;
use crate::http::api::{ConversationQuery, DeliveryQuery};
use crate::maintenance;
use crate::maintenance::Silent;

/// The last 24 hours: received, delivered, retrying and dead, and each connector's health.
pub(super) async fn overview(State(dashboard): State<Dashboard>) -> Result<Response, PageError> {
    let overview = api::overview(&dashboard.app)
        .await
        .map_err(|e| dashboard.fail(e))?;
    let sum = |f: fn(&api::ConnectorItem) -> u64| overview.connectors.iter().map(f).sum::<u64>();
    let totals = json!({
        "received": overview.received_24h,
        "delivered": sum(|c| c.delivered_24h),
        "retrying": sum(|c| c.retrying),
        "pending": sum(|c| c.pending),
        "dead": sum(|c| c.dead_24h),
        "dead_now": sum(|c| c.dead),
    });
    Ok(dashboard.show(
        "overview.html",
        &json!({ "section": "overview", "totals": totals, "connectors": overview.connectors }),
    ))
}

/// Conversations, newest first, with the API's search.
pub(super) async fn conversations(
    State(dashboard): State<Dashboard>,
    Query(query): Query<ConversationQuery>,
) -> Result<Response, PageError> {
    let filter = query.filter().map_err(|e| dashboard.fail(e))?;
    let limit = filter.limit;
    let rows = dashboard
        .app
        .store
        .conversations(filter)
        .await
        .map_err(|e| dashboard.fail(e.into()))?;
    let page = api::conversation_page(rows, limit);
    Ok(dashboard.show(
        "conversations.html",
        &json!({ "section": "conversations", "query": query, "page": page }),
    ))
}

/// What a retry did, as the page returned to says it: numbers the server put in the URL.
/// Anything else in those parameters (a link someone crafted) is not shown at all.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Notice {
    /// How many deliveries a "retry all" queued.
    retried: Option<String>,
    /// The one delivery a retry button queued.
    retried_delivery: Option<String>,
    /// How many fetch jobs a retry queued.
    retried_fetches: Option<String>,
}

impl Notice {
    fn shown(&self) -> serde_json::Value {
        json!({ "retried": number(&self.retried), "delivery": number(&self.retried_delivery),
                "fetches": number(&self.retried_fetches) })
    }
}

/// A conversation's transcript (latest version), its versions and its deliveries with every
/// attempt.
pub(super) async fn conversation(
    State(dashboard): State<Dashboard>,
    Path(id): Path<String>,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    let detail = api::conversation_detail(&dashboard.app, &id)
        .await
        .map_err(|e| dashboard.fail(e))?;
    let latest = detail.versions.last().map(|v| &v.conversation);
    Ok(dashboard.show(
        "conversation.html",
        &json!({
            "section": "conversations",
            "detail": detail,
            "latest": latest,
            "here": format!("/conversations/{}", crate::render::url_encode(&id)),
            "notice": notice.shown(),
        }),
    ))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct DeadQuery {
    connector: Option<String>,
    cursor: Option<i64>,
    #[serde(flatten)]
    notice: Notice,
}

/// Dead letters, with a retry button each and one for all.
pub(super) async fn dead(
    State(dashboard): State<Dashboard>,
    Query(query): Query<DeadQuery>,
) -> Result<Response, PageError> {
    let page = api::delivery_page(
        &dashboard.app,
        &DeliveryQuery {
            state: Some("dead".into()),
            connector: query.connector.clone(),
            cursor: query.cursor,
            ..DeliveryQuery::default()
        },
    )
    .await
    .map_err(|e| dashboard.fail(e))?;
    let connectors = dashboard.app.registry.current().names();
    // Fetch jobs waiting or given up: a conversation the product has not handed over yet.
    let fetches = dashboard
        .app
        .store
        .fetches(None, None, FETCHES_SHOWN)
        .await
        .map_err(|e| dashboard.fail(e.into()))?;
    let paused: Vec<serde_json::Value> = dashboard
        .app
        .fetcher
        .as_ref()
        .map(|f| f.paused())
        .unwrap_or_default()
        .into_iter()
        .map(|(source, p)| json!({ "source": source, "until": p.until, "reason": p.reason }))
        .collect();
    Ok(dashboard.show(
        "dead.html",
        &json!({
            "section": "dead",
            "page": page,
            "fetches_dead": fetches.iter().any(|f| f.state == crate::store::FetchState::Dead),
            "fetches": fetches,
            "paused": paused,
            "connector": query.connector.unwrap_or_default(),
            "connectors": connectors,
            "notice": query.notice.shown(),
        }),
    ))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RetryForm {
    next: Option<String>,
    connector: Option<String>,
}

pub(super) async fn retry_delivery(
    State(dashboard): State<Dashboard>,
    Path(id): Path<i64>,
    Form(form): Form<RetryForm>,
) -> Result<Response, PageError> {
    api::retry_one(&dashboard.app, id)
        .await
        .map_err(|e| dashboard.fail(e))?;
    let back = local_path(form.next.as_deref(), "/dead");
    let id = u64::try_from(id).unwrap_or_default();
    Ok(Redirect::to(&with_notice(&back, "retried_delivery", id)).into_response())
}

/// Fetch jobs shown on the dead-letters page, newest first.
const FETCHES_SHOWN: usize = 100;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RetryFetchForm {
    /// One job; every dead one when absent.
    id: Option<i64>,
}

pub(super) async fn retry_fetches(
    State(dashboard): State<Dashboard>,
    Form(form): Form<RetryFetchForm>,
) -> Result<Response, PageError> {
    let ids: Vec<i64> = form.id.into_iter().collect();
    let retried = dashboard
        .app
        .store
        .retry_fetches(&ids, crate::model::Timestamp::now())
        .await
        .map_err(|e| dashboard.fail(e.into()))?;
    dashboard.app.fetch_wake.notify_one();
    Ok(Redirect::to(&with_notice("/dead", "retried_fetches", retried)).into_response())
}

pub(super) async fn retry_all_dead(
    State(dashboard): State<Dashboard>,
    Form(form): Form<RetryForm>,
) -> Result<Response, PageError> {
    let connector = form.connector.as_deref().filter(|c| !c.is_empty());
    let retried = maintenance::retry_dead(dashboard.app.store.as_ref(), connector, &mut Silent)
        .await
        .map_err(|e| dashboard.fail(e.into()))?;
    dashboard.app.wake.notify_one();
    Ok(Redirect::to(&with_notice("/dead", "retried", retried)).into_response())
}

/// What the last action on the quarantine did, as [`Notice`] says a retry: counts the
/// server wrote into the link, and nothing else from it.
#[derive(Debug, Default, Deserialize)]
pub(super) struct QuarantineNotice {
    stored: Option<String>,
    duplicates: Option<String>,
    refused: Option<String>,
    dropped: Option<String>,
}

impl QuarantineNotice {
    fn shown(&self) -> serde_json::Value {
        json!({ "stored": number(&self.stored), "duplicates": number(&self.duplicates),
                "refused": number(&self.refused), "dropped": number(&self.dropped) })
    }
}

/// Bodies refused at ingest, with why, and buttons to bring them back or drop them.
pub(super) async fn quarantine(
    State(dashboard): State<Dashboard>,
    Query(notice): Query<QuarantineNotice>,
) -> Result<Response, PageError> {
    let page = api::quarantine_page(&dashboard.app, Some(200))
        .await
        .map_err(|e| dashboard.fail(e))?;
    Ok(dashboard.show(
        "quarantine.html",
        &json!({ "section": "quarantine", "items": page.items, "notice": notice.shown() }),
    ))
}

/// One quarantined body, as it arrived.
pub(super) async fn quarantined(
    State(dashboard): State<Dashboard>,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    let detail = api::quarantined_detail(&dashboard.app, id)
        .await
        .map_err(|e| dashboard.fail(e))?;
    Ok(dashboard.show(
        "quarantined.html",
        &json!({ "section": "quarantine", "item": detail }),
    ))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ReingestForm {
    /// One body; absent with `all`.
    id: Option<i64>,
    /// Any value: every body.
    all: Option<String>,
}

pub(super) async fn reingest(
    State(dashboard): State<Dashboard>,
    Form(form): Form<ReingestForm>,
) -> Result<Response, PageError> {
    let request = api::ReingestRequest {
        ids: form.id.into_iter().collect(),
        all: form.all.is_some(),
    };
    let answer = api::reingest_quarantined(&dashboard.app, &request)
        .await
        .map_err(|e| dashboard.fail(e))?;
    let t = answer.totals;
    Ok(Redirect::to(&format!(
        "/quarantine?stored={}&duplicates={}&refused={}",
        t.stored, t.duplicates, t.refused
    ))
    .into_response())
}

pub(super) async fn drop_quarantined(
    State(dashboard): State<Dashboard>,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    let dropped = dashboard
        .app
        .store
        .drop_quarantined(&[id])
        .await
        .map_err(|e| dashboard.fail(e.into()))?;
    Ok(Redirect::to(&format!("/quarantine?dropped={dropped}")).into_response())
}

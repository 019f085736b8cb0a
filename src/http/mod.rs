//! The HTTP surface: [`router`], its shared [`AppState`], and the request span.
//!
//! Routes:
//! - `POST /hooks/{name}` (signed sources) and `POST /hooks/{name}/{token}` or
//!   `?token=` (sources given a URL), [`ingest`]
//! - `GET /healthz`, `GET /readyz` ([`health`]), `GET /metrics`
//! - `/api/*` ([`api`]), with the admin token
//! - the dashboard's pages at `/`, `/conversations`, `/dead`, `/quarantine`, `/playground`
//!   ([`dashboard`]), with the admin token through a login form and a cookie
//!
//! Every request gets a span with method, matched route (never the URI: the hook token is
//! in the path) and a request id, echoed in `x-request-id`. Connections are accepted, capped
//! and timed by [`server`]; a request's body is cut off after `server.body_read_timeout`.

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod health;
pub mod ingest;
pub mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{HeaderName, HeaderValue, Request};
use axum::routing::{get, post};
use tokio::sync::Notify;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::connectors::LiveRegistry;
use crate::connectors::Reloader;
use crate::delivery::Worker;
use crate::metrics::Metrics;
use crate::privacy::Redactor;
pub use crate::sources::auth::{SourceTokens, TokenScope};
use crate::sources::instance::Instances;
use crate::store::Store;

/// The header carrying the request id.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What handlers share. axum clones it for every request, so it is one reference count to
/// bump rather than one per field.
#[derive(Debug, Clone)]
pub struct AppState(Arc<SharedState>);

impl AppState {
    /// Shares `state` among the handlers.
    pub fn new(state: SharedState) -> Self {
        Self(Arc::new(state))
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The fields of [`AppState`].
#[derive(Debug)]
pub struct SharedState {
    /// Where conversations are kept.
    pub store: Arc<dyn Store>,
    /// Connector instances (for `when` filters at ingest, previews).
    pub registry: Arc<LiveRegistry>,
    /// The configured sources and their credentials.
    pub sources: Instances,
    /// Wakes the delivery worker after a commit.
    pub wake: Arc<Notify>,
    /// Wakes the fetcher after a fetch job is kept.
    pub fetch_wake: Arc<Notify>,
    /// The worker, when this process runs one (for readiness detail).
    pub worker: Option<Arc<Worker>>,
    /// The fetch stage's worker, when this process runs one (for paused sources).
    pub fetcher: Option<Arc<crate::fetch::Fetcher>>,
    /// `server.max_body_bytes`, for the 413 message.
    pub max_body_bytes: usize,
    /// `server.body_read_timeout`: the most a request's whole body may take to arrive.
    pub body_read_timeout: Duration,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// `[privacy] redact` rules, applied at ingest.
    pub redactor: Arc<Redactor>,
    /// The admin token and its sessions; `None` turns `/api` and the dashboard off.
    pub admin: Option<auth::AdminAccess>,
    /// Reloads connectors and templates.
    pub reloader: Reloader,
}

/// The application's routes and middleware.
pub fn router(state: AppState) -> Router {
    let max_body = state.max_body_bytes;
    let body_deadline = state.body_read_timeout;
    Router::new()
        .route("/hooks/{name}/{token}", post(ingest::with_token))
        .route("/hooks/{name}", post(ingest::without_token))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .nest("/api", api::router(state.clone()))
        .merge(dashboard::router(state.clone()))
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response(secure_headers))
        .layer(axum::middleware::map_request(move |request: Request<Body>| {
            std::future::ready(with_deadline(request, body_deadline))
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("-");
                    let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", method = %request.method(), route, request_id = id)
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, Sequential::default()))
}

/// What every answer says about how a browser may use it: no script but the dashboard's own
/// file (no inline script, so injected markup cannot run), no framing (clickjacking), no
/// content-type guessing, and no `Referer` carrying a conversation URL elsewhere. Inline
/// styles stay allowed: the pages' `<style>` and `style=` attributes run nothing.
async fn secure_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            axum::http::header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (axum::http::header::X_FRAME_OPTIONS, "DENY"),
        (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (axum::http::header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// The request with its body cut off `within` after now: every route that reads a body
/// fails with [`BodyTimeout`] past it, so a client trickling a body in cannot hold a
/// connection and a task for longer.
fn with_deadline(request: Request<Body>, within: Duration) -> Request<Body> {
    use axum::body::HttpBody as _;
    use futures_util::StreamExt as _;
    // Nothing to wait for (a GET, an empty POST): no wrapper to pay for.
    if request.body().is_end_stream() {
        return request;
    }
    let deadline = tokio::time::Instant::now() + within;
    request.map(|body| {
        let chunks =
            futures_util::stream::unfold(Some(body.into_data_stream()), move |rest| async move {
                let mut chunks = rest?;
                match tokio::time::timeout_at(deadline, chunks.next()).await {
                    Ok(Some(chunk)) => Some((chunk.map_err(axum::Error::new), Some(chunks))),
                    Ok(None) => None,
                    Err(_) => Some((Err(axum::Error::new(BodyTimeout)), None)),
                }
            });
        Body::from_stream(chunks)
    })
}

/// A request body did not arrive within `server.body_read_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

/// Request ids: a per-process random prefix and a counter; unique enough to follow a request
/// through the logs, and free of any allocation-heavy generator.
#[derive(Clone)]
struct Sequential {
    prefix: u32,
    next: Arc<AtomicU64>,
}

impl Default for Sequential {
    fn default() -> Self {
        Self {
            prefix: fastrand::u32(..),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for Sequential {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:08x}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

//! The dashboard: server-rendered pages for the person who runs the bridge.
//!
//! Every page is built from the same functions as the admin API ([`super::api`]), so the
//! dashboard can show nothing the API could not, and both stay in step. The pages are Tera
//! templates compiled into the binary (`src/http/pages/`), HTML-escaped, with no script
//! beyond an auto-submit on the playground's pickers: no front-end build step.
//!
//! Access is the admin token, entered once in the login form, which opens a session
//! ([`super::session`]): the browser keeps the session's id in an `HttpOnly`,
//! `SameSite=Strict` cookie, never the token. Without `[admin] token` there is no dashboard
//! at all (404).
//! State-changing forms are also refused when the browser says the request came from
//! another site (`Sec-Fetch-Site`), so a page elsewhere cannot press the retry button.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use include_dir::{Dir, include_dir};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tera::{Context, Kwargs, Tera};

use super::api::{self, ConversationQuery, DeliveryQuery, PreviewRequest};
use super::error::ApiError;
use super::session::{AdminAccess, Admitted, Credential};
use super::{AppState, cross_site};
use crate::maintenance::{self, Silent};
use crate::samples;

/// The page templates, compiled in.
static PAGES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/src/http/pages");

/// Form fields of the playground that carry template texts: `template:NAME`.
const TEMPLATE_FIELD: &str = "template:";

/// What the dashboard handlers share.
#[derive(Clone)]
struct Dashboard {
    app: AppState,
    pages: Arc<Tera>,
    logins: Arc<LoginThrottle>,
}

/// Wrong tokens a client address may send in [`LOGIN_WINDOW`]; past them the form refuses
/// every try, right or wrong, until the window ends, so the token cannot be guessed at the
/// speed of the server.
const LOGIN_FAILURES: u32 = 10;
/// See [`LOGIN_FAILURES`].
const LOGIN_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);
/// Addresses remembered at most; the oldest windows are forgotten first.
const LOGIN_CLIENTS: usize = 10_000;

/// Wrong logins by client address: how many, since when.
#[derive(Debug, Default)]
struct LoginThrottle {
    failures: parking_lot::Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl LoginThrottle {
    /// How long `client` must wait before trying again, if it must.
    fn wait(&self, client: IpAddr, now: Instant) -> Option<std::time::Duration> {
        let failures = self.failures.lock();
        let (count, since) = failures.get(&client)?;
        let ends = *since + LOGIN_WINDOW;
        (*count >= LOGIN_FAILURES && ends > now).then(|| ends - now)
    }

    fn failed(&self, client: IpAddr, now: Instant) {
        let mut failures = self.failures.lock();
        if failures.len() >= LOGIN_CLIENTS {
            failures.retain(|_, (_, since)| *since + LOGIN_WINDOW > now);
        }
        let entry = failures.entry(client).or_insert((0, now));
        if entry.1 + LOGIN_WINDOW <= now {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    fn succeeded(&self, client: IpAddr) {
        self.failures.lock().remove(&client);
    }
}

/// The dashboard's routes, for merging at `/`.
///
/// # Panics
/// When a page template does not parse; they are compiled in and every one is rendered by
/// the tests, so this cannot happen in a released build.
pub fn router(state: AppState) -> Router<AppState> {
    let dashboard = Dashboard {
        app: state,
        pages: Arc::new(pages().expect("the dashboard's page templates parse")),
        logins: Arc::default(),
    };
    let pages = Router::new()
        .route("/", get(overview))
        .route("/conversations", get(conversations))
        .route("/conversations/{id}", get(conversation))
        .route("/dead", get(dead))
        .route("/dead/retry", post(retry_all_dead))
        .route("/deliveries/{id}/retry", post(retry_delivery))
        .route("/quarantine", get(quarantine))
        .route("/quarantine/reingest", post(reingest))
        .route("/quarantine/{id}", get(quarantined))
        .route("/quarantine/{id}/drop", post(drop_quarantined))
        .route("/playground", get(playground).post(render_playground))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(
            dashboard.clone(),
            require_session,
        ));
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/assets/dashboard.js", get(script))
        .merge(pages)
        .with_state(dashboard)
}

/// The pages' one script (pickers that submit their form), a file of its own so that the
/// Content-Security-Policy can forbid inline scripts.
async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("assets/dashboard.js"),
    )
        .into_response()
}

/// Parses the page templates.
///
/// # Errors
/// When one does not parse.
fn pages() -> Result<Tera, tera::Error> {
    let mut tera = Tera::default();
    tera.autoescape_on([".html"]);
    tera.register_filter("when", when_filter);
    tera.register_filter("newlines_to_br", crate::render::html_lines);
    // Any value: a filter left empty in the query is null, and `default` keeps a null.
    tera.register_filter(
        "urlencode",
        |v: tera::Value, _: Kwargs, _: &tera::State| match v.as_str() {
            Some(text) => crate::render::url_encode(text),
            None if v.is_none() || v.is_undefined() => String::new(),
            None => crate::render::url_encode(&v.to_string()),
        },
    );
    tera.add_raw_templates(
        PAGES
            .files()
            .filter_map(|f| Some((f.path().to_str()?.to_owned(), f.contents_utf8()?.to_owned()))),
    )?;
    Ok(tera)
}

/// `{{ t | when }}`: an RFC 3339 time as `2026-11-24 09:00:01`, which reads better in a table;
/// anything else unchanged.
fn when_filter(value: tera::Value, _: Kwargs, _: &tera::State) -> String {
    match value.as_str() {
        Some(text) if text.len() >= 19 && text.as_bytes()[10] == b'T' => {
            format!("{} {}", &text[..10], &text[11..19])
        }
        Some(text) => text.to_owned(),
        None if value.is_none() || value.is_undefined() => String::new(),
        None => value.to_string(),
    }
}

/// A page that could not be shown, as HTML with the API's status code.
struct PageError {
    error: ApiError,
    pages: Arc<Tera>,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        let message = self.error.public_message();
        page(
            &self.pages,
            status,
            "error.html",
            &json!({ "status": status.as_u16(), "message": message }),
        )
    }
}

impl Dashboard {
    /// Wraps an error for display.
    fn fail(&self, error: ApiError) -> PageError {
        PageError {
            error,
            pages: self.pages.clone(),
        }
    }

    /// Renders `name` with `data`.
    fn show(&self, name: &str, data: &impl Serialize) -> Response {
        page(&self.pages, StatusCode::OK, name, data)
    }
}

/// Renders a page; a template that fails to render is a 500 naming it, in the log too.
fn page(pages: &Tera, status: StatusCode, name: &str, data: &impl Serialize) -> Response {
    let rendered = Context::from_serialize(data).and_then(|cx| pages.render(name, &cx));
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            let message = crate::render::error_chain(&e);
            tracing::error!(page = name, error = %crate::telemetry::Escaped(&message), "dashboard page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the page {name} failed to render: {message}"),
            )
                .into_response()
        }
    }
}

/// Lets a request of a live session (or with the admin token) through; sends anyone else to
/// the login form.
async fn require_session(
    State(dashboard): State<Dashboard>,
    request: Request,
    next: Next,
) -> Response {
    let Some(access) = &dashboard.app.admin else {
        return off(&dashboard);
    };
    let admitted = access
        .admit(dashboard.app.store.as_ref(), request.headers())
        .await;
    let admitted = match admitted {
        Ok(admitted) => admitted,
        Err(e) => return dashboard.fail(ApiError::Unavailable(e)).into_response(),
    };
    if admitted == Admitted::Nobody {
        let back = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let target = if request.method() == Method::GET && back != "/" {
            format!("/login?next={}", crate::render::url_encode(&back))
        } else {
            "/login".to_owned()
        };
        return Redirect::to(&target).into_response();
    }
    if request.method() == Method::POST && cross_site(request.headers()) {
        return dashboard
            .fail(ApiError::Forbidden(
                "this form was sent from another site; use the dashboard's own pages".into(),
            ))
            .into_response();
    }
    next.run(request).await
}

/// The answer of every dashboard page while `[admin] token` is not set.
fn off(dashboard: &Dashboard) -> Response {
    dashboard
        .fail(ApiError::NotFound(
            "the dashboard is off; set admin.token in the config to turn it on".into(),
        ))
        .into_response()
}

/// A local path to return to after a form, never another host: one leading `/` and then a
/// path with no second `/` or `\\` right after it, and no white space, control character or
/// backslash anywhere. Browsers drop tabs and line breaks from a `Location` and read `\\`
/// as `/`, so `/\t/evil.example` would otherwise lead off-site.
fn local_path(next: Option<&str>, fallback: &str) -> String {
    let local = |path: &str| {
        let mut chars = path.chars();
        chars.next() == Some('/')
            && !matches!(chars.next(), Some('/' | '\\'))
            && !path
                .chars()
                .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
    };
    match next {
        Some(path) if local(path) => path.to_owned(),
        _ => fallback.to_owned(),
    }
}

#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login_form(
    State(dashboard): State<Dashboard>,
    Query(query): Query<LoginQuery>,
) -> Response {
    if dashboard.app.admin.is_none() {
        return off(&dashboard);
    }
    dashboard.show(
        "login.html",
        &json!({ "next": local_path(query.next.as_deref(), "/") }),
    )
}

/// Checks the token, opens a session and hands the browser its cookie (`Secure` when a
/// reverse proxy says the browser came over HTTPS).
async fn login(
    State(dashboard): State<Dashboard>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(access) = &dashboard.app.admin else {
        return off(&dashboard);
    };
    let next = local_path(form.next.as_deref(), "/");
    let client = client.map_or(IpAddr::from([0, 0, 0, 0]), |Extension(ConnectInfo(a))| {
        a.ip()
    });
    let now = Instant::now();
    if let Some(wait) = dashboard.logins.wait(client, now) {
        let seconds = wait.as_secs() + 1;
        let mut answer = page(
            &dashboard.pages,
            StatusCode::TOO_MANY_REQUESTS,
            "login.html",
            &json!({ "next": next, "error": format!("Too many wrong tokens from this address; try again in {seconds} s.") }),
        );
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            answer.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return answer;
    }
    let token = form.token.trim();
    if !access.accepts(token) {
        dashboard.logins.failed(client, now);
        tracing::warn!(client = %client, "dashboard login refused: wrong admin token");
        return page(
            &dashboard.pages,
            StatusCode::UNAUTHORIZED,
            "login.html",
            &json!({ "next": next, "error": "That is not the admin token." }),
        );
    }
    dashboard.logins.succeeded(client);
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    match access.open(dashboard.app.store.as_ref()).await {
        Ok(session) => with_cookie(Redirect::to(&next), &access.cookie(&session, secure)),
        Err(e) => dashboard.fail(e.into()).into_response(),
    }
}

/// Ends the session on the server (on every replica) and in the browser.
async fn logout(State(dashboard): State<Dashboard>, headers: HeaderMap) -> Response {
    if let (Some(access), Some(Credential::Session(id))) =
        (&dashboard.app.admin, Credential::of(&headers))
        && let Err(e) = access.end(dashboard.app.store.as_ref(), id).await
    {
        return dashboard.fail(ApiError::Unavailable(e)).into_response();
    }
    with_cookie(Redirect::to("/login"), &AdminAccess::forget_cookie())
}

fn with_cookie(redirect: Redirect, cookie: &str) -> Response {
    let mut response = redirect.into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The last 24 hours: received, delivered, retrying and dead, and each connector's health.
async fn overview(State(dashboard): State<Dashboard>) -> Result<Response, PageError> {
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
async fn conversations(
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
struct Notice {
    /// How many deliveries a "retry all" queued.
    retried: Option<String>,
    /// The one delivery a retry button queued.
    retried_delivery: Option<String>,
}

impl Notice {
    fn shown(&self) -> serde_json::Value {
        json!({ "retried": number(&self.retried), "delivery": number(&self.retried_delivery) })
    }
}

/// A notice's count, if the parameter is one: anything else in it is not shown.
fn number(text: &Option<String>) -> Option<u64> {
    text.as_deref().and_then(|t| t.parse().ok())
}

/// A conversation's transcript (latest version), its versions and its deliveries with every
/// attempt.
async fn conversation(
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
struct DeadQuery {
    connector: Option<String>,
    cursor: Option<i64>,
    #[serde(flatten)]
    notice: Notice,
}

/// Dead letters, with a retry button each and one for all.
async fn dead(
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
    Ok(dashboard.show(
        "dead.html",
        &json!({
            "section": "dead",
            "page": page,
            "connector": query.connector.unwrap_or_default(),
            "connectors": connectors,
            "notice": query.notice.shown(),
        }),
    ))
}

#[derive(Debug, Default, Deserialize)]
struct RetryForm {
    next: Option<String>,
    connector: Option<String>,
}

/// Appends `KEY=N` to a local path, for the notice on the page returned to.
fn with_notice(path: &str, key: &str, n: u64) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}{key}={n}")
}

async fn retry_delivery(
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

async fn retry_all_dead(
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
struct QuarantineNotice {
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
async fn quarantine(
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
async fn quarantined(
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
struct ReingestForm {
    /// One body; absent with `all`.
    id: Option<i64>,
    /// Any value: every body.
    all: Option<String>,
}

async fn reingest(
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

async fn drop_quarantined(
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

/// The playground's state, as shown and as posted back.
#[derive(Debug, Default, Serialize)]
struct Playground {
    section: &'static str,
    samples: Vec<&'static str>,
    connectors: Vec<String>,
    sample: String,
    connector: String,
    payload: String,
    /// Template texts by name, edited or as loaded.
    templates: BTreeMap<String, String>,
    requests: Vec<api::PlannedItem>,
    error: Option<String>,
}

impl Playground {
    fn new(dashboard: &Dashboard) -> Self {
        let connectors = dashboard.app.registry.current().names();
        Self {
            section: "playground",
            samples: samples::SMARTSUPP.iter().map(|s| s.name).collect(),
            connector: connectors.first().cloned().unwrap_or_default(),
            connectors,
            sample: samples::DOCUMENTED.name.to_owned(),
            payload: samples::DOCUMENTED.body.to_owned(),
            ..Self::default()
        }
    }
}

/// The playground, with the first sample and connector picked.
async fn playground(State(dashboard): State<Dashboard>) -> Response {
    let mut state = Playground::new(&dashboard);
    state.render(&dashboard).await;
    dashboard.show("playground.html", &state)
}

/// Renders the posted payload through the chosen connector with the posted template texts,
/// saving nothing. Picking another sample or connector (`load`) starts from its originals.
async fn render_playground(
    State(dashboard): State<Dashboard>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let mut state = Playground::new(&dashboard);
    let mut load = false;
    for (name, value) in fields {
        match name.as_str() {
            "sample" => state.sample = value,
            "connector" => state.connector = value,
            "payload" => state.payload = value,
            "load" => load = true,
            _ => {
                if let Some(template) = name.strip_prefix(TEMPLATE_FIELD) {
                    state.templates.insert(template.to_owned(), value);
                }
            }
        }
    }
    if load {
        state.templates.clear();
        if let Some(sample) = samples::find(&state.sample) {
            state.payload = sample.body.to_owned();
        }
    }
    state.render(&dashboard).await;
    dashboard.show("playground.html", &state)
}

impl Playground {
    /// Fills in the requests (or the error) and the connector's template texts.
    async fn render(&mut self, dashboard: &Dashboard) {
        let payload = match serde_json::from_str::<Value>(&self.payload) {
            Ok(payload) => payload,
            Err(e) => {
                self.error = Some(format!("The payload is not JSON: {e}"));
                return;
            }
        };
        let request = PreviewRequest {
            connector: self.connector.clone(),
            payload,
            templates: self.templates.clone(),
        };
        match api::render_preview(&dashboard.app, request).await {
            Ok(preview) => {
                self.requests = preview.requests;
                self.templates = preview.templates;
            }
            Err(e) => self.error = Some(e.public_message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_template_parses() {
        pages().unwrap();
    }

    #[test]
    fn forms_return_only_to_local_paths() {
        assert_eq!(
            local_path(Some("/dead?connector=a"), "/"),
            "/dead?connector=a"
        );
        assert_eq!(local_path(Some("//evil.example/"), "/dead"), "/dead");
        assert_eq!(local_path(Some("https://evil.example/"), "/dead"), "/dead");
        assert_eq!(local_path(Some("/\\evil.example"), "/dead"), "/dead");
        for hostile in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/\r\n//evil.example",
            "/dead\\..\\",
            "/\u{0}/evil.example",
        ] {
            assert_eq!(local_path(Some(hostile), "/dead"), "/dead", "{hostile:?}");
        }
        assert_eq!(local_path(None, "/"), "/");
    }

    #[test]
    fn a_throttled_address_may_try_again_when_its_window_ends() {
        let throttle = LoginThrottle::default();
        let (client, other) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        let start = Instant::now();
        for _ in 0..LOGIN_FAILURES {
            assert_eq!(throttle.wait(client, start), None);
            throttle.failed(client, start);
        }
        assert_eq!(throttle.wait(client, start), Some(LOGIN_WINDOW));
        assert_eq!(
            throttle.wait(other, start),
            None,
            "another address is not held"
        );
        assert_eq!(throttle.wait(client, start + LOGIN_WINDOW), None);
        throttle.failed(client, start + LOGIN_WINDOW);
        assert_eq!(
            throttle.wait(client, start + LOGIN_WINDOW),
            None,
            "a new window"
        );
        throttle.succeeded(client);
        assert!(throttle.failures.lock().is_empty());
    }

    #[test]
    fn times_read_as_date_and_clock() {
        let state = tera::Context::new();
        let state = tera::State::new(&state);
        let shown = when_filter(
            tera::Value::from("2026-11-24T09:00:01.250Z"),
            Kwargs::default(),
            &state,
        );
        assert_eq!(shown, "2026-11-24 09:00:01");
    }
}

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

mod login;
mod playground;
mod views;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use include_dir::{Dir, include_dir};
use serde::Serialize;
use serde_json::json;
use tera::{Context, Kwargs, Tera};

use self::login::{LoginThrottle, login, login_form, logout};
use self::playground::{playground, render_playground};
use self::views::{
    conversation, conversations, dead, drop_quarantined, overview, quarantine, quarantined,
    reingest, retry_all_dead, retry_delivery, retry_fetches,
};
use crate::http::AppState;
use crate::http::auth::Admitted;
use crate::http::auth::cross_site;
use crate::http::error::ApiError;

/// The page templates, compiled in.
static PAGES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/src/http/pages");

/// What the dashboard handlers share.
#[derive(Clone)]
struct Dashboard {
    app: AppState,
    pages: Arc<Tera>,
    logins: Arc<LoginThrottle>,
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
        .route("/fetches/retry", post(retry_fetches))
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
        include_str!("../assets/dashboard.js"),
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

fn with_cookie(redirect: Redirect, cookie: &str) -> Response {
    let mut response = redirect.into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// A notice's count, if the parameter is one: anything else in it is not shown.
fn number(text: &Option<String>) -> Option<u64> {
    text.as_deref().and_then(|t| t.parse().ok())
}

/// Appends `KEY=N` to a local path, for the notice on the page returned to.
fn with_notice(path: &str, key: &str, n: u64) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}{key}={n}")
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

//! Logging in with the admin token (throttled per client), and out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use serde_json::json;

use super::{Dashboard, local_path, off, page, with_cookie};
use crate::http::auth::{AdminAccess, Credential};
use crate::http::error::ApiError;

/// Wrong tokens a client address may send in [`LOGIN_WINDOW`]; past them the form refuses
/// every try, right or wrong, until the window ends, so the token cannot be guessed at the
/// speed of the server.
pub(super) const LOGIN_FAILURES: u32 = 10;

/// See [`LOGIN_FAILURES`].
pub(super) const LOGIN_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// Addresses remembered at most; the oldest windows are forgotten first.
pub(super) const LOGIN_CLIENTS: usize = 10_000;

/// Wrong logins by client address: how many, since when.
#[derive(Debug, Default)]
pub(super) struct LoginThrottle {
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

#[derive(Debug, Default, Deserialize)]
pub(super) struct LoginQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    token: String,
    next: Option<String>,
}

pub(super) async fn login_form(
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
pub(super) async fn login(
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
pub(super) async fn logout(State(dashboard): State<Dashboard>, headers: HeaderMap) -> Response {
    if let (Some(access), Some(Credential::Session(id))) =
        (&dashboard.app.admin, Credential::of(&headers))
        && let Err(e) = access.end(dashboard.app.store.as_ref(), id).await
    {
        return dashboard.fail(ApiError::Unavailable(e)).into_response();
    }
    with_cookie(Redirect::to("/login"), &AdminAccess::forget_cookie())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

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
}

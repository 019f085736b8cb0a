//! The dashboard over HTTP, as a browser without scripts uses it: the login form and its
//! cookie, every page, the retry buttons, and the playground rendering unsaved edits.
//! `browser.rs` drives the same pages in a real Chromium.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, Options, TestApp, fixture, spawn_app, spawn_app_with};
use crate::html;
use chatbridge::store::DeliveryState;

/// A client that keeps the session cookie and does not follow redirects, so that each
/// answer can be checked.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.address.clone(),
            cookie: None,
        }
    }

    /// Logs in through the form; the answer to the form post.
    async fn log_in(&mut self, token: &str) -> reqwest::Response {
        let response = self
            .client
            .post(format!("{}/login", self.base))
            .form(&[("token", token), ("next", "/dead")])
            .send()
            .await
            .unwrap();
        if let Some(cookie) = response.headers().get(SET_COOKIE) {
            let cookie = cookie.to_str().unwrap();
            self.cookie = Some(cookie.split(';').next().unwrap().to_owned());
        }
        response
    }

    /// This client, with the session cookie `other` has.
    fn with_cookie_of(mut self, other: &Self) -> Self {
        self.cookie.clone_from(&other.cookie);
        self
    }

    fn with_cookie(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(cookie) => request.header(COOKIE, cookie),
            None => request,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.with_cookie(self.client.get(format!("{}{path}", self.base)))
            .send()
            .await
            .unwrap()
    }

    /// `GET path`, which must answer 200; the page's HTML.
    async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.text().await.unwrap()
    }

    async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.with_cookie(self.client.post(format!("{}{path}", self.base)))
            .form(fields)
            .send()
            .await
            .unwrap()
    }
}

fn location(response: &reqwest::Response) -> &str {
    response.headers()[LOCATION].to_str().unwrap()
}

#[tokio::test]
async fn pages_need_the_admin_token_entered_in_the_login_form() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);

    for path in ["/", "/conversations", "/dead", "/playground"] {
        let response = browser.get(path).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert!(location(&response).starts_with("/login"), "{path}");
    }
    let form = browser.page("/login?next=%2Fdead").await;
    assert!(form.contains(r#"name="token""#), "{form}");
    assert!(form.contains(r#"value="/dead""#), "{form}");

    let wrong = browser.log_in("not-the-token").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(browser.cookie.is_none());
    assert!(wrong.text().await.unwrap().contains("not the admin token"));

    // A `next` that a browser would read as another host leads home instead.
    for hostile in ["/\t/evil.example", "//evil.example", "/\\evil.example"] {
        let answer = browser
            .client
            .post(format!("{}/login", browser.base))
            .form(&[("token", ADMIN_TOKEN), ("next", hostile)])
            .send()
            .await
            .unwrap();
        assert_eq!(location(&answer), "/", "{hostile:?}");
    }

    let right = browser.log_in(ADMIN_TOKEN).await;
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&right), "/dead");
    let set = right.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let overview = browser.page("/").await;
    assert!(overview.contains("Last 24 hours"), "{overview}");
    assert!(
        overview.contains(r#"data-connector="helpdesk""#),
        "{overview}"
    );

    // The same cookie opens the admin API (the pages' scripts would use it).
    let api = browser.get("/api/conversations").await;
    assert_eq!(api.status(), 200);

    let logout = browser.post_form("/logout", &[]).await;
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    assert!(
        logout.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

/// The cookie holds a random session id, never the token: two logins, two ids. A logout ends
/// the session on the server, so the same cookie sent again (kept by an attacker, say) opens
/// neither the pages nor the API.
#[tokio::test]
async fn a_session_is_a_random_id_that_a_logout_ends_on_the_server() {
    let app = spawn_app().await;
    let mut first = Browser::new(&app);
    let mut second = Browser::new(&app);
    first.log_in(ADMIN_TOKEN).await;
    second.log_in(ADMIN_TOKEN).await;
    let [a, b] = [&first, &second].map(|b| b.cookie.clone().expect("a session cookie"));
    assert_ne!(a, b);
    for cookie in [&a, &b] {
        let (name, id) = cookie.split_once('=').unwrap();
        assert_eq!(name, "chatbridge_session");
        assert!(id.len() >= 43 && !cookie.contains(ADMIN_TOKEN), "{cookie}");
    }

    let logout = first.post_form("/logout", &[]).await;
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let page = first.get("/").await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert!(location(&page).starts_with("/login"));
    assert_eq!(first.get("/api/conversations").await.status(), 401);
    // The other session goes on.
    assert_eq!(second.get("/api/conversations").await.status(), 200);
}

/// A session ends `admin.session_lifetime` after its login, however busy.
#[tokio::test]
async fn a_session_ends_after_its_lifetime() {
    let app = spawn_app_with(Options {
        admin: format!("token = \"{ADMIN_TOKEN}\"\nsession_lifetime = \"1s\""),
        ..Options::default()
    })
    .await;
    let mut browser = Browser::new(&app);
    let login = browser.log_in(ADMIN_TOKEN).await;
    assert!(
        login.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=1"),
    );
    assert_eq!(browser.get("/").await.status(), 200);
    crate::helpers::wait_until(|| async {
        (browser.get("/").await.status() == StatusCode::SEE_OTHER).then_some(())
    })
    .await;
    assert_eq!(browser.get("/api/conversations").await.status(), 401);
}

/// Replicas on one store share sessions; a replica started with a new admin token refuses
/// every session opened with the old one.
#[tokio::test]
async fn replicas_share_sessions_and_a_new_token_ends_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::helpers::store_url(dir.path()).await;
    let replica = |token: &str| Options {
        store: Some(store.clone()),
        admin: format!("token = \"{token}\""),
        ..Options::default()
    };
    let first = spawn_app_with(replica(ADMIN_TOKEN)).await;
    let mut browser = Browser::new(&first);
    browser.log_in(ADMIN_TOKEN).await;

    let second = spawn_app_with(replica(ADMIN_TOKEN)).await;
    let on_second = Browser {
        base: second.address.clone(),
        ..Browser::new(&first)
    }
    .with_cookie_of(&browser);
    assert_eq!(on_second.get("/").await.status(), 200);

    let rotated = spawn_app_with(replica("rotated-admin-token-8c9d0e1f")).await;
    let on_rotated = Browser {
        base: rotated.address.clone(),
        ..Browser::new(&first)
    }
    .with_cookie_of(&browser);
    assert_eq!(on_rotated.get("/").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(on_rotated.get("/api/conversations").await.status(), 401);
}

#[tokio::test]
async fn the_conversation_list_pages_through_120_chats() {
    let app = spawn_app_with(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    for channel in 1..=120 {
        app.post_smartsupp(crate::helpers::seed_with_channel(channel))
            .await;
    }
    let mut browser = Browser::new(&app);
    browser.log_in(ADMIN_TOKEN).await;
    let mut path = "/conversations".to_owned();
    let mut seen = std::collections::BTreeSet::new();
    let mut pages = 0;
    loop {
        let page = browser.page(&path).await;
        pages += 1;
        for id in page
            .split("href=\"/conversations/smartsupp%3A208%3A")
            .skip(1)
        {
            seen.insert(id.split('"').next().unwrap().to_owned());
        }
        let Some(next) = page.split(r#"id="next" href=""#).nth(1) else {
            break;
        };
        path = next.split('"').next().unwrap().replace("&amp;", "&");
    }
    assert_eq!((pages, seen.len()), (3, 120));
}

#[tokio::test]
async fn pages_forbid_inline_scripts_and_framing_and_the_api_refuses_the_cookie_cross_site() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    browser.log_in(ADMIN_TOKEN).await;
    for path in [
        "/",
        "/login",
        "/conversations",
        "/dead",
        "/quarantine",
        "/playground",
        "/api/connectors",
    ] {
        let response = browser.get(path).await;
        let headers = response.headers().clone();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self';") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        let html = response.text().await.unwrap();
        for script in html.split("<script").skip(1) {
            assert!(
                script.starts_with(r#" src="/assets/dashboard.js""#),
                "{path}: an inline script: {script}"
            );
        }
        assert!(
            !html.contains(" onchange=") && !html.contains(" onclick="),
            "{path}"
        );
    }
    let script = browser.get("/assets/dashboard.js").await;
    assert_eq!(script.status(), 200);

    // The session cookie opens the API only from the dashboard's own pages.
    for (site, expected) in [
        ("same-origin", StatusCode::OK),
        ("same-site", StatusCode::FORBIDDEN),
        ("cross-site", StatusCode::FORBIDDEN),
    ] {
        let answer = browser
            .with_cookie(browser.client.post(format!("{}/api/reload", app.address)))
            .header("sec-fetch-site", site)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), expected, "{site}");
    }
    let bearer = app
        .api(reqwest::Method::POST, "/api/reload")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
}

#[tokio::test]
async fn after_ten_wrong_tokens_the_login_form_refuses_even_the_right_one_for_a_while() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    for _ in 0..10 {
        assert_eq!(
            browser.log_in("guess-1234567890abcdef").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let throttled = browser.log_in(ADMIN_TOKEN).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&wait), "{wait}");
    assert!(browser.cookie.is_none());
    // The API's bearer token is not the form: it still works.
    assert_eq!(
        app.api_get("/api/connectors").await["connectors"][0]["name"],
        "helpdesk"
    );
}

#[tokio::test]
async fn without_an_admin_token_there_is_no_dashboard() {
    let app = spawn_app_with(Options {
        admin: String::new(),
        ..Options::default()
    })
    .await;
    let browser = Browser::new(&app);
    for path in ["/", "/login", "/dead", "/playground"] {
        let response = browser.get(path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(response.text().await.unwrap().contains("admin.token"));
    }
    let api = browser.get("/api/conversations").await;
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_seed_is_found_shown_with_its_attempts_and_its_dead_delivery_retried() {
    let app = spawn_app().await;
    let id = app.dead_seeds(1).await[0].id;
    let mut browser = Browser::new(&app);
    browser.log_in(ADMIN_TOKEN).await;

    let overview = browser.page("/").await;
    assert!(
        overview.contains(r#"<div class="n" id="received">1</div>"#),
        "{overview}"
    );
    assert!(
        overview.contains(r#"<div class="n" id="dead">1</div>"#),
        "{overview}"
    );

    let found = browser
        .page("/conversations?email=DUSAN%40domain.com&status=completed")
        .await;
    assert!(
        found.contains(r#"href="/conversations/smartsupp%3A208%3A55039""#),
        "{found}"
    );
    assert!(
        found.contains(r#"<span class="chip dead">1 dead</span>"#),
        "{found}"
    );
    let none = browser.page("/conversations?status=missed").await;
    assert!(none.contains("No conversation matches"), "{none}");
    let bad = browser.get("/conversations?since=yesterday").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("RFC 3339"));

    let page = browser.page("/conversations/smartsupp%3A208%3A55039").await;
    for shown in [
        "Hi, how can i help you ?",
        "Dusan Kmet",
        "dusan@domain.com",
        "Test Trigger (automatic)",
        r#"<span class="chip dead">dead</span>"#,
        "HTTP 422",
        "Requester is suspended",
        &format!(r#"action="/deliveries/{id}/retry""#),
    ] {
        assert!(page.contains(shown), "{shown} in {page}");
    }

    let letters = browser.page("/dead").await;
    assert!(letters.contains(&format!(r#"id="dead-{id}""#)), "{letters}");

    // A form posted from another site's page is refused, and changes nothing.
    let forged = browser
        .with_cookie(
            browser
                .client
                .post(format!("{}/deliveries/{id}/retry", browser.base)),
        )
        .header("sec-fetch-site", "cross-site")
        .form(&[("next", "/dead")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.deliveries(Some(DeliveryState::Dead)).await.len(), 1);

    let retried = browser
        .post_form(&format!("/deliveries/{id}/retry"), &[("next", "/dead")])
        .await;
    assert_eq!(retried.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&retried), format!("/dead?retried_delivery={id}"));
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    assert_eq!(app.zendesk.tickets().len(), 1);
    let after = browser.page(location(&retried)).await;
    assert!(
        after.contains(&format!("delivery {id} queued again")),
        "{after}"
    );
    assert!(after.contains("No dead delivery"), "{after}");
    // A crafted notice shows nothing: only numbers the server wrote are said.
    let crafted = browser
        .page("/dead?retried=all%20your%20data%20is%20gone&retried_delivery=owned")
        .await;
    assert!(
        !crafted.contains("your data")
            && !crafted.contains("owned")
            && !crafted.contains("queued again"),
        "{crafted}"
    );

    // Retrying what is no longer dead says so.
    let again = browser
        .post_form(&format!("/deliveries/{id}/retry"), &[])
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(again.text().await.unwrap().contains("not dead"));
}

#[tokio::test]
async fn retry_all_puts_every_dead_delivery_of_a_connector_back() {
    let app = spawn_app().await;
    app.dead_seeds(2).await;
    let mut browser = Browser::new(&app);
    browser.log_in(ADMIN_TOKEN).await;

    let letters = browser.page("/dead?connector=helpdesk").await;
    assert!(
        letters.contains("Retry every dead delivery of helpdesk"),
        "{letters}"
    );
    let retried = browser
        .post_form("/dead/retry", &[("connector", "helpdesk")])
        .await;
    assert_eq!(location(&retried), "/dead?retried=2");
    app.wait_for_deliveries(DeliveryState::Delivered, 2).await;
    assert_eq!(app.zendesk.tickets().len(), 2);
}

#[tokio::test]
async fn a_fetch_given_up_is_shown_with_its_reason_and_retried_from_the_dead_letters_page() {
    use crate::fake_chat_apis::{self, Product};
    use crate::fetching::{event_file, post_event, source};
    let api = fake_chat_apis::start(Product::SmartsuppV2).await;
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        extra: source(Product::SmartsuppV2, &api),
        ..crate::helpers::Options::default()
    })
    .await;
    let gone = String::from_utf8(crate::helpers::fixture(event_file(Product::SmartsuppV2)))
        .unwrap()
        .replace("cv8Zp3LkQ1", "cvGone0000");
    post_event(&app.address, Product::SmartsuppV2, gone.into_bytes()).await;
    let id = crate::helpers::wait_until(|| async {
        let listed = app.api_get("/api/fetches?state=dead").await;
        listed["items"][0]["id"].as_i64()
    })
    .await;
    let mut browser = Browser::new(&app);
    browser.log_in(ADMIN_TOKEN).await;
    let letters = browser.page("/dead").await;
    assert!(
        letters.contains(&format!("id=\"fetch-{id}\"")) && letters.contains("HTTP 404"),
        "{letters}"
    );
    assert!(letters.contains("Retry every dead fetch"), "{letters}");
    let retried = browser
        .post_form("/fetches/retry", &[("id", &id.to_string())])
        .await;
    assert_eq!(location(&retried), "/dead?retried_fetches=1");
}

#[tokio::test]
async fn hostile_chat_text_is_shown_as_text() {
    let app = spawn_app().await;
    app.post_smartsupp(fixture("smartsupp/injection-attempts.json"))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    let mut browser = Browser::new(&app);
    browser.log_in(ADMIN_TOKEN).await;
    let listed = browser.page("/conversations").await;
    let href = listed
        .split(r#"href="/conversations/"#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let page = browser.page(&format!("/conversations/{href}")).await;
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains("&lt;script&gt;alert"), "{page}");
    assert!(!page.contains("<img src=x"), "{page}");

    // In the playground the payload sits in a textarea: `</textarea>` in a message must not
    // close it.
    let playground = browser
        .post_form(
            "/playground",
            &[
                ("sample", "injection-attempts"),
                ("connector", "helpdesk"),
                ("load", "1"),
            ],
        )
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        playground.matches("</textarea>").count(),
        playground.matches("<textarea").count()
    );
    assert!(playground.contains("&lt;/textarea&gt;"), "{playground}");
}

/// The transcript on a conversation's page, parsed as a browser does: the chat's markup is
/// text and its line breaks are `<br>`.
#[tokio::test]
async fn a_transcript_shows_markup_as_text_and_keeps_line_breaks() {
    let app = spawn_app().await;
    app.post_smartsupp(fixture("smartsupp/markup.json")).await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    let mut browser = Browser::new(&app);
    browser.log_in(ADMIN_TOKEN).await;
    let page = browser
        .page("/conversations/smartsupp%3A184203%3A910077")
        .await;
    let document = scraper::Html::parse_document(&page);
    let transcript = document
        .select(&scraper::Selector::parse("div.transcript").unwrap())
        .next()
        .expect("a transcript");
    let foreign = html::foreign(
        transcript,
        &["div", "p", "time", "span", "strong", "br"],
        &["class"],
    );
    assert!(foreign.is_empty(), "{foreign:?} in {}", transcript.html());
    let read = html::readable(transcript);
    for line in [
        "<b>Hello</b> & welcome <img src=x onerror=alert(6)>\nsecond line with \"quotes\" and 'apostrophes'\nthird line &amp; an entity",
        "Try <a href=\"https://evil.example\" onclick=\"steal()\">this link</a>\n\n</p></div><script>alert(7)</script>",
        "Mallory <img src=x onerror=alert(1)> \"O'Hara\" & Co:",
    ] {
        assert!(read.contains(line), "{line:?} in\n{read}");
    }
}

#[tokio::test]
async fn the_playground_renders_edited_templates_without_saving_them() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    browser.log_in(ADMIN_TOKEN).await;

    let first = browser.page("/playground").await;
    assert!(
        first.contains(r#"<option value="seed-example" selected>"#),
        "{first}"
    );
    assert!(first.contains("POST <code>"), "{first}");
    assert!(first.contains("Dusan Kmet"), "{first}");
    assert!(
        first.contains(r#"name="template:zendesk/ticket.json.tera""#),
        "{first}"
    );
    assert!(
        !first.contains(ADMIN_TOKEN) && !first.contains(crate::helpers::ZENDESK_TOKEN),
        "secrets are masked"
    );

    let template = app
        .api_post(
            "/api/preview",
            json!({ "connector": "helpdesk", "payload": serde_json::from_slice::<serde_json::Value>(&fixture("smartsupp/missed-chat.json")).unwrap() }),
        )
        .await
        .1["templates"]["zendesk/ticket.json.tera"]
        .as_str()
        .unwrap()
        .to_owned();
    let edited = template.replacen("\"subject\": \"", "\"subject\": \"EDITED ", 1);
    assert_ne!(edited, template, "the ticket template has a subject");
    let payload = String::from_utf8(fixture("smartsupp/missed-chat.json")).unwrap();
    let rendered = browser
        .post_form(
            "/playground",
            &[
                ("sample", "missed-chat"),
                ("connector", "helpdesk"),
                ("payload", &payload),
                ("template:zendesk/ticket.json.tera", &edited),
            ],
        )
        .await;
    assert_eq!(rendered.status(), 200);
    let rendered = rendered.text().await.unwrap();
    assert!(rendered.contains("EDITED "), "{rendered}");

    // Nothing was saved: a fresh playground renders the original.
    let fresh = browser.page("/playground").await;
    assert!(!fresh.contains("EDITED "), "{fresh}");

    // A template that does not parse is reported on the page, with the edit kept.
    let broken = edited
        .replacen("{{", "{{ conversation.", 1)
        .replacen("}}", "", 1);
    let refused = browser
        .post_form(
            "/playground",
            &[
                ("connector", "helpdesk"),
                ("payload", &payload),
                ("template:zendesk/ticket.json.tera", &broken),
            ],
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(refused.contains(r#"id="render-error""#), "{refused}");
    assert!(refused.contains("EDITED "), "{refused}");

    let not_json = browser
        .post_form(
            "/playground",
            &[("connector", "helpdesk"), ("payload", "{ not json")],
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(not_json.contains("The payload is not JSON"), "{not_json}");
}

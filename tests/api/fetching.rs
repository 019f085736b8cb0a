//! The fetch stage: Smartsupp v2, Crisp, LiveChat's `chat_deactivated` and Tidio carry no
//! transcript, so the event is kept and answered, and the conversation is read from the
//! product's API (a local stand-in that checks credentials and answers as the product
//! documents) before it becomes a version and a ticket. Failures are retried, throttled and
//! paused as deliveries are; nothing is lost to a `kill -9` between the answer and the fetch.

use std::time::Duration;

use chatbridge::model::Status;
use chatbridge::store::DeliveryState;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::fake_chat_apis::{self, ChatApi, Product, api_settings};
use crate::fake_hubspot;
use crate::fake_vendor::{FakeVendor, Scripted};
use crate::fake_zendesk::FakeZendesk;
use crate::helpers::{
    Options, TestApp, ZENDESK_EMAIL, ZENDESK_TOKEN, fixture, spawn_app_with, wait_until,
};
use crate::process::{serve, wait_for_delivered, write_config};

const SMARTSUPP_SECRET: &str = "smartsupp-test-secret";
const CRISP_SECRET: &str = "crisp-test-secret";
const LIVECHAT_SECRET: &str = "livechat-test-secret";
const TIDIO_SECRET: &str = "tidio-test-secret";

/// The source instance of `product`, fetching from `api`.
pub fn source(product: Product, api: &FakeVendor<ChatApi>) -> String {
    let (name, secret) = match product {
        Product::SmartsuppV2 => ("smartsupp-v2", SMARTSUPP_SECRET),
        Product::Crisp => ("crisp", CRISP_SECRET),
        Product::LiveChat => ("livechat", LIVECHAT_SECRET),
        Product::Tidio => ("tidio", TIDIO_SECRET),
    };
    format!(
        "[sources.{name}]\nsecret = \"{secret}\"\n[sources.{name}.api]\n{}\n",
        api_settings(product, api)
    )
}

/// The webhook fixture of `product` whose conversation is fetched.
pub fn event_file(product: Product) -> &'static str {
    match product {
        Product::SmartsuppV2 => "smartsupp-v2/conversation-closed.json",
        Product::Crisp => "crisp/session-set-state-resolved.json",
        Product::LiveChat => "livechat/chat-deactivated.json",
        Product::Tidio => "tidio/conversation-solved-by-operator.json",
    }
}

fn hmac_sha256_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Posts `body` as `product` does, signed now.
pub async fn post_event(app_address: &str, product: Product, body: Vec<u8>) -> reqwest::Response {
    let client = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let request = match product {
        Product::SmartsuppV2 => client
            .post(format!("{app_address}/hooks/smartsupp-v2"))
            .header(
                "x-smartsupp-hmac",
                hmac_sha256_hex(SMARTSUPP_SECRET, &[&body]),
            ),
        Product::Crisp => {
            let stamp = now.as_millis().to_string();
            let signature =
                hmac_sha256_hex(CRISP_SECRET, &[b"[", stamp.as_bytes(), b";", &body, b"]"]);
            client
                .post(format!("{app_address}/hooks/crisp"))
                .header("x-crisp-request-timestamp", stamp)
                .header("x-crisp-signature", signature)
        }
        Product::LiveChat => client.post(format!("{app_address}/hooks/livechat")),
        Product::Tidio => {
            let stamp = now.as_secs().to_string();
            let signature = hmac_sha256_hex(TIDIO_SECRET, &[&body, b"_", stamp.as_bytes()]);
            client
                .post(format!("{app_address}/hooks/tidio"))
                .header("x-tidio-signature", format!("t={stamp},s={signature}"))
        }
    };
    request.body(body).send().await.unwrap()
}

async fn app_for(product: Product, api: &FakeVendor<ChatApi>) -> TestApp {
    spawn_app_with(Options {
        extra: source(product, api),
        ..Options::default()
    })
    .await
}

/// The conversation a fetch stored, from the admin API.
async fn stored(app: &TestApp, id: &str) -> Value {
    let detail = app.api_get(&format!("/api/conversations/{id}")).await;
    detail["versions"]
        .as_array()
        .and_then(|v| v.last())
        .map(|v| v["conversation"].clone())
        .unwrap_or_else(|| panic!("{id} has no version: {detail}"))
}

/// Product, conversation id, status, e-mail, name, messages, agents, start of the subject.
type Row = (
    Product,
    &'static str,
    Status,
    &'static str,
    &'static str,
    usize,
    &'static [&'static str],
    &'static str,
);

const EXPECTED: &[Row] = &[
    (
        Product::SmartsuppV2,
        "smartsupp-v2:184203:cv8Zp3LkQ1",
        Status::Completed,
        "jana.mala@example.com",
        "Jana Malá",
        4,
        &["Martin Horák"],
        "Hello, my parcel has not arrived yet.",
    ),
    (
        Product::Crisp,
        "crisp:8c842203-7ed8-4e29-a608-7cf78a7d2fcc:session_700c65e1-85e2-465a-b9ac-ecb5ec2c9881",
        Status::Completed,
        "jana.mala@example.com",
        "Jana Malá",
        4,
        &["Eva Marková"],
        "Hi, can I still change my delivery slot?",
    ),
    (
        Product::LiveChat,
        "livechat:b1f2c3d4-0a1b-4c2d-8e3f-123456789abc:SF4KQ1L2ZC:SF4KQ1L2ZD",
        Status::Completed,
        "jana.mala@example.com",
        "Jana Malá",
        5,
        &["Martin Horák"],
        "Hi, is the Aurora X2 in stock in black?",
    ),
    (
        Product::Tidio,
        "tidio:k3bqz8ximv0lw2pe6jy4cusfo9tahnrd:0b9d6c3a-4e21-4f7a-9c58-3d2e1f0a9b87",
        Status::Completed,
        "jana.mala@example.com",
        "Jana Malá",
        4,
        &["Eva Marková"],
        "I was charged twice for order 20240611-0042.",
    ),
];

#[tokio::test]
async fn every_fetched_fixture_becomes_the_expected_conversation_and_a_zendesk_ticket() {
    for &(product, id, status, email, name, messages, agents, subject) in EXPECTED {
        let api = fake_chat_apis::start(product).await;
        let app = app_for(product, &api).await;
        let response = post_event(&app.address, product, fixture(event_file(product))).await;
        assert_eq!(response.status(), 202, "{product:?}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["conversation"], id, "{product:?}");
        assert!(answer["fetch"].is_i64(), "{answer}");

        app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
        let c = stored(&app, id).await;
        assert_eq!(c["status"], status.as_str(), "{product:?}");
        assert_eq!(c["visitor"]["email"], email, "{product:?}");
        assert_eq!(c["visitor"]["name"], name, "{product:?}");
        assert_eq!(
            c["messages"].as_array().unwrap().len(),
            messages,
            "{product:?}: {c}"
        );
        assert_eq!(c["agents"], json!(agents), "{product:?}");
        assert!(
            c["subject"].as_str().unwrap().starts_with(subject),
            "{product:?}: {}",
            c["subject"]
        );
        let tickets = app.zendesk.tickets();
        assert_eq!(tickets.len(), 1, "{product:?}");
        assert_eq!(tickets[0]["external_id"], format!("cb:helpdesk:{id}"));
        let pending = app.api_get("/api/fetches").await;
        assert!(pending["items"].as_array().unwrap().is_empty(), "{pending}");
    }
}

#[tokio::test]
async fn what_only_the_apis_carry_reaches_the_model() {
    let api = fake_chat_apis::start(Product::SmartsuppV2).await;
    let app = app_for(Product::SmartsuppV2, &api).await;
    post_event(
        &app.address,
        Product::SmartsuppV2,
        fixture(event_file(Product::SmartsuppV2)),
    )
    .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    let c = stored(&app, "smartsupp-v2:184203:cv8Zp3LkQ1").await;
    assert_eq!(c["source"], "smartsupp-v2");
    assert_eq!(c["tags"], json!(["delivery", "vip"]));
    assert_eq!(c["visitor"]["phone"], "+420 777 123 456");
    assert_eq!(c["visitor"]["country_code"], "CZ");
    assert_eq!(c["visitor"]["variables"]["orderId"]["label"], "Order");
    assert_eq!(c["messages"][0]["triggered_by"], "trigger");
    assert_eq!(
        c["messages"][3]["attachments"][0]["url"],
        "https://files.smartsupp.example/label-0042.pdf"
    );

    let crisp = fake_chat_apis::start(Product::Crisp).await;
    let app = app_for(Product::Crisp, &crisp).await;
    post_event(
        &app.address,
        Product::Crisp,
        fixture(event_file(Product::Crisp)),
    )
    .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    let c = stored(
        &app,
        "crisp:8c842203-7ed8-4e29-a608-7cf78a7d2fcc:session_700c65e1-85e2-465a-b9ac-ecb5ec2c9881",
    )
    .await;
    let texts: Vec<&str> = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert!(
        !texts.iter().any(|t| t.contains("premium plan")),
        "a private note stays out: {texts:?}"
    );
    assert_eq!(
        c["messages"][2]["attachments"][0]["name"],
        "order-confirmation.pdf"
    );
    assert!(
        c["visitor"]["user_agent"]
            .as_str()
            .is_some_and(|ua| ua.starts_with("Mozilla")),
        "{c}"
    );
    assert_eq!(c["ended_at"], "2024-06-13T09:46:52.004Z");
}

#[tokio::test]
async fn livechat_leaves_internal_events_out_and_reads_the_rating() {
    let api = fake_chat_apis::start(Product::LiveChat).await;
    let app = app_for(Product::LiveChat, &api).await;
    post_event(
        &app.address,
        Product::LiveChat,
        fixture(event_file(Product::LiveChat)),
    )
    .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    let c = stored(
        &app,
        "livechat:b1f2c3d4-0a1b-4c2d-8e3f-123456789abc:SF4KQ1L2ZC:SF4KQ1L2ZD",
    )
    .await;
    assert!(!c.to_string().contains("(internal)"), "{c}");
    assert_eq!(
        c["rating"],
        json!({"score": 1, "comment": "Quick and helpful"})
    );
    assert_eq!(c["tags"], json!(["stock"]));
    let kinds: Vec<&str> = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["visitor", "system", "agent", "visitor", "system"]);
    assert!(!c.to_string().contains(LIVECHAT_SECRET));
}

#[tokio::test]
async fn the_api_answering_500_twice_delivers_after_three_fetches() {
    let api = fake_chat_apis::start(Product::Tidio).await;
    api.script([
        Scripted::status(500, json!({"errors": [{"code": "internal_error"}]})),
        Scripted::status(500, json!({"errors": [{"code": "internal_error"}]})),
    ]);
    let app = app_for(Product::Tidio, &api).await;
    post_event(
        &app.address,
        Product::Tidio,
        fixture(event_file(Product::Tidio)),
    )
    .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    let contact_reads = api
        .requests_with("GET")
        .iter()
        .filter(|(_, r)| r.url.path() == "/contacts/0b9d6c3a-4e21-4f7a-9c58-3d2e1f0a9b87")
        .count();
    assert_eq!(
        contact_reads, 3,
        "two failed fetches and the one that worked"
    );
    assert_eq!(app.zendesk.tickets().len(), 1);
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("chatbridge_fetches_total{source=\"tidio\",outcome=\"retried\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn refused_api_credentials_pause_the_sources_fetches_and_keep_them() {
    let api = fake_chat_apis::start(Product::Crisp).await;
    api.with_mut(|a| a.accepting = false);
    let app = spawn_app_with(Options {
        extra: source(Product::Crisp, &api),
        delivery: crate::helpers::Delivery {
            // The pause after a refusal: `max_interval`, so the test sees it end.
            max_interval: "2s",
            ..crate::helpers::Delivery::default()
        },
        ..Options::default()
    })
    .await;
    post_event(
        &app.address,
        Product::Crisp,
        fixture(event_file(Product::Crisp)),
    )
    .await;
    // Seen together: the job kept with the refusal, and the source paused.
    let listed = wait_until(|| async {
        let listed = app.api_get("/api/fetches?state=pending").await;
        let refused = listed["items"][0]["last_error"].is_string();
        let paused = listed["paused"][0]["source"] == "crisp";
        (refused && paused).then_some(listed)
    })
    .await;
    let kept = &listed["items"][0];
    assert!(
        kept["last_error"].as_str().unwrap().contains("HTTP 401"),
        "{kept}"
    );
    assert_eq!(kept["attempts"], 0, "a pause uses up no attempt");
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("chatbridge_fetch_jobs{source=\"crisp\",state=\"pending\"} 1"),
        "{metrics}"
    );
    assert!(app.zendesk.tickets().is_empty());
    let dead = app.api_get("/api/fetches?state=dead").await;
    assert!(dead["items"].as_array().unwrap().is_empty());

    // The operator fixes the credentials: the next probe fetches, and the ticket is made.
    api.with_mut(|a| a.accepting = true);
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    assert_eq!(app.zendesk.tickets().len(), 1);
}

#[tokio::test]
async fn a_conversation_gone_at_the_product_is_kept_dead_with_the_answer_and_retried() {
    let api = fake_chat_apis::start(Product::SmartsuppV2).await;
    let app = app_for(Product::SmartsuppV2, &api).await;
    let event = String::from_utf8(fixture(event_file(Product::SmartsuppV2)))
        .unwrap()
        .replace("cv8Zp3LkQ1", "cvGone0000");
    post_event(&app.address, Product::SmartsuppV2, event.into_bytes()).await;
    let dead = wait_until(|| async {
        let listed = app.api_get("/api/fetches?state=dead").await;
        let item = listed["items"][0].clone();
        item.is_object().then_some(item)
    })
    .await;
    assert!(
        dead["last_error"].as_str().unwrap().contains("HTTP 404"),
        "{dead}"
    );
    assert_eq!(dead["conversation_id"], "smartsupp-v2:184203:cvGone0000");
    let (status, retried) = app
        .api_post("/api/fetches/retry", json!({"ids": [dead["id"]]}))
        .await;
    assert_eq!(
        (status.as_u16(), &retried["retried"]),
        (200, &json!(1)),
        "{retried}"
    );
    // Retried, it is asked for again, and given up again: the product still has no such
    // conversation.
    wait_until(|| async {
        let asked = api
            .requests_with("GET")
            .iter()
            .filter(|(_, r)| r.url.path() == "/v2/conversations/cvGone0000")
            .count();
        (asked >= 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_redelivered_event_fetches_once_and_a_rating_after_closing_updates_the_ticket() {
    let api = fake_chat_apis::start(Product::SmartsuppV2).await;
    let app = app_for(Product::SmartsuppV2, &api).await;
    let closed = fixture(event_file(Product::SmartsuppV2));
    assert_eq!(
        post_event(&app.address, Product::SmartsuppV2, closed.clone())
            .await
            .status(),
        202
    );
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    // The same event again (Smartsupp re-delivers on anything but 200): nothing new.
    let again = post_event(&app.address, Product::SmartsuppV2, closed).await;
    assert!(
        matches!(again.status().as_u16(), 200 | 202),
        "{}",
        again.status()
    );
    // A rating after closing: fetched again, a later version of the same conversation.
    let rated = json!({
        "type": "event_callback",
        "event": "conversation.rated",
        "timestamp": "2024-06-13T09:45:00.000Z",
        "account_id": "184203",
        "app_id": "ap9XkQ2mL",
        "data": {"conversation": {"id": "cv8Zp3LkQ1"}, "rating": {"value": 5, "text": "Perfect"}}
    });
    let response = post_event(
        &app.address,
        Product::SmartsuppV2,
        serde_json::to_vec(&rated).unwrap(),
    )
    .await;
    assert_eq!(response.status(), 202);
    app.wait_for_deliveries(DeliveryState::Delivered, 2).await;
    let c = stored(&app, "smartsupp-v2:184203:cv8Zp3LkQ1").await;
    assert_eq!(c["rating"], json!({"score": 5, "comment": "Perfect"}));
    let detail = app
        .api_get("/api/conversations/smartsupp-v2:184203:cv8Zp3LkQ1")
        .await;
    assert_eq!(detail["versions"].as_array().unwrap().len(), 2, "{detail}");
    assert_eq!(
        app.zendesk.tickets().len(),
        1,
        "the ticket is updated, not doubled"
    );
}

#[tokio::test]
async fn every_fetched_fixture_becomes_a_hubspot_note_on_the_one_contact() {
    const TOKEN: &str = "pat-na1-hubspot-fetch-token";
    let hubspot = fake_hubspot::start(TOKEN).await;
    let settings = format!(
        "access_token = \"{TOKEN}\"\nbase_url = \"{}\"",
        hubspot.uri()
    );
    let mut options = Options::only("crm", "hubspot", &settings);
    let mut apis = Vec::new();
    for &(product, ..) in EXPECTED {
        let api = fake_chat_apis::start(product).await;
        options.extra.push_str(&source(product, &api));
        apis.push(api);
    }
    let app = spawn_app_with(options).await;
    for &(product, ..) in EXPECTED {
        let response = post_event(&app.address, product, fixture(event_file(product))).await;
        assert_eq!(response.status(), 202, "{product:?}");
    }
    app.wait_for_deliveries(DeliveryState::Delivered, EXPECTED.len())
        .await;
    hubspot.with(|h| {
        assert_eq!(h.contacts.len(), 1, "Jana wrote through every product");
        assert_eq!(h.contacts[0].properties["email"], "jana.mala@example.com");
        assert_eq!(h.notes.len(), EXPECTED.len());
        h.assert_notes_hold(&[
            "It is at the depot and goes out today.",
            "Thursday morning, please.",
            "yes, we have 12 pieces in black",
            "the second charge is refunded now",
        ]);
    });
}

#[tokio::test]
async fn kill_9_between_the_answer_and_the_fetch_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let zendesk = FakeZendesk::start(ZENDESK_EMAIL, ZENDESK_TOKEN).await;
    let api = fake_chat_apis::start(Product::LiveChat).await;
    // A slow product API, so the kill lands while the fetch waits for it.
    api.delay(Duration::from_secs(5));
    let options = Options {
        extra: source(Product::LiveChat, &api),
        ..Options::default()
    };
    let config_path = write_config(dir.path(), &zendesk, options).await;
    let config = config_path.to_str().unwrap();

    let (mut first, address, _logs) = serve(config);
    let answered = post_event(
        &address,
        Product::LiveChat,
        fixture(event_file(Product::LiveChat)),
    )
    .await;
    assert_eq!(answered.status(), 202);
    wait_until(|| async { (!api.requests().is_empty()).then_some(()) }).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert!(zendesk.tickets().is_empty());

    api.delay(Duration::ZERO);
    let (mut second, _, _logs) = serve(config);
    wait_for_delivered(config, 1).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let tickets = zendesk.tickets();
    assert_eq!(tickets.len(), 1);
    assert_eq!(
        tickets[0]["external_id"],
        "cb:helpdesk:livechat:b1f2c3d4-0a1b-4c2d-8e3f-123456789abc:SF4KQ1L2ZC:SF4KQ1L2ZD"
    );
}

#[tokio::test]
async fn signed_timestamps_are_judged_by_the_window_and_tidio_takes_any_active_secret() {
    let crisp = fake_chat_apis::start(Product::Crisp).await;
    let tidio = fake_chat_apis::start(Product::Tidio).await;
    let app = spawn_app_with(Options {
        extra: source(Product::Crisp, &crisp) + &source(Product::Tidio, &tidio),
        ..Options::default()
    })
    .await;
    let client = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();

    // Crisp, signed right but ten minutes ago: a replay, refused.
    let body = fixture(event_file(Product::Crisp));
    let stale = (now.as_millis() - 600_000).to_string();
    let refused = client
        .post(format!("{}/hooks/crisp", app.address))
        .header("x-crisp-request-timestamp", &stale)
        .header(
            "x-crisp-signature",
            hmac_sha256_hex(CRISP_SECRET, &[b"[", stale.as_bytes(), b";", &body, b"]"]),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let reason: Value = refused.json().await.unwrap();
    assert!(
        reason["error"]
            .as_str()
            .unwrap()
            .contains("away from this machine's clock"),
        "{reason}"
    );
    let kept = app.api_get("/api/fetches").await;
    assert!(kept["items"].as_array().unwrap().is_empty(), "{kept}");

    // Tidio during a rotation: the old secret's `s=` first, the current one's second.
    let body = fixture(event_file(Product::Tidio));
    let stamp = now.as_secs().to_string();
    let old = hmac_sha256_hex("tidio-old-secret", &[&body, b"_", stamp.as_bytes()]);
    let current = hmac_sha256_hex(TIDIO_SECRET, &[&body, b"_", stamp.as_bytes()]);
    let accepted = client
        .post(format!("{}/hooks/tidio", app.address))
        .header(
            "x-tidio-signature",
            format!("t={stamp},s={old},s={current}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    // Events that end nothing, signed as the products sign them: 200, nothing kept.
    let message = post_event(
        &app.address,
        Product::Crisp,
        fixture("crisp/message-send.json"),
    )
    .await;
    assert_eq!(message.status(), 200);
    let answer: Value = message.json().await.unwrap();
    assert_eq!(answer["ignored"], "message:send");
    let kept = app.api_get("/api/fetches").await;
    assert!(kept["items"].as_array().unwrap().is_empty(), "{kept}");
}

#[tokio::test]
async fn smartsupp_v2_events_that_end_nothing_are_answered_200_not_refused() {
    let api = fake_chat_apis::start(Product::SmartsuppV2).await;
    let app = app_for(Product::SmartsuppV2, &api).await;
    for event in [
        "conversation.agent_replied",
        "visitor.connected",
        "contact.updated",
    ] {
        let body = json!({
            "type": "event_callback",
            "event": event,
            "timestamp": "2024-06-13T09:31:10.500Z",
            "account_id": "184203",
            "app_id": "ap9XkQ2mL",
            "data": {"conversation": {"id": "cv8Zp3LkQ1"}}
        });
        let response = post_event(
            &app.address,
            Product::SmartsuppV2,
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
        assert_eq!(response.status(), 200, "{event}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["ignored"], event);
    }
    assert!(api.requests().is_empty(), "nothing was fetched");
    assert!(app.store.quarantined(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn erasing_a_visitor_removes_the_fetch_jobs_that_name_them() {
    let api = fake_chat_apis::start(Product::SmartsuppV2).await;
    let app = app_for(Product::SmartsuppV2, &api).await;
    // A conversation the product no longer has, whose event names the contact's e-mail.
    let event = String::from_utf8(fixture(event_file(Product::SmartsuppV2)))
        .unwrap()
        .replace("cv8Zp3LkQ1", "cvGone0001")
        .replace(
            "\"contact_id\": \"ct4Rm9Qx2\",",
            "\"contact_id\": \"ct4Rm9Qx2\", \"contact_email\": \"Zoe.Forgetme@example.com\",",
        );
    post_event(&app.address, Product::SmartsuppV2, event.into_bytes()).await;
    wait_until(|| async {
        let listed = app.api_get("/api/fetches?state=dead").await;
        listed["items"][0].is_object().then_some(())
    })
    .await;
    let (status, report) = app
        .api_post("/api/forget", json!({"email": "zoe.forgetme@example.com"}))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["fetches"], 1, "{report}");
    let listed = app.api_get("/api/fetches").await;
    assert!(listed["items"].as_array().unwrap().is_empty(), "{listed}");
}

#[tokio::test]
async fn a_fetch_given_up_is_purged_when_a_dead_delivery_would_be() {
    use chatbridge::config::RetentionConfig;
    use chatbridge::maintenance::Retention;
    use chatbridge::model::Timestamp;
    let api = fake_chat_apis::start(Product::SmartsuppV2).await;
    let app = app_for(Product::SmartsuppV2, &api).await;
    let event = String::from_utf8(fixture(event_file(Product::SmartsuppV2)))
        .unwrap()
        .replace("cv8Zp3LkQ1", "cvGone0002");
    post_event(&app.address, Product::SmartsuppV2, event.into_bytes()).await;
    wait_until(|| async {
        let listed = app.api_get("/api/fetches?state=dead").await;
        listed["items"][0].is_object().then_some(())
    })
    .await;
    let retention = Retention::new(
        app.store.clone(),
        app.registry.clone(),
        &RetentionConfig {
            delivered_days: 30,
            dead_days: 90,
        },
    );
    let day = Duration::from_secs(86_400);
    let kept = retention
        .purge(Timestamp::now().plus(day * 89))
        .await
        .unwrap();
    assert_eq!(kept.fetches, 0, "kept for 90 days");
    let purged = retention
        .purge(Timestamp::now().plus(day * 91))
        .await
        .unwrap();
    assert_eq!(purged.fetches, 1);
    let listed = app.api_get("/api/fetches").await;
    assert!(listed["items"].as_array().unwrap().is_empty(), "{listed}");
}

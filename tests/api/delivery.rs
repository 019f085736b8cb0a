//! Delivery to Zendesk: the ticket, escaping, retries, throttling, dead letters, dedupe.

use std::time::Duration;

use chatbridge::store::DeliveryState;
use serde_json::{Value, json};

use crate::fake_vendor::Scripted;
use crate::helpers::{
    Delivery, Options, fixture, run_cli, seed_edited, seed_of, seed_unrated, spawn_app,
    spawn_app_with, wait_until,
};

#[tokio::test]
async fn the_seed_payload_becomes_one_zendesk_ticket() {
    let app = spawn_app().await;

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let delivered = app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let tickets = app.zendesk.tickets();
    assert_eq!(tickets.len(), 1);
    let ticket = &tickets[0];
    assert_eq!(
        ticket["requester"],
        json!({"name": "Dusan Kmet", "email": "dusan@domain.com"})
    );
    assert_eq!(ticket["subject"], "Hello");
    assert_eq!(ticket["external_id"], "cb:helpdesk:smartsupp:208:55039");
    assert_eq!(
        ticket["tags"],
        json!(["chatbridge", "smartsupp", "completed"])
    );
    let body = ticket["comment"]["body"].as_str().unwrap();
    for line in [
        "Dusan Kmet: Hello",
        "* John Doe joined the chat",
        "Test Trigger (automatic): This is triggered message",
        "John Doe: Hi, how can i help you ?",
        "Dusan Kmet: tanks.",
    ] {
        assert!(body.contains(line), "transcript lacks {line:?}:\n{body}");
    }
    let post = app
        .zendesk
        .requests()
        .into_iter()
        .find(|r| r.method.as_str() == "POST")
        .unwrap();
    assert_eq!(
        post.headers["authorization"].to_str().unwrap(),
        app.zendesk.expected_auth()
    );
    assert_eq!(
        post.headers["idempotency-key"].to_str().unwrap(),
        "cb:helpdesk:smartsupp:208:55039"
    );
    assert_eq!(
        delivered[0].remote.as_ref().unwrap()["create_ticket.ticket_id"],
        1
    );
}

/// Zendesk makes an end user from a name alone: a visitor who gave a name and no e-mail is
/// the requester, not the API user.
#[tokio::test]
async fn a_visitor_without_an_email_is_the_requester_by_name() {
    let app = spawn_app().await;
    app.post_smartsupp(seed_of(55039, "", "Dusan Kmet")).await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    assert_eq!(
        app.zendesk.tickets()[0]["requester"],
        json!({"name": "Dusan Kmet"})
    );

    // Neither a name nor an e-mail: no requester is made up.
    app.post_smartsupp(seed_edited(|chat| {
        chat["channel"]["id"] = json!(55040);
        chat["visitor"]["email"] = json!("");
        chat["visitor"]["name"] = json!(null);
    }))
    .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 2).await;
    assert_eq!(app.zendesk.tickets()[1].get("requester"), None);
}

#[tokio::test]
async fn a_later_rated_version_comments_on_the_ticket_instead_of_creating_another() {
    let app = spawn_app().await;
    app.post_smartsupp(seed_unrated()).await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let second = app
        .post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    assert_eq!(second.status(), 202);
    let delivered = app.wait_for_deliveries(DeliveryState::Delivered, 2).await;

    let tickets = app.zendesk.tickets();
    assert_eq!(
        tickets.len(),
        1,
        "a second version must not create a ticket"
    );
    let comments = tickets[0]["comments"]
        .as_array()
        .expect("a comment was added");
    assert_eq!(comments.len(), 1);
    let comment = comments[0]["body"].as_str().unwrap();
    assert!(comment.contains("version 2"), "{comment}");
    assert!(comment.contains("Rating: 5/5"), "{comment}");
    assert!(comment.contains("Dusan Kmet: tanks."), "{comment}");
    assert_eq!(comments[0]["public"], false);
    let put = app
        .zendesk
        .requests()
        .into_iter()
        .find(|r| r.method.as_str() == "PUT")
        .expect("the update is a PUT on the ticket");
    assert_eq!(put.url.path(), "/api/v2/tickets/1");
    let update = delivered.iter().find(|d| d.version == 2).unwrap();
    assert_eq!(update.remote.as_ref().unwrap()["add_comment.ticket_id"], 1);
}

#[tokio::test]
async fn chat_text_that_looks_like_json_or_templates_arrives_verbatim() {
    let app = spawn_app().await;
    let payload: Value =
        serde_json::from_slice(&fixture("smartsupp/injection-attempts.json")).unwrap();

    app.post_smartsupp(fixture("smartsupp/injection-attempts.json"))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let ticket = &app.zendesk.tickets()[0];
    let mut keys: Vec<&str> = ticket
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    // The visitor's "e-mail" carries a header injection and is not an address: the requester
    // is the visitor by name alone, the JSON-breaking name kept as text.
    assert_eq!(
        keys,
        [
            "comment",
            "external_id",
            "id",
            "requester",
            "subject",
            "tags"
        ]
    );
    assert_eq!(
        ticket["requester"],
        json!({"name": "Eve \"}, \"role\": \"admin"})
    );
    assert_eq!(
        ticket["subject"],
        "ok\"}, \"admin\": true, \"x\": {\"y\": \""
    );
    let body = ticket["comment"]["body"].as_str().unwrap();
    for message in payload["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] != "system")
    {
        let text = message["content"].as_str().unwrap();
        assert!(body.contains(text), "transcript lacks {text:?}");
    }
    assert!(body.contains("{{ 7*7 }}") && !body.contains("49"));
    assert_eq!(ticket["comment"].as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn two_server_errors_then_success_make_one_ticket_after_three_attempts() {
    let app = spawn_app().await;
    let unavailable = || Scripted::status(503, json!({"error": "Service Unavailable"}));
    app.zendesk.script([unavailable(), unavailable()]);

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let delivered = app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    assert_eq!(app.zendesk.tickets().len(), 1);
    assert_eq!(app.zendesk.posts().len(), 3);
    assert_eq!(delivered[0].attempts, 3);
    let attempts = app.store.attempts(delivered[0].id).await.unwrap();
    let outcomes: Vec<(&str, Option<u16>)> = attempts
        .iter()
        .map(|a| (a.outcome.as_str(), a.status))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("retry", Some(503)),
            ("retry", Some(503)),
            ("delivered", Some(201))
        ]
    );
}

#[tokio::test]
async fn a_429_with_retry_after_delays_the_next_attempt_and_costs_no_attempt() {
    let app = spawn_app_with(Options {
        delivery: Delivery {
            max_attempts: 1,
            ..Delivery::default()
        },
        ..Options::default()
    })
    .await;
    app.zendesk.script([Scripted::with_header(
        429,
        "Retry-After",
        "3",
        json!({"error": "TooManyRequests"}),
    )]);

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let posts = app.zendesk.posts();
    assert_eq!(posts.len(), 2);
    let waited = posts[1].0 - posts[0].0;
    assert!(waited >= Duration::from_secs(3), "retried after {waited:?}");
    // With max_attempts = 1 a counted failure would have been fatal: the 429 was not counted.
    assert_eq!(app.zendesk.tickets().len(), 1);
}

#[tokio::test]
async fn a_422_is_dead_after_one_attempt_and_listed_by_the_cli() {
    let app = spawn_app().await;
    app.zendesk.script([Scripted::status(422, json!({"error": "RecordInvalid", "details": {"requester": [{"description": "Requester: is suspended"}]}}))]);

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let dead = app.wait_for_deliveries(DeliveryState::Dead, 1).await;

    assert_eq!(dead[0].attempts, 1);
    assert_eq!(app.zendesk.posts().len(), 1);
    let reason = dead[0].last_error.as_deref().unwrap();
    assert!(
        reason.contains("HTTP 422") && reason.contains("Requester: is suspended"),
        "{reason}"
    );
    let config = app.config_path.to_str().unwrap();
    let (code, out, err) = run_cli(&["--config", config, "deliveries", "list", "--state", "dead"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("dead") && out.contains("smartsupp:208:55039") && out.contains("1 deliveries"),
        "{out}"
    );
}

#[tokio::test]
async fn a_dead_delivery_retried_by_the_cli_is_delivered() {
    let app = spawn_app().await;
    app.zendesk
        .script([Scripted::status(400, json!({"error": "bad"}))]);
    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let dead = app.wait_for_deliveries(DeliveryState::Dead, 1).await;

    let config = app.config_path.to_str().unwrap();
    let (code, out, err) = run_cli(&[
        "--config",
        config,
        "deliveries",
        "retry",
        &dead[0].id.to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 deliveries queued again"), "{out}");
    app.worker.try_run_once().await.unwrap();

    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    assert_eq!(app.zendesk.tickets().len(), 1);
}

#[tokio::test]
async fn a_lost_answer_does_not_create_a_second_ticket() {
    let app = spawn_app().await;
    app.zendesk.script([Scripted::WriteAndLoseAnswer]);

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let delivered = app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    assert_eq!(app.zendesk.tickets().len(), 1);
    assert_eq!(delivered[0].attempts, 2);
    assert_eq!(
        delivered[0].remote.as_ref().unwrap()["find_ticket.ticket_id"],
        1
    );
}

#[tokio::test]
async fn rejected_credentials_pause_the_connector_and_its_deliveries_wait() {
    // A second instance on the same fake Zendesk, with a token it refuses.
    let app = spawn_app_with(Options {
        extra: "[connectors.badauth]\ntype = \"zendesk\"\n[connectors.badauth.settings]\nsubdomain = \"acme\"\n\
                email = \"agent@acme.example\"\napi_token = \"revoked-token\"\nbase_url = \"{zendesk}\"\n"
            .into(),
        ..Options::default()
    })
    .await;

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;

    let row = wait_until(|| async {
        let rows = app.deliveries(None).await;
        rows.into_iter()
            .find(|d| d.connector == "badauth" && d.attempts >= 1)
    })
    .await;
    assert_eq!(
        row.state,
        DeliveryState::Pending,
        "credential failures never kill a delivery"
    );
    let attempts = app.store.attempts(row.id).await.unwrap();
    assert_eq!(
        (attempts[0].outcome.as_str(), attempts[0].status),
        ("waiting", Some(401))
    );
    assert_eq!(app.worker.open_circuits(), ["badauth"]);
    let ready: Value = app.get_json("/readyz").await;
    let badauth = ready["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["connector"] == "badauth")
        .unwrap();
    assert_eq!(badauth["circuit"], "open");
    // The reason is for the admin only: it can quote paths and ids.
    assert!(badauth.get("reason").is_none(), "{badauth}");
    let overview = app.api_get("/api/connectors").await;
    let badauth = overview["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "badauth")
        .unwrap();
    assert!(
        badauth["circuit_reason"].as_str().unwrap().contains("401"),
        "{badauth}"
    );
    // The healthy connector is not held up.
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    assert_eq!(app.zendesk.tickets().len(), 1);
}

//! Tokens, API keys and visitors' personal data never appear in logs.

use base64::Engine as _;
use chatbridge::store::DeliveryState;

use crate::fake_vendor::Scripted;
use crate::helpers::{
    ADMIN_TOKEN, HOOK_TOKEN, Options, OwnLogs, WEBHOOK_SECRET, ZENDESK_EMAIL, ZENDESK_TOKEN,
    captured_logs, fixture, spawn_app_with,
};

#[tokio::test]
async fn secrets_and_chat_content_never_appear_in_logs() {
    let own = OwnLogs::capture();
    let app = spawn_app_with(Options::default()).await;
    app.zendesk
        .script([Scripted::status(500, serde_json::json!({"error": "boom"}))]);

    app.post_raw(
        "/hooks/smartsupp/not-the-token",
        fixture("smartsupp/seed-example.json"),
    )
    .await;
    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    app.post_smartsupp(fixture("invalid/trailing-comma.json"))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let mine = own.text();
    assert!(
        mine.contains("delivery failed, will retry") && mine.contains("\"delivered\""),
        "this service's logging is captured: {mine}"
    );
    // What every test's services logged, this one's included: a secret is the same in all.
    let logs = mine + &captured_logs();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{ZENDESK_EMAIL}/token:{ZENDESK_TOKEN}"));
    for secret in [
        HOOK_TOKEN,
        ZENDESK_TOKEN,
        WEBHOOK_SECRET,
        ADMIN_TOKEN,
        basic.as_str(),
        "not-the-token",
    ] {
        assert!(!logs.contains(secret), "a secret is in the logs: {secret}");
    }
    for personal in [
        "dusan@domain.com",
        "Dusan Kmet",
        "tanks.",
        "Hi, how can i help you",
    ] {
        assert!(
            !logs.contains(personal),
            "personal data in the logs: {personal}"
        );
    }
}

#[tokio::test]
async fn a_conversation_id_cannot_forge_a_log_line() {
    let app = spawn_app_with(Options::default()).await;
    let forged = "77\n2026-12-06T00:00:00.000000Z ERROR forged-log-line: \u{1b}[31mred";
    let mut doc: serde_json::Value =
        serde_json::from_slice(&fixture("smartsupp/seed-example.json")).unwrap();
    doc["channel"]["id"] = forged.into();
    app.post_smartsupp(serde_json::to_vec(&doc).unwrap()).await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    // Every value that carries the id holds it escaped: no line break, no escape character.
    let mut seen = 0;
    for line in captured_logs().lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(id) = entry
            .pointer("/span/conversation_id")
            .or_else(|| entry.get("conversation_id"))
            .and_then(|v| v.as_str())
            .filter(|id| id.contains("forged-log-line"))
        else {
            continue;
        };
        seen += 1;
        assert!(!id.contains('\n') && !id.contains('\u{1b}'), "{line}");
        assert!(
            id.contains("77\\n2026") && id.contains("\\u{1b}[31m"),
            "{line}"
        );
    }
    assert!(seen > 0, "the delivery's span names the conversation");
}

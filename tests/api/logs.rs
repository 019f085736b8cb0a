//! Tokens, API keys and visitors' personal data never appear in logs.

use base64::Engine as _;
use chatbridge::store::DeliveryState;

use crate::fake_vendor::Scripted;
use crate::helpers::{
    ADMIN_TOKEN, HOOK_TOKEN, Options, WEBHOOK_SECRET, ZENDESK_EMAIL, ZENDESK_TOKEN, captured_logs,
    fixture, spawn_app_with,
};

#[tokio::test]
async fn secrets_and_chat_content_never_appear_in_logs() {
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

    let logs = captured_logs();
    assert!(
        logs.contains("delivery failed, will retry") && logs.contains("delivered"),
        "logging is captured"
    );
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

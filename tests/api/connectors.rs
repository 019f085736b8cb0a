//! The `webhook` and `file` connectors, and per-instance `when` filters.

use chatbridge::store::DeliveryState;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    Options, WEBHOOK_SECRET, fixture, receiver_answering, spawn_app_with, wait_until,
};

#[tokio::test]
async fn the_webhook_connector_posts_the_signed_conversation_to_matching_instances_only() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/in"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let app = spawn_app_with(Options {
        extra: format!(
            "[connectors.webhook_out]\ntype = \"webhook\"\nwhen = \"conversation.status == 'offline'\"\n\
             [connectors.webhook_out.settings]\nurl = \"{}/in\"\nsecret = \"{WEBHOOK_SECRET}\"\n",
            receiver.uri()
        ),
        ..Options::default()
    })
    .await;

    let seed: Value = app
        .post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await
        .json()
        .await
        .unwrap();
    let offline: Value = app
        .post_smartsupp(fixture("smartsupp/offline-message.json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (seed["deliveries"].as_u64(), offline["deliveries"].as_u64()),
        (Some(1), Some(2))
    );
    app.wait_for_deliveries(DeliveryState::Delivered, 3).await;

    let received = receiver.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(&request.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        request.headers["x-chatbridge-signature"].to_str().unwrap(),
        expected
    );
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["event"], "conversation.offline");
    assert_eq!(body["conversation"]["status"], "offline");
    assert_eq!(
        body["conversation"]["visitor"]["email"],
        "tomas.kral@example.net"
    );
    let key = request.headers["x-chatbridge-delivery"].to_str().unwrap();
    assert_eq!(
        key,
        format!(
            "cb:webhook_out:{}",
            offline["conversation"].as_str().unwrap()
        )
    );
}

/// A `when` may read the document as it was sent (`raw`), not only the normalized
/// conversation: ingest reads the document as JSON when a filter needs it.
#[tokio::test]
async fn a_when_filter_reading_the_document_as_sent_routes_at_ingest() {
    let receiver = receiver_answering(204).await;
    let app = spawn_app_with(Options {
        extra: format!(
            "[connectors.offline_only]\ntype = \"webhook\"\nwhen = \"raw.channel.isOffline\"\n\
             settings = {{ url = \"{}/in\" }}\n",
            receiver.uri()
        ),
        ..Options::default()
    })
    .await;
    let deliveries = |answer: Value| answer["deliveries"].as_u64();
    let seed = app
        .post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let offline = app
        .post_smartsupp(fixture("smartsupp/offline-message.json"))
        .await;
    assert_eq!(
        (
            deliveries(seed.json().await.unwrap()),
            deliveries(offline.json().await.unwrap())
        ),
        (Some(1), Some(2))
    );
    app.wait_for_deliveries(DeliveryState::Delivered, 3).await;
    assert_eq!(receiver.received_requests().await.unwrap().len(), 1);
}

/// A redirect is not followed: following a 302 would repeat the POST as a GET without its body,
/// and the GET's 200 would mark a chat delivered that never arrived.
#[tokio::test]
async fn a_redirecting_target_is_not_followed_and_the_delivery_is_dead_with_the_status() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/in"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/moved"))
        .mount(&receiver)
        .await;
    Mock::given(path("/moved"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let app = spawn_app_with(Options {
        extra: format!(
            "[connectors.webhook_out]\ntype = \"webhook\"\nsettings = {{ url = \"{}/in\" }}\n",
            receiver.uri()
        ),
        helpdesk: false,
        ..Options::default()
    })
    .await;

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let dead = app.wait_for_deliveries(DeliveryState::Dead, 1).await;

    let error = dead[0].last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("302"),
        "the reason names the status: {error}"
    );
    let paths: Vec<String> = receiver
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    assert_eq!(paths, ["POST /in"]);
}

#[tokio::test]
async fn the_file_connector_writes_each_delivery_to_its_folder() {
    let outbox = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Options {
        extra: format!(
            "[connectors.outbox]\ntype = \"file\"\nsettings = {{ dir = \"{}\" }}\n",
            outbox.path().display()
        ),
        ..Options::default()
    })
    .await;

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 2).await;

    let file = outbox.path().join("smartsupp_208_55039-v1.json");
    let bytes = wait_until(|| async { std::fs::read(&file).ok() }).await;
    let written: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(written["conversation"]["id"], "smartsupp:208:55039");
    assert_eq!(written["delivery"]["key"], "cb:outbox:smartsupp:208:55039");
    assert!(
        written["transcript"]
            .as_str()
            .unwrap()
            .contains("Dusan Kmet: Hello")
    );
}

#[tokio::test]
async fn a_400_character_channel_id_is_written_under_a_valid_name_and_readyz_shows_no_ids() {
    let outbox = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Options {
        helpdesk: false,
        extra: format!(
            "[connectors.outbox]\ntype = \"file\"\nsettings = {{ dir = \"{}\" }}\n",
            outbox.path().display()
        ),
        ..Options::default()
    })
    .await;
    let long_id = format!("../{}", "x".repeat(400));
    let mut doc: Value = serde_json::from_slice(&fixture("smartsupp/seed-example.json")).unwrap();
    doc["channel"]["id"] = long_id.clone().into();
    assert_eq!(
        app.post_smartsupp(serde_json::to_vec(&doc).unwrap())
            .await
            .status(),
        202
    );
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let names: Vec<String> = std::fs::read_dir(outbox.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].len() < 255 && !names[0].contains('/'), "{names:?}");
    let written: Value =
        serde_json::from_slice(&std::fs::read(outbox.path().join(&names[0])).unwrap()).unwrap();
    assert_eq!(
        written["conversation"]["id"],
        format!("smartsupp:208:{long_id}")
    );

    let ready = app.get_text("/readyz").await;
    assert!(!ready.contains("xxxx"), "{ready}");
    assert!(
        !ready.contains(&outbox.path().display().to_string()),
        "{ready}"
    );
}

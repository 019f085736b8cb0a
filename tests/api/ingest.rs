//! The Smartsupp POST hook: authentication, limits, quarantine, duplicates, versions.

use chatbridge::store::DeliveryState;
use serde_json::Value;

use crate::helpers::{HOOK_TOKEN, Options, fixture, spawn_app, spawn_app_with};

#[tokio::test]
async fn the_seed_payload_is_stored_and_answered_202_with_its_deliveries() {
    let app = spawn_app_with(Options {
        workers: false,
        ..Options::default()
    })
    .await;

    let response = app
        .post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;

    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["conversation"], "smartsupp:208:55039");
    assert_eq!(body["deliveries"], 1);
    assert_eq!(body["merged"], 0);
    assert_eq!(body["version"], 1);
    let pending = app.deliveries(Some(DeliveryState::Pending)).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].key, "cb:helpdesk:smartsupp:208:55039");
}

/// A version that arrives while an earlier one still waits for a connector joins that
/// delivery: the connector sends the chat once, as it is now, and the answer counts it as
/// merged, not as another delivery.
#[tokio::test]
async fn a_version_arriving_while_the_last_waits_is_merged_into_its_delivery() {
    let app = spawn_app_with(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    let first: Value = app
        .post_smartsupp(crate::helpers::seed_unrated())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&first["deliveries"], &first["merged"]),
        (&1.into(), &0.into())
    );

    let second: Value = app
        .post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["version"], 2);
    assert_eq!(
        (&second["deliveries"], &second["merged"]),
        (&0.into(), &1.into())
    );
    let pending = app.deliveries(Some(DeliveryState::Pending)).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].version, 2);
}

#[tokio::test]
async fn the_token_may_also_come_as_a_query_parameter() {
    let app = spawn_app_with(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    let response = app
        .post_raw(
            &format!("/hooks/smartsupp?token={HOOK_TOKEN}"),
            fixture("smartsupp/seed-example.json"),
        )
        .await;
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn a_wrong_token_is_refused_401_and_nothing_is_stored_or_sent() {
    let app = spawn_app().await;

    for path in [
        "/hooks/smartsupp/wrong-token",
        "/hooks/smartsupp?token=wrong",
        "/hooks/smartsupp",
    ] {
        let response = app
            .post_raw(path, fixture("smartsupp/seed-example.json"))
            .await;
        assert_eq!(response.status(), 401, "{path}");
    }

    assert!(app.deliveries(None).await.is_empty());
    assert!(app.store.quarantined(10).await.unwrap().is_empty());
    assert!(app.zendesk.requests().is_empty());
}

#[tokio::test]
async fn garbage_is_answered_400_with_a_reason_and_kept_in_quarantine() {
    let app = spawn_app_with(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    let cases = [
        ("invalid/form-encoded.txt", "not valid JSON"),
        ("invalid/trailing-comma.json", "not valid JSON"),
        ("invalid/array.json", "not an object"),
        ("invalid/missing-channel-id.json", "`channel.id`"),
    ];

    for (file, reason) in cases {
        let response = app.post_smartsupp(fixture(file)).await;
        assert_eq!(response.status(), 400, "{file}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(reason),
            "{file}: {body}"
        );
        assert!(body["quarantined"].as_i64().is_some(), "{file}: {body}");
    }

    let kept = app.store.quarantined(10).await.unwrap();
    assert_eq!(kept.len(), cases.len());
    assert!(kept.iter().all(|q| q.source == "smartsupp" && q.size > 0));
    assert!(app.deliveries(None).await.is_empty());
}

#[tokio::test]
async fn a_body_over_the_limit_is_answered_413() {
    let app = spawn_app_with(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    let mut body = fixture("smartsupp/seed-example.json");
    body.resize(3 * 1024 * 1024, b' ');

    let response = app.post_smartsupp(body).await;

    assert_eq!(response.status(), 413);
    assert!(app.deliveries(None).await.is_empty());
}

#[tokio::test]
async fn an_identical_resend_is_a_duplicate_and_still_makes_one_ticket() {
    let app = spawn_app().await;
    let seed = fixture("smartsupp/seed-example.json");
    assert_eq!(app.post_smartsupp(seed.clone()).await.status(), 202);
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let response = app.post_smartsupp(seed).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["duplicate"], true);
    assert_eq!(body["deliveries"], 0);
    assert_eq!(app.deliveries(None).await.len(), 1);
    assert_eq!(app.zendesk.tickets().len(), 1);
}

#[tokio::test]
async fn a_changed_payload_is_a_new_version_of_the_same_conversation() {
    let app = spawn_app().await;
    let seed = fixture("smartsupp/seed-example.json");
    app.post_smartsupp(seed.clone()).await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    let mut rated: Value = serde_json::from_slice(&seed).unwrap();
    rated["channel"]["ratingDesc"] = "Thanks, very helpful".into();

    let response = app
        .post_smartsupp(serde_json::to_vec(&rated).unwrap())
        .await;

    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["conversation"], "smartsupp:208:55039");
    assert_eq!(body["version"], 2);
    let delivered = app.wait_for_deliveries(DeliveryState::Delivered, 2).await;
    assert!(delivered.iter().any(|d| d.version == 2));
    // The second version finds the first version's ticket by its external_id.
    assert_eq!(app.zendesk.tickets().len(), 1);
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app_with(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    for path in ["/healthz", "/readyz"] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.headers().contains_key("x-request-id"));
    }
}

//! The `hubspot` connector against a stand-in that answers like HubSpot: contact upsert by
//! e-mail, the transcript as a note upserted on its key, the association; lost answers,
//! later versions, throttling and rejected tokens.

use std::time::Duration;

use chatbridge::store::DeliveryState;
use serde_json::{Value, json};

use crate::fake_hubspot::{self, HubSpot, NOTE_KEY_PROPERTY};
use crate::fake_vendor::{FakeVendor, Scripted};
use crate::helpers::{Options, TestApp, fixture, seed_unrated, spawn_app_with};

const TOKEN: &str = "pat-na1-hubspot-test-token";

async fn app_with(hubspot: &FakeVendor<HubSpot>, token: &str) -> TestApp {
    let settings = format!(
        "access_token = \"{token}\"\nbase_url = \"{}\"",
        hubspot.uri()
    );
    spawn_app_with(Options::only("crm", "hubspot", &settings)).await
}

fn one_of_each(hubspot: &FakeVendor<HubSpot>) -> (fake_hubspot::Object, fake_hubspot::Object) {
    hubspot.with(|h| {
        assert_eq!(h.contacts.len(), 1, "contacts: {:?}", h.contacts);
        assert_eq!(h.notes.len(), 1, "notes: {:?}", h.notes);
        assert_eq!(
            h.associations,
            [(h.notes[0].id.clone(), h.contacts[0].id.clone())]
        );
        (h.contacts[0].clone(), h.notes[0].clone())
    })
}

#[tokio::test]
async fn the_seed_chat_becomes_a_contact_with_the_transcript_as_an_associated_note() {
    let hubspot = fake_hubspot::start(TOKEN).await;
    let app = app_with(&hubspot, TOKEN).await;

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let delivered = app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let (contact, note) = one_of_each(&hubspot);
    assert_eq!(
        Value::Object(contact.properties),
        json!({"email": "dusan@domain.com", "firstname": "Dusan", "lastname": "Kmet"})
    );
    assert_eq!(
        note.properties[NOTE_KEY_PROPERTY],
        "cb:crm:smartsupp:208:55039:v1"
    );
    assert_eq!(note.properties["hs_timestamp"], "2015-03-27T15:34:36.687Z");
    let body = note.properties["hs_note_body"].as_str().unwrap();
    assert!(
        body.contains("<strong>Dusan Kmet:</strong> tanks.")
            && body.contains("&lt;dusan@domain.com&gt;"),
        "{body}"
    );
    assert_eq!(
        delivered[0].remote.as_ref().unwrap()["upsert_contact.contact_id"],
        json!(contact.id)
    );
}

#[tokio::test]
async fn a_lost_answer_leaves_one_contact_and_one_note() {
    let hubspot = fake_hubspot::start(TOKEN).await;
    // The contact goes through; the note is written but its answer never arrives.
    hubspot.script([Scripted::Pass, Scripted::WriteAndLoseAnswer]);
    let app = app_with(&hubspot, TOKEN).await;

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let delivered = app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    assert_eq!(delivered[0].attempts, 2);
    one_of_each(&hubspot);
    let note_writes = hubspot
        .requests_with("POST")
        .iter()
        .filter(|(_, r)| r.url.path().contains("/notes/"))
        .count();
    assert_eq!(
        note_writes, 2,
        "the note upsert was sent again, and changed nothing"
    );
}

#[tokio::test]
async fn a_later_version_adds_a_note_to_the_same_contact() {
    let hubspot = fake_hubspot::start(TOKEN).await;
    let app = app_with(&hubspot, TOKEN).await;

    app.post_smartsupp(seed_unrated()).await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 2).await;

    hubspot.with(|h| {
        assert_eq!(h.contacts.len(), 1);
        assert_eq!(h.notes.len(), 2);
        let contact = &h.contacts[0].id;
        assert!(h.associations.iter().all(|(_, c)| c == contact));
        assert_eq!(h.associations.len(), 2);
        let second = h.notes[1].properties["hs_note_body"].as_str().unwrap();
        assert!(
            second.contains("update 2") && second.contains("rating: 5"),
            "{second}"
        );
    });
}

#[tokio::test]
async fn a_429_waits_one_rate_limit_window() {
    let hubspot = fake_hubspot::start(TOKEN).await;
    hubspot.script([Scripted::with_header(
        429,
        "X-HubSpot-RateLimit-Interval-Milliseconds",
        "2000",
        json!({"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
               "errorType": "RATE_LIMIT", "correlationId": "c0ffee", "policyName": "TEN_SECONDLY_ROLLING"}),
    )]);
    let app = app_with(&hubspot, TOKEN).await;

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let writes = hubspot.requests_with("POST");
    let waited = writes[1].0 - writes[0].0;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    one_of_each(&hubspot);
}

#[tokio::test]
async fn a_rejected_token_pauses_the_connector_and_creates_nothing() {
    let hubspot = fake_hubspot::start(TOKEN).await;
    let app = app_with(&hubspot, "pat-na1-revoked").await;

    let row = app.first_attempt_of_the_seed().await;

    assert_eq!(row.state, DeliveryState::Pending);
    assert_eq!(app.worker.open_circuits(), ["crm"]);
    hubspot.with(|h| assert!(h.contacts.is_empty() && h.notes.is_empty()));
}

#[tokio::test]
async fn a_chat_without_an_email_is_not_queued_for_the_crm() {
    let hubspot = fake_hubspot::start(TOKEN).await;
    let app = app_with(&hubspot, TOKEN).await;

    let answer: Value = app
        .post_smartsupp(fixture("smartsupp/visitor-without-email.json"))
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(answer["deliveries"], 0);
    assert!(app.deliveries(None).await.is_empty());
}

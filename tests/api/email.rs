//! The `email` connector against a local SMTP server: the message's headers and both parts,
//! the stable Message-ID across a retry after a lost answer, a later version replying to the
//! first, and SMTP's reply classes (4xx retried, 5xx dead, 535 pauses the connector).

use chatbridge::store::DeliveryState;

use crate::fake_smtp::{FakeSmtp, Reply};
use crate::helpers::{Options, TestApp, fixture, seed_unrated, spawn_app_with};

const USER: &str = "bridge";
const PASSWORD: &str = "smtp-password-4d5e-s3cr3t";
const FIRST_ID: &str = "<cb.mail.smartsupp.208.55039.v1@acme.example>";

async fn app_with(smtp: &FakeSmtp, password: &str) -> TestApp {
    let settings = format!(
        "smtp_host = \"127.0.0.1\"\nsmtp_port = \"{}\"\ntls = \"none\"\n\
             username = \"{USER}\"\npassword = \"{password}\"\n\
             from = \"Chat bridge <chats@acme.example>\"\nto = \"support@acme.zendesk.example\"\n",
        smtp.port
    );
    spawn_app_with(Options::only("mail", "email", &settings)).await
}

/// A raw message with quoted-printable soft line breaks joined and `=3D` decoded, enough
/// to search its text.
fn readable(message: &str) -> String {
    message.replace("=\n", "").replace("=3D", "=")
}

/// The value of a header in a raw message.
fn header<'m>(message: &'m str, name: &str) -> Option<&'m str> {
    message.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test]
async fn the_seed_chat_arrives_as_text_and_html_from_the_bridge_replying_to_the_visitor() {
    let smtp = FakeSmtp::start(USER, PASSWORD).await;
    let app = app_with(&smtp, PASSWORD).await;

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let messages = smtp.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(
        header(m, "From"),
        Some("\"Chat bridge\" <chats@acme.example>")
    );
    assert_eq!(header(m, "To"), Some("support@acme.zendesk.example"));
    assert_eq!(
        header(m, "Reply-To"),
        Some("\"Dusan Kmet\" <dusan@domain.com>")
    );
    assert_eq!(header(m, "Subject"), Some("Chat with Dusan Kmet: Hello"));
    assert_eq!(header(m, "Message-ID"), Some(FIRST_ID));
    assert!(
        header(m, "Content-Type").is_some_and(|c| c.starts_with("multipart/alternative")),
        "{m}"
    );
    for part in ["Content-Type: text/plain", "Content-Type: text/html"] {
        assert!(m.contains(part), "no {part}: {m}");
    }
    let text = readable(m);
    assert!(text.contains("Dusan Kmet: tanks."), "{text}");
    assert!(
        text.contains("<strong>Dusan Kmet:</strong> tanks."),
        "{text}"
    );
}

#[tokio::test]
async fn a_lost_answer_sends_the_same_message_id_again() {
    let smtp = FakeSmtp::start(USER, PASSWORD).await;
    smtp.script([Reply::KeepAndHangUp]);
    let app = app_with(&smtp, PASSWORD).await;

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let delivered = app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    assert_eq!(delivered[0].attempts, 2);
    let ids: Vec<_> = smtp
        .messages()
        .iter()
        .map(|m| header(m, "Message-ID").unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        [FIRST_ID, FIRST_ID],
        "a help desk skips the second copy"
    );
}

#[tokio::test]
async fn a_later_version_replies_to_the_first_message() {
    let smtp = FakeSmtp::start(USER, PASSWORD).await;
    let app = app_with(&smtp, PASSWORD).await;

    app.post_smartsupp(seed_unrated()).await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 2).await;

    let messages = smtp.messages();
    let second = &messages[1];
    assert_eq!(
        header(second, "Message-ID"),
        Some("<cb.mail.smartsupp.208.55039.v2@acme.example>")
    );
    assert_eq!(header(second, "In-Reply-To"), Some(FIRST_ID));
    assert_eq!(header(second, "References"), Some(FIRST_ID));
    assert!(second.contains("update 2"), "{second}");
}

#[tokio::test]
async fn a_4xx_reply_is_retried_and_a_5xx_reply_is_dead() {
    let smtp = FakeSmtp::start(USER, PASSWORD).await;
    smtp.script([
        Reply::Code("451 4.7.1 Greylisted, try again later"),
        Reply::Code("552 5.3.4 Message size exceeds fixed limit"),
    ]);
    let app = app_with(&smtp, PASSWORD).await;

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    app.post_smartsupp(fixture("smartsupp/missed-chat.json"))
        .await;
    let dead = app.wait_for_deliveries(DeliveryState::Dead, 1).await;
    let delivered = app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    assert_eq!(delivered[0].attempts, 2);
    assert_eq!(dead[0].attempts, 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("552")),
        "{:?}",
        dead[0].last_error
    );
    assert_eq!(smtp.messages().len(), 1);
}

#[tokio::test]
async fn a_refused_password_pauses_the_connector() {
    let smtp = FakeSmtp::start(USER, PASSWORD).await;
    let app = app_with(&smtp, "wrong-password").await;

    let row = app.first_attempt_of_the_seed().await;

    assert_eq!(row.state, DeliveryState::Pending);
    assert_eq!(app.worker.open_circuits(), ["mail"]);
    assert!(smtp.messages().is_empty());
}

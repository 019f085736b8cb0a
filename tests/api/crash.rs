//! The process's life: `kill -9` at any moment loses nothing (acknowledged conversations
//! are delivered after a restart, exactly once at the target); SIGTERM under load lets
//! attempts in flight finish and leaves the rest for the next start; SIGHUP reloads
//! templates only when they are valid.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::fake_zendesk::FakeZendesk;
use crate::helpers::{Options, ZENDESK_EMAIL, ZENDESK_TOKEN, wait_until};
use crate::process::{post_seeds, serve, signal, wait_for_delivered, wait_for_log, write_config};

#[tokio::test]
async fn five_acknowledged_conversations_survive_kill_9_and_make_five_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let zendesk = FakeZendesk::start(ZENDESK_EMAIL, ZENDESK_TOKEN).await;
    // Slow answers, so the kill lands while deliveries are in flight.
    zendesk.delay(Duration::from_millis(300));
    let config_path = write_config(dir.path(), &zendesk, Options::default()).await;
    let config = config_path.to_str().unwrap();
    crate::helpers::captured_logs();

    let (mut first, address, _logs) = serve(config);
    post_seeds(&address, 9000..9005).await;
    wait_until(|| async { (!zendesk.requests().is_empty()).then_some(()) }).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    zendesk.delay(Duration::ZERO);
    let (mut second, _, _logs) = serve(config);
    let listed = wait_for_delivered(config, 5).await;
    second.kill().unwrap();
    second.wait().unwrap();

    let tickets = zendesk.tickets();
    let keys: BTreeSet<&str> = tickets
        .iter()
        .map(|t| t["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(tickets.len(), 5, "{listed}");
    assert_eq!(keys.len(), 5);
}

#[tokio::test]
async fn sigterm_under_load_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let zendesk = FakeZendesk::start(ZENDESK_EMAIL, ZENDESK_TOKEN).await;
    // Slow answers, so SIGTERM lands while attempts are in flight.
    zendesk.delay(Duration::from_millis(200));
    let config_path = write_config(dir.path(), &zendesk, Options::default()).await;
    let config = config_path.to_str().unwrap();

    let (mut first, address, logs) = serve(config);
    post_seeds(&address, 9100..9140).await;
    wait_until(|| async { (zendesk.tickets().len() >= 3).then_some(()) }).await;
    signal(&first, "TERM");
    wait_for_log(&logs, "shutting down");
    let status = first.wait().unwrap();
    assert!(status.success(), "a clean exit: {status}");
    let before_restart = zendesk.tickets().len();
    assert!(before_restart < 40, "SIGTERM came while work was left");

    zendesk.delay(Duration::ZERO);
    let (mut second, _, _logs) = serve(config);
    wait_for_delivered(config, 40).await;
    signal(&second, "TERM");
    second.wait().unwrap();

    let tickets = zendesk.tickets();
    let keys: BTreeSet<&str> = tickets
        .iter()
        .map(|t| t["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        (tickets.len(), keys.len()),
        (40, 40),
        "one ticket per conversation"
    );
    let creates = zendesk
        .posts()
        .iter()
        .filter(|(_, body)| body["ticket"].is_object())
        .count();
    assert_eq!(creates, 40, "no attempt was repeated after SIGTERM");
}

#[tokio::test]
async fn sighup_with_a_broken_template_is_refused_and_the_old_templates_stay() {
    let dir = tempfile::tempdir().unwrap();
    let zendesk = FakeZendesk::start(ZENDESK_EMAIL, ZENDESK_TOKEN).await;
    let templates = dir.path().join("templates");
    let ticket = templates.join("zendesk/ticket.json.tera");
    std::fs::create_dir_all(ticket.parent().unwrap()).unwrap();
    let good = r#"{ "ticket": { "subject": "v1 {{ conversation.visitor.name }}", "comment": { "body": "hello" }, "external_id": "{{ delivery.key }}" } }"#;
    std::fs::write(&ticket, good).unwrap();
    let options = Options {
        top: format!("templates_dir = \"{}\"", templates.display()),
        ..Options::default()
    };
    let config_path = write_config(dir.path(), &zendesk, options).await;
    let (mut child, address, logs) = serve(config_path.to_str().unwrap());

    std::fs::write(&ticket, good.replace("name }}", "name ")).unwrap();
    signal(&child, "HUP");
    let refused = wait_for_log(
        &logs,
        "reload refused; the running connectors and templates stay",
    );
    assert!(
        refused["error"].as_str().unwrap().contains("templates"),
        "{refused}"
    );
    post_seeds(&address, 9201..9202).await;
    wait_until(|| async { (zendesk.tickets().len() == 1).then_some(()) }).await;
    assert_eq!(zendesk.tickets()[0]["subject"], "v1 Dusan Kmet");

    std::fs::write(&ticket, good.replace("v1", "v2")).unwrap();
    signal(&child, "HUP");
    wait_for_log(&logs, "reloaded connectors and templates");
    post_seeds(&address, 9202..9203).await;
    wait_until(|| async { (zendesk.tickets().len() == 2).then_some(()) }).await;
    assert_eq!(zendesk.tickets()[1]["subject"], "v2 Dusan Kmet");
    signal(&child, "TERM");
    child.wait().unwrap();
}

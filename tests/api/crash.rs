//! The process's life: `kill -9` at any moment loses nothing (acknowledged conversations
//! are delivered after a restart, exactly once at the target); SIGTERM under load lets
//! attempts in flight finish and leaves the rest for the next start; SIGHUP reloads
//! templates only when they are valid.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::fake_zendesk::FakeZendesk;
use crate::helpers::{
    HOOK_TOKEN, Options, PATIENCE, ZENDESK_EMAIL, ZENDESK_TOKEN, config_text, run_cli,
    seed_with_channel, wait_until,
};

/// Writes the config of a `serve` subprocess, logging JSON lines that [`serve`] reads.
fn write_config(
    dir: &std::path::Path,
    zendesk: &FakeZendesk,
    options: Options,
) -> std::path::PathBuf {
    let options = Options {
        extra: options.extra + "[log]\nformat = \"json\"\nfilter = \"info\"\n",
        ..options
    };
    let path = dir.join("config.toml");
    std::fs::write(&path, config_text(dir, zendesk, &options)).unwrap();
    path
}

/// Starts `chatbridge serve` and returns it with its address, read from its JSON log.
fn serve(config: &str) -> (Child, String, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatbridge"))
        .args(["--config", config, "serve"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("chatbridge starts");
    let (lines, logged) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let address = loop {
        let line = logged
            .recv_timeout(PATIENCE)
            .expect("chatbridge logs its address");
        let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if entry["message"] == "listening" {
            break entry["address"].as_str().unwrap().to_owned();
        }
    };
    (child, format!("http://{address}"), logged)
}

#[tokio::test]
async fn five_acknowledged_conversations_survive_kill_9_and_make_five_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let zendesk = FakeZendesk::start(ZENDESK_EMAIL, ZENDESK_TOKEN).await;
    // Slow answers, so the kill lands while deliveries are in flight.
    zendesk.delay(Duration::from_millis(300));
    let config_path = write_config(dir.path(), &zendesk, Options::default());
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

/// Posts the seed chat as conversations `channels` to a `serve` subprocess; each must be
/// acknowledged.
async fn post_seeds(address: &str, channels: std::ops::Range<u64>) {
    let client = reqwest::Client::new();
    for channel in channels {
        let response = client
            .post(format!("{address}/hooks/smartsupp/{HOOK_TOKEN}"))
            .body(seed_with_channel(channel))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
}

/// Waits until the CLI lists `count` delivered deliveries in the store of `config`; returns
/// the listing.
async fn wait_for_delivered(config: &str, count: usize) -> String {
    let expected = format!("{count} deliveries");
    wait_until(|| async {
        let (_, out, _) = run_cli(&[
            "--config",
            config,
            "deliveries",
            "list",
            "--state",
            "delivered",
            "--limit",
            "1000",
        ]);
        out.contains(&expected).then_some(out)
    })
    .await
}

/// Sends `signal` (`TERM`, `HUP`) to a running chatbridge.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits for a log line with this message.
fn wait_for_log(logged: &mpsc::Receiver<String>, message: &str) -> serde_json::Value {
    loop {
        let line = logged
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no `{message}` in the log"));
        let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if entry["message"] == message {
            return entry;
        }
    }
}

#[tokio::test]
async fn sigterm_under_load_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let zendesk = FakeZendesk::start(ZENDESK_EMAIL, ZENDESK_TOKEN).await;
    // Slow answers, so SIGTERM lands while attempts are in flight.
    zendesk.delay(Duration::from_millis(200));
    let config_path = write_config(dir.path(), &zendesk, Options::default());
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
    let config_path = write_config(dir.path(), &zendesk, options);
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

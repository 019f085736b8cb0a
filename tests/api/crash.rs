//! `kill -9` at any moment loses nothing: acknowledged conversations are delivered after a
//! restart, exactly once at the target.

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
    let options = Options {
        extra: "[log]\nformat = \"json\"\nfilter = \"info\"\n".into(),
        ..Options::default()
    };
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config_text(dir.path(), &zendesk, &options)).unwrap();
    let config = config_path.to_str().unwrap();
    crate::helpers::captured_logs();
    let client = reqwest::Client::new();

    let (mut first, address, _logs) = serve(config);
    for channel in 0..5 {
        let response = client
            .post(format!("{address}/hooks/smartsupp/{HOOK_TOKEN}"))
            .body(seed_with_channel(9000 + channel))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    wait_until(|| async { (!zendesk.requests().is_empty()).then_some(()) }).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    zendesk.delay(Duration::ZERO);
    let (mut second, _, _logs) = serve(config);
    let listed = wait_until(|| async {
        let (_, out, _) = run_cli(&[
            "--config",
            config,
            "deliveries",
            "list",
            "--state",
            "delivered",
        ]);
        out.contains("5 deliveries").then_some(out)
    })
    .await;
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

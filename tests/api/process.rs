//! `chatbridge serve` as a subprocess: its config, its address read from its JSON log,
//! posting to it, signalling it, and reading what it stored through the CLI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use crate::fake_zendesk::FakeZendesk;
use crate::helpers::{
    HOOK_TOKEN, Options, PATIENCE, config_text, run_cli, seed_with_channel, store_url, wait_until,
};

/// Writes the config of a `serve` subprocess, logging JSON lines that [`serve`] reads.
pub async fn write_config(dir: &Path, zendesk: &FakeZendesk, options: Options) -> PathBuf {
    let options = Options {
        extra: options.extra + "[log]\nformat = \"json\"\nfilter = \"info\"\n",
        ..options
    };
    let path = dir.join("config.toml");
    let store = store_url(dir).await;
    std::fs::write(&path, config_text(&store, zendesk, &options)).unwrap();
    path
}

/// Starts `chatbridge serve` and returns it with its address, read from its JSON log.
pub fn serve(config: &str) -> (Child, String, mpsc::Receiver<String>) {
    // For the test's own clients that talk to it.
    chatbridge::tls::install_provider();
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

/// Posts the seed chat as conversations `channels` to a `serve` subprocess; each must be
/// acknowledged.
pub async fn post_seeds(address: &str, channels: std::ops::Range<u64>) {
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
pub async fn wait_for_delivered(config: &str, count: usize) -> String {
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
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits for a log line with this message.
pub fn wait_for_log(logged: &mpsc::Receiver<String>, message: &str) -> serde_json::Value {
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

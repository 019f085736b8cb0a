//! What the benchmarks share: starting a server process and reading its address, its peak
//! memory, and latency percentiles.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `chatbridge` executable under test: `CHATBRIDGE_BENCH_BIN` when set, otherwise the
/// one Cargo built with this benchmark. They differ: a benchmark build turns on the features
/// the dev-dependencies ask of shared crates (wiremock's HTTP/2, for one), which adds code, and
/// resident memory, that a `cargo build --release` binary does not have. `benches/scale.sh`
/// points it at the release build, so memory is measured on what users run.
pub fn server_binary() -> std::path::PathBuf {
    std::env::var_os("CHATBRIDGE_BENCH_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_chatbridge").into(), Into::into)
}

/// The seed payload split where its channel id goes, so every request is a new
/// conversation.
pub struct SeedTemplate {
    before: String,
    after: String,
}

impl SeedTemplate {
    pub fn new() -> Self {
        let seed = chatbridge::samples::DOCUMENTED.body;
        let (before, after) = seed
            .split_once("\"id\": 55039")
            .expect("seed has a channel id");
        Self {
            before: before.to_owned(),
            after: after.to_owned(),
        }
    }

    /// The payload of conversation `id`.
    pub fn body(&self, id: u64) -> String {
        format!("{}\"id\": {id}{}", self.before, self.after)
    }
}

/// A request a load sender posts: a JSON body, and the headers that prove it (a signature).
pub struct Payload {
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl From<String> for Payload {
    fn from(body: String) -> Self {
        Self {
            body,
            headers: Vec::new(),
        }
    }
}

/// Posts one payload with its headers; whether it was acknowledged (2xx, answer read).
pub async fn post_payload(client: &reqwest::Client, url: &str, payload: Payload) -> bool {
    let request = payload
        .headers
        .into_iter()
        .fold(client.post(url), |r, (name, value)| r.header(name, value));
    match request
        .header("content-type", "application/json")
        .body(payload.body)
        .send()
        .await
    {
        Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
        Err(_) => false,
    }
}

/// The value of `--name N` on the command line, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts `command` and reads its address from what it prints: chatbridge's `listening
/// address=…` log line (text format) or a JSON line with an `address`. Keeps draining its
/// output so a full pipe never blocks it.
pub fn start_server(command: &mut Command) -> (Child, String) {
    let mut server = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("server starts");
    let stdout = server.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("server printed its address")
            .expect("readable output");
        let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let Some(address) = entry["address"].as_str() {
            break address.to_owned();
        }
        if let Some(address) = line
            .split("address=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
        {
            break address.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (server, address)
}

/// `VmHWM`: the process's peak resident set since it started, in KiB.
pub fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The `q` quantile of sorted `latencies`.
pub fn quantile(latencies: &[Duration], q: f64) -> Duration {
    latencies
        .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

//! Durable-ingest load benchmark: `cargo bench --bench ingest [-- --seconds 10 --senders 64]`.
//!
//! Starts the release `chatbridge` binary on a fresh SQLite store (`synchronous = full`, one
//! connector, so every ack also commits a delivery row; no workers, so only ingest is
//! measured), and, in a second process, a minimal axum server that only parses the JSON body
//! (the ceiling any JSON webhook receiver on this machine can reach). Both get the same load:
//! `--senders` concurrent keep-alive connections posting the seed payload, each request a new
//! conversation. Prints acks/s, p50/p99 ack latency and the server's peak RSS for each, and
//! the ratio, which is what stays comparable on a noisy machine.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SEED: &str = include_str!("../tests/fixtures/smartsupp/seed-example.json");
const CEILING_FLAG: &str = "--ceiling-server";

struct Settings {
    seconds: u64,
    senders: usize,
    warmup: u64,
}

fn settings() -> Settings {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Settings {
        seconds: value("--seconds", 10),
        senders: value("--senders", 64) as usize,
        warmup: value("--warmup", 2),
    }
}

fn main() {
    if std::env::args().any(|a| a == CEILING_FLAG) {
        return ceiling_server();
    }
    let settings = settings();
    chatbridge::app::install_tls_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://{}\"\nsynchronous = \"full\"\n\
             [sources.smartsupp]\ntoken = \"bench-token\"\n[delivery]\nworkers = 0\n[log]\nformat = \"json\"\n\
             [connectors.outbox]\ntype = \"file\"\nsettings = {{ dir = \"{}\" }}\n",
            dir.path().join("bench.db").display(),
            dir.path().join("outbox").display()
        ),
    )
    .expect("config written");

    println!(
        "durable ingest benchmark: {} senders, {} s per target after {} s warm-up",
        settings.senders, settings.seconds, settings.warmup
    );
    let chatbridge = Command::new(env!("CARGO_BIN_EXE_chatbridge"))
        .args(["--config", config.to_str().expect("utf-8 path"), "serve"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .spawn()
        .expect("chatbridge starts");
    let durable = runtime.block_on(measure(
        chatbridge,
        "/hooks/smartsupp/bench-token",
        &settings,
    ));

    let ceiling = Command::new(std::env::current_exe().expect("own path"))
        .arg(CEILING_FLAG)
        .stdout(Stdio::piped())
        .spawn()
        .expect("ceiling server starts");
    let parse_only = runtime.block_on(measure(ceiling, "/", &settings));

    println!();
    println!(
        "{:<34} {:>10} {:>9} {:>9} {:>10} {:>7}",
        "target", "acks/s", "p50 ms", "p99 ms", "peak RSS", "errors"
    );
    for (name, r) in [
        ("chatbridge (SQLite, synchronous=FULL)", &durable),
        ("parse-only axum (ceiling)", &parse_only),
    ] {
        println!(
            "{:<34} {:>10.0} {:>9.2} {:>9.2} {:>7.1} MB {:>7}",
            name,
            r.rate,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.peak_rss_kb as f64 / 1024.0,
            r.errors
        );
    }
    println!(
        "ratio durable / ceiling: {:.2}",
        durable.rate / parse_only.rate
    );
}

struct Report {
    rate: f64,
    p50: Duration,
    p99: Duration,
    peak_rss_kb: u64,
    errors: u64,
}

/// Reads the server's address from its first log line, loads it, and stops it.
async fn measure(mut server: Child, path: &str, settings: &Settings) -> Report {
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
    };
    // Keep draining its output so a full pipe never blocks it.
    std::thread::spawn(move || for _ in lines {});
    let url = format!("http://{address}{path}");
    let (before, after) = SEED
        .split_once("\"id\": 55039")
        .expect("seed has a channel id");
    let (before, after) = (Arc::new(before.to_owned()), Arc::new(after.to_owned()));
    let next_id = Arc::new(AtomicU64::new(
        1_000_000 + u64::from(std::process::id()) * 10_000_000,
    ));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(settings.senders)
        .build()
        .expect("client");

    let mut senders = Vec::new();
    for _ in 0..settings.senders {
        let (client, url, before, after) =
            (client.clone(), url.clone(), before.clone(), after.clone());
        let (next_id, measuring, stop) = (next_id.clone(), measuring.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let body = format!("{before}\"id\": {id}{after}");
                let started = Instant::now();
                let ok = match client.post(&url).body(body).send().await {
                    Ok(response) => {
                        response.status().is_success() && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        latencies.push(started.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(settings.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(settings.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for sender in senders {
        let (mut l, e) = sender.await.expect("sender finished");
        latencies.append(&mut l);
        errors += e;
    }
    let peak_rss_kb = peak_rss_kb(server.id());
    if std::env::var_os("BENCH_THREADS").is_some() {
        for entry in std::fs::read_dir(format!("/proc/{}/task", server.id()))
            .unwrap()
            .flatten()
        {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let comm = stat
                .split('(')
                .nth(1)
                .and_then(|r| r.split(')').next())
                .unwrap_or("?")
                .to_owned();
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
                + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
            println!("thread {comm:<24} cpu {:.1} s", ticks as f64 / 100.0);
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Report {
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        peak_rss_kb,
        errors,
    }
}

/// `VmHWM`: the process's peak resident set since it started.
fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The ceiling: accepts a POST, parses the body as JSON, answers 202. Nothing else.
fn ceiling_server() {
    use axum::body::Bytes;
    use axum::http::StatusCode;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(|body: Bytes| async move {
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(_) => (StatusCode::ACCEPTED, "{\"ok\":true}"),
                    Err(_) => (StatusCode::BAD_REQUEST, "{\"ok\":false}"),
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!(
            "{}",
            serde_json::json!({ "address": listener.local_addr().expect("address").to_string() })
        );
        axum::serve(listener, app).await.expect("serve");
    });
}

//! Durable-ingest load benchmark:
//! `cargo bench --bench ingest [-- --seconds 12 --rounds 3 --senders 64]`.
//!
//! Starts the release `chatbridge` binary on a fresh SQLite store (`synchronous = full`, one
//! connector, so every ack also commits a delivery row; no workers, so only ingest is
//! measured) twice: once taking Smartsupp's POST hook (a token in the URL), once taking
//! tawk.to's signed transcripts (an HMAC over every body, checked before it is read); and, in
//! another process, a minimal axum server that only parses the JSON body (the ceiling any
//! JSON webhook receiver on this machine can reach). All get the same load: `--senders`
//! concurrent keep-alive connections, each request a new conversation. The targets are
//! loaded in alternating rounds (`--rounds`, splitting `--seconds` per target), so a slow
//! spell of the machine hits them alike. Prints acks/s, p50/p99 ack latency and the server's
//! peak RSS for each, and the ratios, which are what stay comparable on a noisy machine.
//! `BENCH_THREADS=1` also prints each server thread's CPU time.

use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

mod common;
#[path = "common/load.rs"]
mod load;

use load::{Posted, Until};

const CEILING_FLAG: &str = "--ceiling-server";

struct Settings {
    seconds: u64,
    rounds: u64,
    senders: usize,
    warmup: u64,
}

fn settings() -> Settings {
    let value = common::arg;
    Settings {
        seconds: value("--seconds", 12),
        rounds: value("--rounds", 3).max(1),
        senders: value("--senders", 64) as usize,
        warmup: value("--warmup", 2),
    }
}

fn main() {
    if std::env::args().any(|a| a == CEILING_FLAG) {
        return ceiling_server();
    }
    let settings = settings();
    chatbridge::tls::install_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    // One store per chatbridge target: each has the machine's disk to itself in its rounds.
    let config = |name: &str| {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://{}\"\nsynchronous = \"full\"\n\
                 [sources.smartsupp]\ntoken = \"bench-token\"\n[sources.tawk]\nsecret = \"{TAWK_SECRET}\"\n\
                 [delivery]\nworkers = 0\n\
                 [connectors.outbox]\ntype = \"file\"\nsettings = {{ dir = \"{}\" }}\n",
                dir.path().join(format!("{name}.db")).display(),
                dir.path().join(format!("{name}-outbox")).display()
            ),
        )
        .expect("config written");
        config
    };
    let (hook_config, signed_config) = (config("hook"), config("signed"));

    println!(
        "durable ingest benchmark: {} senders, {} s per target in {} alternating rounds, after {} s warm-up each",
        settings.senders, settings.seconds, settings.rounds, settings.warmup
    );
    let mut targets = [
        Target::start(
            "chatbridge, Smartsupp POST hook",
            Command::new(common::server_binary())
                .args([
                    "--config",
                    hook_config.to_str().expect("utf-8 path"),
                    "serve",
                ])
                .env_remove("RUST_LOG"),
            "/hooks/smartsupp/bench-token",
            Body::Smartsupp,
        ),
        Target::start(
            "chatbridge, tawk.to signed (HMAC)",
            Command::new(common::server_binary())
                .args([
                    "--config",
                    signed_config.to_str().expect("utf-8 path"),
                    "serve",
                ])
                .env_remove("RUST_LOG"),
            "/hooks/tawk",
            Body::TawkSigned,
        ),
        Target::start(
            "parse-only axum (ceiling)",
            Command::new(std::env::current_exe().expect("own path")).arg(CEILING_FLAG),
            "/",
            Body::Smartsupp,
        ),
    ];
    let round = Duration::from_secs(settings.seconds) / settings.rounds as u32;
    let next_id = Arc::new(AtomicU64::new(
        1_000_000 + u64::from(std::process::id()) * 10_000_000,
    ));
    runtime.block_on(async {
        for target in &mut targets {
            load(
                target,
                Duration::from_secs(settings.warmup),
                settings.senders,
                &next_id,
            )
            .await;
        }
        for _ in 0..settings.rounds {
            for target in &mut targets {
                let sample = load(target, round, settings.senders, &next_id).await;
                target.samples.push(sample);
            }
        }
    });

    println!();
    println!(
        "{:<38} {:>8} {:>8} {:>8} {:>11} {:>7}",
        "target", "acks/s", "p50 ms", "p99 ms", "peak RSS", "errors"
    );
    let mut rates = Vec::new();
    for target in &mut targets {
        let report = target.stop();
        println!(
            "{:<38} {:>8.0} {:>8.2} {:>8.2} {:>8.1} MB {:>7}",
            target.name,
            report.rate,
            report.p50.as_secs_f64() * 1e3,
            report.p99.as_secs_f64() * 1e3,
            report.peak_rss_kb as f64 / 1024.0,
            report.errors
        );
        rates.push(report.rate);
    }
    println!("ratio durable / ceiling: {:.2}", rates[0] / rates[2]);
    println!("ratio signed / POST hook: {:.2}", rates[1] / rates[0]);
}

/// The webhook secret of the signed target.
const TAWK_SECRET: &str = "bench-tawk-secret";

/// What a target is sent.
#[derive(Debug, Clone, Copy)]
enum Body {
    /// The seed chat as Smartsupp's POST hook sends it.
    Smartsupp,
    /// A tawk.to transcript, signed as tawk.to signs it.
    TawkSigned,
}

/// A server under test and what its rounds measured.
struct Target {
    name: &'static str,
    server: Child,
    url: String,
    body: Body,
    samples: Vec<Posted>,
}

/// One round of load against one target.
struct Report {
    rate: f64,
    p50: Duration,
    p99: Duration,
    peak_rss_kb: u64,
    errors: u64,
}

impl Target {
    /// Starts the server and reads its address from what it prints.
    fn start(name: &'static str, command: &mut Command, path: &str, body: Body) -> Self {
        let (server, address) = common::start_server(command);
        Self {
            name,
            server,
            url: format!("http://{address}{path}"),
            body,
            samples: Vec::new(),
        }
    }

    /// Stops the server and sums up its rounds.
    fn stop(&mut self) -> Report {
        let peak_rss_kb = common::peak_rss_kb(self.server.id());
        if std::env::var_os("BENCH_THREADS").is_some() {
            print_thread_cpu(self.server.id());
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
        let mut latencies: Vec<Duration> = self
            .samples
            .iter()
            .flat_map(|s| s.latencies.iter().copied())
            .collect();
        let elapsed: Duration = self.samples.iter().map(|s| s.elapsed).sum();
        let errors = self.samples.iter().map(|s| s.errors).sum();
        latencies.sort_unstable();
        let at = |q: f64| common::quantile(&latencies, q);
        Report {
            rate: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: at(0.50),
            p99: at(0.99),
            peak_rss_kb,
            errors,
        }
    }
}

/// `senders` keep-alive connections posting new conversations to `target` for `duration`.
async fn load(
    target: &Target,
    duration: Duration,
    senders: usize,
    next_id: &Arc<AtomicU64>,
) -> Posted {
    let stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let stop = stop.clone();
        async move {
            tokio::time::sleep(duration).await;
            stop.store(true, Ordering::Relaxed);
        }
    };
    let urls = [target.url.clone()];
    let body: Arc<dyn Fn(u64) -> common::Payload + Send + Sync> = match target.body {
        Body::Smartsupp => {
            let seed = common::SeedTemplate::new();
            Arc::new(move |id| seed.body(id).into())
        }
        Body::TawkSigned => Arc::new(tawk_signed),
    };
    let (posted, ()) = tokio::join!(
        load::post(&urls, senders, Until::Told(stop), next_id, body),
        timer
    );
    posted
}

/// The tawk.to transcript fixture as chat `id`, with its `X-Tawk-Signature`.
fn tawk_signed(id: u64) -> common::Payload {
    use hmac::{Hmac, Mac};
    const TRANSCRIPT: &str = include_str!("../tests/fixtures/tawk/chat-transcript-created.json");
    let body = TRANSCRIPT.replace(
        "b2f7c3e0-2967-11ef-9c4d-2f1e8a6b7c01",
        &format!("bench-chat-{id}"),
    );
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TAWK_SECRET.as_bytes()).expect("any key");
    mac.update(body.as_bytes());
    common::Payload {
        headers: vec![("x-tawk-signature", hex::encode(mac.finalize().into_bytes()))],
        body,
    }
}

/// Each thread's CPU time (user + system), from /proc.
fn print_thread_cpu(pid: u32) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for entry in tasks.flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let name = stat
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
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        println!("  thread {name:<16} cpu {:.1} s", ticks as f64 / 100.0);
    }
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

//! Hostile senders against the release binary: `cargo bench --bench edges [-- --seconds 10]`.
//!
//! Three scenes, each on a fresh SQLite store, with a legitimate sender posting the seed chat
//! one request at a time throughout and its acknowledgement latencies recorded:
//!
//! 1. `authors`: a 2 MiB payload whose messages carry ~75,000 distinct author names, posted
//!    alone and then twice at once while `/healthz` is polled; prints each acknowledgement
//!    time and the slowest health check.
//! 2. `wrong token`: 200 senders with a wrong token, each announcing a 2 MiB body and
//!    trickling it in 16 KiB pieces; reconnecting when refused.
//! 3. `half heads`: 500 connections that send half a request head and then nothing;
//!    reopened when closed.
//!
//! Prints, per scene, the server's peak RSS and the legitimate posts' p50/p99 and failures.

use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

mod common;

const TOKEN: &str = "bench-token";
const BODY_LIMIT: usize = 2 * 1024 * 1024;

fn main() {
    let seconds = common::arg("--seconds", 10);
    chatbridge::tls::install_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "hostile senders, {seconds} s per scene; the legitimate sender posts one chat at a time\n"
    );
    println!(
        "{:<12} {:>10} {:>12} {:>12} {:>10}",
        "scene", "peak RSS", "legit p50", "legit p99", "failed"
    );
    runtime.block_on(async {
        authors().await;
        let hold = Duration::from_secs(seconds);
        scene("wrong token", hold, |address, stop| {
            for _ in 0..200 {
                tokio::spawn(trickle_wrong_token(address.clone(), stop.clone()));
            }
        })
        .await;
        scene("half heads", hold, |address, stop| {
            for _ in 0..500 {
                tokio::spawn(half_head(address.clone(), stop.clone()));
            }
        })
        .await;
    });
}

/// A chatbridge on a fresh store, receiving only.
struct Server {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = {BODY_LIMIT}\n\
                 [store]\nurl = \"sqlite://{}\"\n[sources.smartsupp]\ntoken = \"{TOKEN}\"\n\
                 [delivery]\nworkers = 0\n\
                 [connectors.outbox]\ntype = \"file\"\nsettings = {{ dir = \"{}\" }}\n",
                dir.path().join("bench.db").display(),
                dir.path().join("outbox").display()
            ),
        )
        .expect("config written");
        let (child, address) = common::start_server(
            Command::new(common::server_binary())
                .args(["--config", config.to_str().expect("utf-8 path"), "serve"])
                .env_remove("RUST_LOG"),
        );
        Self {
            child,
            address,
            _dir: dir,
        }
    }

    fn hook_url(&self) -> String {
        format!("http://{}/hooks/smartsupp/{TOKEN}", self.address)
    }

    fn stop(mut self) -> u64 {
        let rss = common::peak_rss_kb(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        rss
    }
}

/// A name of three letters or digits for each number below 62³.
fn short_name(n: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    [n / (62 * 62), n / 62, n]
        .iter()
        .map(|d| DIGITS[d % 62] as char)
        .collect()
}

/// A body of one chat whose messages each carry another agent's name, as many as fit in the
/// body limit (about 75,000).
fn many_authors() -> (String, usize) {
    let mut body = String::from(
        "{\"accountId\":208,\"channel\":{\"id\":900001},\"visitor\":{\"name\":\"V\"},\"messages\":[",
    );
    let mut authors = 0;
    while body.len() < BODY_LIMIT - 64 {
        if authors > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"type\":\"bot\",\"name\":\"{}\"}}",
            short_name(authors)
        ));
        authors += 1;
    }
    body.push_str("]}");
    (body, authors)
}

async fn authors() {
    let server = Server::start();
    let client = reqwest::Client::new();
    let (body, authors) = many_authors();
    let post = |body: String| {
        let client = client.clone();
        let url = server.hook_url();
        async move {
            let started = Instant::now();
            let ok = common::post_payload(&client, &url, body.into()).await;
            (ok, started.elapsed())
        }
    };
    let (ok, alone) = post(body.clone()).await;
    assert!(ok, "the large payload was acknowledged");
    let stop = Arc::new(AtomicBool::new(false));
    let health = {
        let url = format!("http://{}/healthz", server.address);
        let client = client.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answered = client.get(&url).send().await.is_ok();
                assert!(answered, "health check answered");
                slowest = slowest.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            slowest
        })
    };
    let with_id = |id: u32| body.replacen("900001", &id.to_string(), 1);
    let (a, b) = tokio::join!(post(with_id(900002)), post(with_id(900003)));
    stop.store(true, Ordering::Relaxed);
    let slowest = health.await.expect("health poller");
    let rss = server.stop();
    println!(
        "{:<12} {:>7.1} MB   {} bytes, {authors} distinct authors: alone {:.0} ms; two at once {:.0} and {:.0} ms ({}); slowest /healthz meanwhile {:.1} ms",
        "authors",
        rss as f64 / 1024.0,
        body.len(),
        alone.as_secs_f64() * 1e3,
        a.1.as_secs_f64() * 1e3,
        b.1.as_secs_f64() * 1e3,
        if a.0 && b.0 {
            "both acknowledged"
        } else {
            "NOT acknowledged"
        },
        slowest.as_secs_f64() * 1e3,
    );
}

/// Runs `hostile` against a fresh server for `hold` while a legitimate sender posts.
async fn scene(name: &str, hold: Duration, hostile: impl FnOnce(String, Arc<AtomicBool>)) {
    let server = Server::start();
    let stop = Arc::new(AtomicBool::new(false));
    hostile(server.address.clone(), stop.clone());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let seed = common::SeedTemplate::new();
    let ids = AtomicU64::new(1);
    let mut latencies = Vec::new();
    let mut failed = 0;
    let until = Instant::now() + hold;
    while Instant::now() < until {
        let started = Instant::now();
        let body = seed.body(ids.fetch_add(1, Ordering::Relaxed));
        if common::post_payload(&client, &server.hook_url(), body.into()).await {
            latencies.push(started.elapsed());
        } else {
            failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    latencies.sort();
    let rss = server.stop();
    println!(
        "{:<12} {:>7.1} MB {:>9.2} ms {:>9.2} ms {:>10}   ({} posts)",
        name,
        rss as f64 / 1024.0,
        common::quantile(&latencies, 0.5).as_secs_f64() * 1e3,
        common::quantile(&latencies, 0.99).as_secs_f64() * 1e3,
        failed,
        latencies.len() + failed,
    );
}

/// Announces a 2 MiB body with a wrong token and trickles it in, again and again.
async fn trickle_wrong_token(address: String, stop: Arc<AtomicBool>) {
    let head = format!(
        "POST /hooks/smartsupp/wrong HTTP/1.1\r\nHost: chatbridge\r\n\
         Content-Type: application/json\r\nContent-Length: {BODY_LIMIT}\r\n\r\n"
    );
    let piece = vec![b' '; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(&address).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if stream.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut sent = 0;
        while sent < BODY_LIMIT && !stop.load(Ordering::Relaxed) {
            if stream.write_all(&piece).await.is_err() {
                break;
            }
            sent += piece.len();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Sends half a request head and nothing more; reconnects when the server closes it.
async fn half_head(address: String, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(&address).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if stream
            .write_all(b"POST /hooks/smartsupp/x HTTP/1.1\r\nHost: chatbridge\r\n")
            .await
            .is_err()
        {
            continue;
        }
        let mut buffer = [0u8; 64];
        // Holds the connection until the server closes it (or the scene ends).
        while !stop.load(Ordering::Relaxed) {
            let read = tokio::time::timeout(
                Duration::from_millis(200),
                tokio::io::AsyncReadExt::read(&mut stream, &mut buffer),
            )
            .await;
            if let Ok(Ok(0) | Err(_)) = read {
                break;
            }
        }
    }
}

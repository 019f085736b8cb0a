//! Scale and peer benchmark: `benches/scale.sh` (installs Node-RED, then runs this).
//!
//! For each target, `--chats` new conversations are posted by `--senders` keep-alive
//! connections (spread over the replicas), and a fast local sink counts what arrives:
//!
//! - chatbridge on SQLite, one process;
//! - chatbridge on PostgreSQL with 1, 2 and 3 replicas on one fresh database each run
//!   (`CHATBRIDGE_BENCH_POSTGRES`, an admin URL; default the local server);
//! - Node-RED (`CHATBRIDGE_BENCH_NODE_RED`, its executable) forwarding each POST to the same
//!   sink before answering, as someone might wire the same forward without any durability.
//!
//! chatbridge acknowledges a chat once it is durably stored and delivers it afterwards, so
//! it is measured twice: ingest (acks/s, ack p99) and end to end (chats at the sink per
//! second, from the first post to the last delivery). Node-RED's answer comes after its
//! forward, so its one rate is both. Peak RSS is summed over a target's processes. The
//! ratios compare end-to-end throughput and memory with Node-RED's.

mod common;
#[path = "common/load.rs"]
mod load;

use std::process::{Child, Command};

use load::{Posted, Sink, Until};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

struct Settings {
    chats: u64,
    senders: usize,
    /// `delivery.workers` of each chatbridge process.
    workers: u64,
    /// Which targets run: `--only sqlite,postgres,node-red` (default all).
    only: Vec<String>,
}

impl Settings {
    fn runs(&self, target: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|t| t == target)
    }
}

fn settings() -> Settings {
    let value = common::arg;
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    Settings {
        chats: value("--chats", 10000),
        senders: value("--senders", 32) as usize,
        workers: value("--workers", 32),
        only,
    }
}

/// What one target did.
struct Measured {
    name: String,
    acks_per_s: f64,
    ack_p99: Duration,
    delivered_per_s: f64,
    rss_kb: u64,
    errors: u64,
}

fn main() {
    chatbridge::tls::install_provider();
    let settings = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let results = runtime.block_on(run(&settings));
    println!();
    println!(
        "{:<34} {:>9} {:>9} {:>12} {:>9} {:>11} {:>11}",
        "target", "acks/s", "p99 ms", "delivered/s", "RSS MB", "× Node-RED", "RSS ÷ N-R"
    );
    let peer = results.iter().find(|m| m.name.starts_with("Node-RED"));
    for m in &results {
        let (speed, memory) = peer.map_or((String::new(), String::new()), |p| {
            (
                format!("{:.1}", m.delivered_per_s / p.delivered_per_s),
                format!("{:.2}", m.rss_kb as f64 / p.rss_kb as f64),
            )
        });
        println!(
            "{:<34} {:>9.0} {:>9.1} {:>12.0} {:>9.1} {:>11} {:>11}{}",
            m.name,
            m.acks_per_s,
            m.ack_p99.as_secs_f64() * 1e3,
            m.delivered_per_s,
            m.rss_kb as f64 / 1024.0,
            speed,
            memory,
            if m.errors > 0 {
                format!("  ({} errors)", m.errors)
            } else {
                String::new()
            }
        );
    }
}

async fn run(settings: &Settings) -> Vec<Measured> {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut results = Vec::new();
    let next_id = Arc::new(AtomicU64::new(
        1_000_000 + u64::from(std::process::id()) * 10_000_000,
    ));

    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    if settings.runs("sqlite") {
        results.push(
            chatbridge(
                "chatbridge SQLite, 1 process",
                &sqlite,
                1,
                &sink,
                settings,
                &next_id,
                dir.path(),
            )
            .await,
        );
    }
    let admin = load::postgres_admin();
    for replicas in (1..=3).filter(|_| settings.runs("postgres")) {
        let (database, name) = load::fresh_database(&admin).await;
        results.push(
            chatbridge(
                &format!("chatbridge PostgreSQL, {replicas} replica(s)"),
                &database,
                replicas,
                &sink,
                settings,
                &next_id,
                dir.path(),
            )
            .await,
        );
        load::admin_sql(&admin, &format!("DROP DATABASE {name} WITH (FORCE)")).await;
    }
    match std::env::var("CHATBRIDGE_BENCH_NODE_RED") {
        _ if !settings.runs("node-red") => {}
        Ok(node_red) => {
            results.push(node_red_forward(&node_red, &sink, settings, &next_id, dir.path()).await)
        }
        Err(_) => {
            eprintln!("Node-RED skipped: set CHATBRIDGE_BENCH_NODE_RED (benches/scale.sh does)")
        }
    }
    results
}

/// Starts `replicas` chatbridge processes on `store`, delivering to the sink; posts the
/// chats across them; waits until the sink has them all.
async fn chatbridge(
    name: &str,
    store: &str,
    replicas: usize,
    sink: &Sink,
    settings: &Settings,
    next_id: &Arc<AtomicU64>,
    dir: &std::path::Path,
) -> Measured {
    let config = dir.join(format!("{}.toml", name.replace([' ', ','], "_")));
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"{store}\"\nmax_connections = 16\n\
             [sources.smartsupp]\ntoken = \"bench-token\"\n[delivery]\nworkers = {}\n[log]\nfilter = \"warn,chatbridge::app=info\"\n\
             [connectors.sink]\ntype = \"webhook\"\nsettings = {{ url = \"{}\" }}\n",
            settings.workers, sink.url
        ),
    )
    .expect("config written");
    let mut servers: Vec<(Child, String)> = (0..replicas)
        .map(|_| {
            common::start_server(
                Command::new(common::server_binary())
                    .args(["--config", config.to_str().expect("utf-8"), "serve"])
                    .env_remove("RUST_LOG"),
            )
        })
        .collect();
    let urls: Vec<String> = servers
        .iter()
        .map(|(_, address)| format!("http://{address}/hooks/smartsupp/bench-token"))
        .collect();
    let before = sink.count();
    let started = Instant::now();
    let posted = chats(&urls, settings, next_id).await;
    // Only acknowledged chats are chatbridge's to deliver: a refused post is counted as an
    // error, not waited for.
    let delivered = sink
        .wait_for(before + posted.acked, Duration::from_secs(300))
        .await;
    let delivered_in = started.elapsed();
    let rss_kb = servers
        .iter()
        .map(|(child, _)| common::peak_rss_kb(child.id()))
        .sum();
    for (child, _) in &mut servers {
        let _ = child.kill();
        let _ = child.wait();
    }
    Measured {
        name: name.to_owned(),
        acks_per_s: posted.rate(),
        ack_p99: posted.at(0.99),
        delivered_per_s: (delivered - before) as f64 / delivered_in.as_secs_f64(),
        rss_kb,
        errors: posted.errors,
    }
}

/// Node-RED, headless, forwarding `POST /hook` to the sink before it answers.
async fn node_red_forward(
    executable: &str,
    sink: &Sink,
    settings: &Settings,
    next_id: &Arc<AtomicU64>,
    dir: &std::path::Path,
) -> Measured {
    let user = dir.join("node-red");
    std::fs::create_dir_all(&user).expect("node-red folder");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // No editor, no admin API, nothing that calls out.
    std::fs::write(
        user.join("settings.js"),
        format!(
            "module.exports = {{ uiHost: '127.0.0.1', uiPort: {port}, httpAdminRoot: false, disableEditor: true,\n\
             diagnostics: {{ enabled: false }}, telemetry: {{ enabled: false }}, runtimeState: {{ enabled: false }},\n\
             externalModules: {{ palette: {{ allowInstall: false }} }}, logging: {{ console: {{ level: 'warn' }} }} }};\n"
        ),
    )
    .expect("settings written");
    let flows = serde_json::json!([
        { "id": "forward", "type": "tab", "label": "forward" },
        { "id": "in", "type": "http in", "z": "forward", "url": "/hook", "method": "post", "wires": [["send"]] },
        { "id": "send", "type": "http request", "z": "forward", "method": "POST", "ret": "txt",
          "url": sink.url, "wires": [["clean"]] },
        { "id": "clean", "type": "change", "z": "forward",
          "rules": [{ "t": "delete", "p": "headers", "pt": "msg" }], "wires": [["out"]] },
        { "id": "out", "type": "http response", "z": "forward", "wires": [] }
    ]);
    std::fs::write(user.join("flows.json"), flows.to_string()).expect("flows written");
    let mut child = Command::new(executable)
        .args(["--settings", "settings.js", "--userDir", ".", "flows.json"])
        .current_dir(&user)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("node-red starts");
    let url = format!("http://127.0.0.1:{port}/hook");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client
        .post(&url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "Node-RED did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = sink.count();
    let posted = chats(std::slice::from_ref(&url), settings, next_id).await;
    let forwarded = sink.count() - before;
    let rss_kb = common::peak_rss_kb(child.id());
    let _ = child.kill();
    let _ = child.wait();
    Measured {
        name: "Node-RED 4.1 forward (not durable)".into(),
        acks_per_s: posted.rate(),
        ack_p99: posted.at(0.99),
        delivered_per_s: forwarded as f64 / posted.elapsed.as_secs_f64(),
        rss_kb,
        errors: posted.errors,
    }
}

/// Posts `settings.chats` new conversations over `settings.senders` connections, spread
/// over `urls`.
async fn chats(urls: &[String], settings: &Settings, next_id: &Arc<AtomicU64>) -> Posted {
    let seed = common::SeedTemplate::new();
    load::post(
        urls,
        settings.senders,
        Until::posted(settings.chats),
        next_id,
        Arc::new(move |id| seed.body(id).into()),
    )
    .await
}

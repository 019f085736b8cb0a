//! What the benchmarks that post many chats and count their deliveries share: a fast local
//! sink, and senders that post new conversations over keep-alive connections. Each uses a
//! part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common;

/// A fast local receiver: answers 200 at once and counts.
pub struct Sink {
    pub url: String,
    received: Arc<AtomicU64>,
}

impl Sink {
    pub async fn start() -> Self {
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let app = axum::Router::new().route(
            "/in",
            axum::routing::post(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    "{\"ok\":true}"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/in", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("sink") });
        Self { url, received }
    }

    pub fn count(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until the sink has `count` requests (or `patience` ran out); what it has then.
    pub async fn wait_for(&self, count: u64, patience: Duration) -> u64 {
        let deadline = Instant::now() + patience;
        while self.count() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.count()
    }
}

/// When senders stop.
#[derive(Clone)]
pub enum Until {
    /// Once this many chats were posted, by all senders together.
    Posted(Arc<AtomicU64>),
    /// Once the flag is set.
    Told(Arc<AtomicBool>),
}

impl Until {
    pub fn posted(count: u64) -> Self {
        Self::Posted(Arc::new(AtomicU64::new(count)))
    }

    /// Whether a sender may post one more.
    fn one_more(&self) -> bool {
        match self {
            Self::Posted(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
            Self::Told(stop) => !stop.load(Ordering::Relaxed),
        }
    }
}

/// What the senders did.
pub struct Posted {
    /// Acknowledged posts.
    pub acked: u64,
    /// Posts refused or failed.
    pub errors: u64,
    pub elapsed: Duration,
    /// Each acknowledged post's latency, sorted.
    pub latencies: Vec<Duration>,
}

impl Posted {
    pub fn rate(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64()
    }

    pub fn at(&self, q: f64) -> Duration {
        common::quantile(&self.latencies, q)
    }

    pub fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }
}

/// Posts new conversations (`body(id)`, ids from `next_id`) over `senders` keep-alive
/// connections spread over `urls`, each waiting for its answer before the next, `until`
/// they are told to stop.
pub async fn post(
    urls: &[String],
    senders: usize,
    until: Until,
    next_id: &Arc<AtomicU64>,
    body: Arc<dyn Fn(u64) -> common::Payload + Send + Sync>,
) -> Posted {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(senders)
        .build()
        .expect("client");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for sender in 0..senders {
        let url = urls[sender % urls.len()].clone();
        let (client, until, next_id, body) =
            (client.clone(), until.clone(), next_id.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while until.one_more() {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                if common::post_payload(&client, &url, body(id)).await {
                    latencies.push(sent.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (mut l, e) = task.await.expect("sender finished");
        latencies.append(&mut l);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Posted {
        acked: latencies.len() as u64,
        errors,
        elapsed,
        latencies,
    }
}

/// The PostgreSQL server benchmarks make their databases on: `CHATBRIDGE_BENCH_POSTGRES`, an
/// admin URL, by default the local server with trust authentication.
pub fn postgres_admin() -> String {
    std::env::var("CHATBRIDGE_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own for one run, on the server `admin` points at: its URL and name.
pub async fn fresh_database(admin: &str) -> (String, String) {
    let name = format!(
        "chatbridge_bench_{}_{}",
        std::process::id(),
        fastrand::u32(..)
    );
    admin_sql(admin, &format!("CREATE DATABASE {name}")).await;
    // The admin URL's parameters (`?sslmode=...`) apply to the new database too.
    let (server, params) = admin.split_once('?').map_or((admin, ""), |(s, p)| (s, p));
    let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
    let params = if params.is_empty() {
        String::new()
    } else {
        format!("?{params}")
    };
    (format!("{base}/{name}{params}"), name)
}

/// Runs `sql` on the server `admin` points at.
pub async fn admin_sql(admin: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .expect("CHATBRIDGE_BENCH_POSTGRES accepts connections");
    let connection = tokio::spawn(connection);
    client.batch_execute(sql).await.expect(sql);
    drop(client);
    let _ = connection.await;
}

//! Growth benchmark: what a store holding a year of chats costs, next to an empty one.
//!
//!   cargo bench --bench growth -- [--conversations 1000000] [--store sqlite|postgres]
//!                                 [--senders 32] [--sample 20000]
//!
//! For each store (both by default; PostgreSQL is `CHATBRIDGE_BENCH_POSTGRES`, an admin URL,
//! default the local server, on a fresh database), one chatbridge process delivering to a
//! fast local sink:
//!
//! 1. `--sample` new chats into the empty store (after a thousand to warm the service up):
//!    ingest rate and p99;
//! 2. filled to `--conversations`, each delivered once (1% of them by one visitor, whose
//!    erasure is measured below), then `--sample` more: rate and p99 against the empty store;
//! 3. list (`GET /api/conversations?limit=50`), a page deep in the history, and search by
//!    e-mail: p99 of 200 requests each; an erasure of an address that matches nothing;
//! 4. ingest p99, slowest ack and acks over 1 s while each runs: the erasure of the frequent
//!    visitor, a replay of 10,000 conversations (until they reach the sink again), and a
//!    retention purge of the oldest 10% (aged in the database, then the service restarted:
//!    the restart to `/healthz` is timed too);
//! 5. the store's size per conversation.

mod common;
#[path = "common/load.rs"]
mod load;

use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use load::{Posted, Sink, Until};

const TOKEN: &str = "growth-benchmark-admin-token";
/// The visitor of every hundredth chat.
const FREQUENT: &str = "frequent.visitor@example.com";
const DAY_MS: i64 = 86_400_000;

struct Settings {
    conversations: u64,
    senders: usize,
    sample: u64,
    stores: Vec<String>,
}

fn settings() -> Settings {
    let args: Vec<String> = std::env::args().collect();
    let stores = args
        .iter()
        .position(|a| a == "--store")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || vec!["sqlite".to_owned(), "postgres".to_owned()],
            |s| s.split(',').map(str::to_owned).collect(),
        );
    Settings {
        conversations: common::arg("--conversations", 1_000_000),
        senders: common::arg("--senders", 32) as usize,
        sample: common::arg("--sample", 20_000),
        stores,
    }
}

/// The chat of conversation `id`: the seed under that id, each of its own visitor but every
/// hundredth of the first `filled`, the frequent one's. (Chats posted while the frequent
/// visitor is erased are not theirs: an erasure takes a chat still waiting for delivery too.)
fn body(seed: &common::SeedTemplate, id: u64, filled: u64) -> String {
    let email = if id.is_multiple_of(100) && id <= filled {
        FREQUENT.to_owned()
    } else {
        format!("visitor{id}@example.com")
    };
    seed.body(id).replace("dusan@domain.com", &email)
}

fn main() {
    chatbridge::tls::install_provider();
    let settings = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for store in &settings.stores {
            run(store, &settings).await;
        }
    });
}

/// A running service and how to reach it.
struct Service {
    child: Child,
    base: String,
    hook: String,
    config: std::path::PathBuf,
}

impl Service {
    fn start(config: &std::path::Path) -> Self {
        let (child, address) = common::start_server(
            Command::new(common::server_binary())
                .args(["--config", config.to_str().expect("utf-8"), "serve"])
                .env_remove("RUST_LOG"),
        );
        Self {
            child,
            base: format!("http://{address}"),
            hook: format!("http://{address}/hooks/smartsupp/bench-token"),
            config: config.to_owned(),
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stopped and started again: the time to a `/healthz` answer.
    async fn restart(&mut self, client: &reqwest::Client) -> Duration {
        self.stop();
        let started = Instant::now();
        *self = Self::start(&self.config.clone());
        while !client
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        started.elapsed()
    }
}

/// The database behind the service, as the benchmark reaches it directly.
enum Database {
    Sqlite(std::path::PathBuf),
    Postgres { url: String, name: String },
}

impl Database {
    /// Bytes stored.
    async fn size(&self) -> u64 {
        match self {
            Self::Sqlite(path) => ["", "-wal"]
                .iter()
                .map(|suffix| {
                    let mut name = path.as_os_str().to_owned();
                    name.push(suffix);
                    std::fs::metadata(name).map_or(0, |m| m.len())
                })
                .sum(),
            Self::Postgres { url, .. } => {
                let row = pg(url, "SELECT pg_database_size(current_database())").await;
                u64::try_from(row.expect("a size")).unwrap_or(0)
            }
        }
    }

    /// Moves the oldest `count` conversations (and their deliveries) 400 days back: past any
    /// retention. Returns the creation time they are now all below.
    async fn age_oldest(&self, count: u64) -> i64 {
        let sql = format!(
            "UPDATE deliveries SET updated_at = updated_at - {age}, created_at = created_at - {age}
             WHERE conversation_id IN (SELECT id FROM conversations ORDER BY created_at, id LIMIT {count});
             UPDATE conversations SET created_at = created_at - {age}, updated_at = updated_at - {age}
             WHERE id IN (SELECT id FROM conversations ORDER BY created_at, id LIMIT {count});",
            age = 400 * DAY_MS
        );
        match self {
            Self::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).expect("the database opens");
                conn.busy_timeout(Duration::from_secs(30)).expect("timeout");
                conn.execute_batch(&format!("BEGIN; {sql} COMMIT;"))
                    .expect("aged");
            }
            Self::Postgres { url, .. } => {
                load::admin_sql(url, &format!("BEGIN; {sql} COMMIT;")).await;
            }
        }
        chatbridge::model::Timestamp::now().unix_millis() - 300 * DAY_MS
    }

    /// Whether no conversation created before `cutoff` is left.
    async fn purged_below(&self, cutoff: i64) -> bool {
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM conversations WHERE created_at < {cutoff} LIMIT 1) AS t"
        );
        let left = match self {
            Self::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).expect("the database opens");
                conn.query_row(&sql, [], |r| r.get::<_, i64>(0))
                    .expect("counted")
            }
            Self::Postgres { url, .. } => pg(url, &sql).await.expect("counted"),
        };
        left == 0
    }
}

/// `VACUUM ANALYZE` of the database `url` every minute (autovacuum's `naptime`), unless the
/// server runs autovacuum itself.
async fn autovacuum(url: String) {
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL accepts connections");
    tokio::spawn(connection);
    let on: String = client
        .query_one("SHOW autovacuum", &[])
        .await
        .expect("a setting")
        .get(0);
    if on == "on" {
        return;
    }
    eprintln!("autovacuum is off on this server: VACUUM ANALYZE every minute instead");
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let vacuum = Instant::now();
        client
            .batch_execute("VACUUM ANALYZE")
            .await
            .expect("vacuumed");
        // When the measures ran beside one, and for how long: it competes for the cores.
        eprintln!(
            "  (VACUUM ANALYZE from {:.0} s to {:.0} s)",
            (vacuum - started).as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }
}

/// The first column of `sql`'s one row, on the database `url`.
async fn pg(url: &str, sql: &str) -> Option<i64> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL accepts connections");
    let connection = tokio::spawn(connection);
    let value = client
        .query_one(sql, &[])
        .await
        .expect(sql)
        .get::<_, Option<i64>>(0);
    drop(client);
    let _ = connection.await;
    value
}

async fn run(store: &str, settings: &Settings) {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let database = match store {
        "sqlite" => Database::Sqlite(dir.path().join("growth.db")),
        "postgres" => {
            let (url, name) = load::fresh_database(&load::postgres_admin()).await;
            Database::Postgres { url, name }
        }
        other => panic!("--store {other}: sqlite or postgres"),
    };
    let url = match &database {
        Database::Sqlite(path) => format!("sqlite://{}", path.display()),
        Database::Postgres { url, .. } => url.clone(),
    };
    let config = dir.path().join("growth.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"{url}\"\nmax_connections = 16\n\
             [sources.smartsupp]\ntoken = \"bench-token\"\n[admin]\ntoken = \"{TOKEN}\"\n\
             [delivery]\nworkers = 32\n[retention]\ndelivered_days = 30\ndead_days = 90\n\
             [log]\nfilter = \"warn,chatbridge::app=info\"\n\
             [connectors.sink]\ntype = \"webhook\"\nsettings = {{ url = \"{}\" }}\n",
            sink.url
        ),
    )
    .expect("config written");
    // PostgreSQL servers run autovacuum, which keeps the queue's indexes clean and the
    // planner's statistics current as the tables grow; where it is off (as on the machines
    // this was written on), the benchmark does its work at its default pace.
    let vacuum = match &database {
        Database::Postgres { url, .. } => Some(tokio::spawn(autovacuum(url.clone()))),
        Database::Sqlite(_) => None,
    };
    let mut service = Service::start(&config);
    let client = reqwest::Client::new();
    let seed = Arc::new(common::SeedTemplate::new());
    let next_id = Arc::new(AtomicU64::new(1));
    let filled = settings.conversations;
    let chats = |count: u64, service: &Service| {
        let seed = seed.clone();
        let (hook, next_id) = (service.hook.clone(), next_id.clone());
        async move {
            load::post(
                &[hook],
                settings.senders,
                Until::posted(count),
                &next_id,
                Arc::new(move |id| body(&seed, id, filled).into()),
            )
            .await
        }
    };
    let mut out = Vec::new();

    // A thousand chats first, unmeasured: the first requests also warm the process up.
    let warmed = chats(1000, &service).await.acked;
    let empty = chats(settings.sample, &service).await;
    settle(&sink, warmed + empty.acked).await;
    out.push(format!("ingest, empty store: {}", ingest(&empty)));

    // The fill, with a range of 10,000 conversations in its middle for the replay.
    let total = settings.conversations;
    let replayed = 10_000.min(total / 10);
    let mut acked = warmed + empty.acked;
    let before = total.saturating_sub(acked + settings.sample + replayed) / 2;
    let filled = Instant::now();
    acked += chats(before, &service).await.acked;
    let since = chatbridge::model::Timestamp::now();
    acked += chats(replayed, &service).await.acked;
    let until = chatbridge::model::Timestamp::now();
    let rest = total.saturating_sub(acked + settings.sample);
    acked += chats(rest, &service).await.acked;
    settle(&sink, acked).await;
    eprintln!(
        "{store}: filled to {acked} conversations in {:.0} s",
        filled.elapsed().as_secs_f64()
    );
    let full = chats(settings.sample, &service).await;
    acked += full.acked;
    settle(&sink, acked).await;
    out.push(format!(
        "ingest at {acked} conversations: {} ({:.2}x the empty store's rate)",
        ingest(&full),
        full.rate() / empty.rate()
    ));

    let size = database.size().await;
    out.push(format!(
        "store size: {:.2} GB, {:.2} KB per conversation",
        size as f64 / 1e9,
        size as f64 / acked as f64 / 1e3
    ));

    // Reads.
    let api = |path: String| {
        let (client, base) = (client.clone(), service.base.clone());
        async move {
            let sent = Instant::now();
            let response = client
                .get(format!("{base}{path}"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("answered");
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            let page: serde_json::Value = response.json().await.expect("JSON");
            (sent.elapsed(), page)
        }
    };
    let mut times = Vec::new();
    let mut deep = None;
    for _ in 0..200 {
        let (took, page) = api("/api/conversations?limit=50".into()).await;
        times.push(took);
        deep = page["next"].as_str().map(str::to_owned);
    }
    out.push(format!("list, first page: {}", percentiles(&mut times)));
    let (_, middle) = api(format!(
        "/api/conversations?limit=50&until={}",
        percent(&since.to_string())
    ))
    .await;
    deep = middle["next"].as_str().map(str::to_owned).or(deep);
    let mut times = Vec::new();
    for _ in 0..200 {
        let cursor = deep.clone().expect("a next page");
        times.push(
            api(format!(
                "/api/conversations?limit=50&cursor={}",
                percent(&cursor)
            ))
            .await
            .0,
        );
    }
    out.push(format!(
        "list, a page in the middle: {}",
        percentiles(&mut times)
    ));
    let mut times = Vec::new();
    for _ in 0..200 {
        let id = fastrand::u64(2..acked);
        let (took, page) = api(format!(
            "/api/conversations?limit=50&email=Visitor{id}%40Example.com"
        ))
        .await;
        times.push(took);
        let found = page["items"].as_array().map_or(0, Vec::len);
        assert!(found <= 1, "one conversation per visitor: {found}");
    }
    out.push(format!("search by e-mail: {}", percentiles(&mut times)));

    let forget = |email: &'static str, service: &Service| {
        let (client, base) = (client.clone(), service.base.clone());
        async move {
            let sent = Instant::now();
            let report: serde_json::Value = client
                .post(format!("{base}/api/forget"))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({ "email": email }))
                .send()
                .await
                .expect("answered")
                .json()
                .await
                .expect("a report");
            (
                sent.elapsed(),
                report["conversations"].as_u64().unwrap_or(0),
            )
        }
    };
    let (took, gone) = forget("nobody.at.all@example.com", &service).await;
    out.push(format!(
        "forget, an address that matches nothing: {} ms ({gone} erased)",
        took.as_millis()
    ));

    // Ingest while maintenance runs.
    let (while_forget, (took, gone)) = ingest_during(
        &service,
        settings,
        &next_id,
        &seed,
        forget(FREQUENT, &service),
    )
    .await;
    acked += while_forget.acked;
    out.push(format!(
        "forget of a visitor of {gone} conversations took {:.1} s; ingest meanwhile: {}",
        took.as_secs_f64(),
        ingest(&while_forget)
    ));
    settle(&sink, acked).await;

    let replay = {
        let (client, base) = (client.clone(), service.base.clone());
        let range = format!(
            "since={}&until={}",
            percent(&since.to_string()),
            percent(&until.to_string())
        );
        let api = &api;
        async move {
            let totals: serde_json::Value = client
                .post(format!("{base}/api/replay"))
                .bearer_auth(TOKEN)
                .json(
                    &serde_json::json!({ "since": since.to_string(), "until": until.to_string() }),
                )
                .send()
                .await
                .expect("answered")
                .json()
                .await
                .expect("totals");
            let queued = totals["queued"].as_u64().expect("a replay's totals");
            // Until the replayed chats reached the sink again, while new ones keep arriving.
            loop {
                let (_, waiting) = api(format!(
                    "/api/conversations?limit=1&delivery_state=pending&{range}"
                ))
                .await;
                if waiting["items"].as_array().is_some_and(Vec::is_empty) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            queued
        }
    };
    let (while_replay, queued) = ingest_during(&service, settings, &next_id, &seed, replay).await;
    acked += while_replay.acked;
    out.push(format!(
        "replay of {queued} conversations, until each reached the sink again; ingest meanwhile: {}",
        ingest(&while_replay)
    ));

    out.push(format!(
        "peak RSS of the service: {:.1} MB",
        common::peak_rss_kb(service.child.id()) as f64 / 1024.0
    ));
    service.stop();
    let cutoff = database.age_oldest(acked / 10).await;
    let restart = service.restart(&client).await;
    out.push(format!("restart to /healthz: {} ms", restart.as_millis()));
    let purge = async {
        while !database.purged_below(cutoff).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let started = Instant::now();
    let (while_purge, ()) = ingest_during(&service, settings, &next_id, &seed, purge).await;
    out.push(format!(
        "retention purge of {} conversations took {:.1} s; ingest meanwhile: {}",
        acked / 10,
        started.elapsed().as_secs_f64(),
        ingest(&while_purge)
    ));

    service.stop();
    if let Some(vacuum) = vacuum {
        vacuum.abort();
    }
    if let Database::Postgres { name, .. } = &database {
        load::admin_sql(
            &load::postgres_admin(),
            &format!("DROP DATABASE {name} WITH (FORCE)"),
        )
        .await;
    }
    println!(
        "\n{store}, {} conversations, {} senders",
        settings.conversations, settings.senders
    );
    for line in out {
        println!("  {line}");
    }
}

/// Waits until every acknowledged chat reached the sink.
async fn settle(sink: &Sink, expected: u64) {
    let reached = sink.wait_for(expected, Duration::from_secs(3600)).await;
    assert_eq!(reached, expected, "every chat reached the sink");
}

/// Posts new chats, as fast as `settings.senders` connections go, while `work` runs (and at
/// least two seconds).
async fn ingest_during<T>(
    service: &Service,
    settings: &Settings,
    next_id: &Arc<AtomicU64>,
    seed: &Arc<common::SeedTemplate>,
    work: impl std::future::Future<Output = T>,
) -> (Posted, T) {
    let stop = Arc::new(AtomicBool::new(false));
    let seed = seed.clone();
    let senders = load::post(
        std::slice::from_ref(&service.hook),
        settings.senders,
        Until::Told(stop.clone()),
        next_id,
        Arc::new(move |id| body(&seed, id, 0).into()),
    );
    let work = async {
        let started = Instant::now();
        let done = work.await;
        if let Some(left) = Duration::from_secs(2).checked_sub(started.elapsed()) {
            tokio::time::sleep(left).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        done
    };
    tokio::join!(senders, work)
}

/// Rate, p99 and the slowest of an ingest run.
fn ingest(posted: &Posted) -> String {
    let over = posted
        .latencies
        .iter()
        .filter(|l| **l > Duration::from_secs(1))
        .count();
    format!(
        "{:.0} acks/s, p50 {:.1} ms, p99 {:.1} ms, slowest {:.0} ms, {over} over 1 s, {} errors",
        posted.rate(),
        posted.at(0.5).as_secs_f64() * 1e3,
        posted.at(0.99).as_secs_f64() * 1e3,
        posted.max().as_secs_f64() * 1e3,
        posted.errors
    )
}

fn percentiles(times: &mut [Duration]) -> String {
    times.sort_unstable();
    format!(
        "p50 {:.1} ms, p99 {:.1} ms",
        common::quantile(times, 0.5).as_secs_f64() * 1e3,
        common::quantile(times, 0.99).as_secs_f64() * 1e3
    )
}

fn percent(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

//! What only a shared PostgreSQL store has to get right: replicas starting together, leasing
//! side by side, taking over a dead replica's work, and riding out a database outage.
//! The rest of the suite runs against PostgreSQL too when `CHATBRIDGE_TEST_POSTGRES_URL` is
//! set (see `helpers.rs`); these need it, so a plain `cargo test` reports them ignored and
//! `.ci/run` runs them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chatbridge::model::Timestamp;
use chatbridge::store::postgres::PostgresStore;
use chatbridge::store::{DeliveryState, LeasedDelivery, Maintenance, Queue};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{Options, fixture, seed_with_channel, spawn_app_with, store_url};

/// The database the tests run on, which these need.
fn database() -> String {
    crate::helpers::required("CHATBRIDGE_TEST_POSTGRES_URL", "a PostgreSQL database URL")
}

async fn query_count(url: &str, sql: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: CHATBRIDGE_TEST_POSTGRES_URL, which .ci/run sets"]
async fn replicas_started_together_on_an_empty_database_both_come_up_and_migrate_once() {
    database();
    let dir = tempfile::tempdir().unwrap();
    let url = store_url(dir.path()).await;
    let opened = join_all((0..3).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { PostgresStore::open(&url, 2).await })
    }))
    .await;
    for store in &opened {
        store
            .as_ref()
            .expect("every replica comes up")
            .ping()
            .await
            .unwrap();
    }
    // The primary key on `version` would refuse a second run of one migration, so every row
    // is a migration that ran once, and none was left out.
    let shipped = std::fs::read_dir("src/store/postgres/migrations")
        .unwrap()
        .count() as i64;
    assert_eq!(
        query_count(&url, "SELECT count(*) FROM chatbridge_migrations").await,
        shipped,
        "each migration ran once"
    );
}

/// Leasing caps for the test app's one connector.
fn helpdesk(cap: usize) -> BTreeMap<String, usize> {
    BTreeMap::from([("helpdesk".to_owned(), cap)])
}

/// Starts every task, then awaits them in order.
async fn join_all<T: Send + 'static>(
    tasks: impl IntoIterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let started: Vec<_> = tasks.into_iter().collect();
    let mut out = Vec::with_capacity(started.len());
    for task in started {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: CHATBRIDGE_TEST_POSTGRES_URL, which .ci/run sets"]
async fn replicas_leasing_side_by_side_never_get_the_same_delivery() {
    database();
    let app = spawn_app_with(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    for channel in 0..120 {
        assert_eq!(
            app.post_smartsupp(seed_with_channel(channel))
                .await
                .status(),
            202
        );
    }
    let replicas: Vec<Arc<PostgresStore>> = join_all((0..3).map(|_| {
        let url = app.store_url.clone();
        tokio::spawn(async move { Arc::new(PostgresStore::open(&url, 2).await.unwrap()) })
    }))
    .await;
    // All start at once, in small batches, so their lease queries overlap.
    let start = Arc::new(tokio::sync::Barrier::new(replicas.len()));
    let leased = join_all(replicas.iter().map(|store| {
        let (store, start) = (store.clone(), start.clone());
        tokio::spawn(async move {
            let mut mine = Vec::new();
            start.wait().await;
            loop {
                let batch: Vec<LeasedDelivery> = store
                    .lease_due(Timestamp::now(), 3, Duration::from_secs(60), &helpdesk(3))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|d| d.id));
            }
        })
    }))
    .await;
    let all: Vec<i64> = leased.iter().flatten().copied().collect();
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    println!(
        "leased per replica: {:?}",
        leased.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(all.len(), 120, "every delivery leased once");
    assert_eq!(distinct.len(), 120, "no delivery leased twice");
}

#[tokio::test]
#[ignore = "needs PostgreSQL: CHATBRIDGE_TEST_POSTGRES_URL, which .ci/run sets"]
async fn a_lease_left_by_a_dead_replica_expires_and_another_replica_takes_it_over() {
    database();
    let app = spawn_app_with(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let dead_replica = PostgresStore::open(&app.store_url, 1).await.unwrap();
    let survivor = PostgresStore::open(&app.store_url, 1).await.unwrap();
    let lease = Duration::from_secs(30);
    let now = Timestamp::now();
    let taken = dead_replica
        .lease_due(now, 10, lease, &helpdesk(10))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    // The replica dies here: it never finishes, renews or releases.
    let meanwhile = survivor
        .lease_due(now.plus(lease / 2), 10, lease, &helpdesk(10))
        .await
        .unwrap();
    assert!(meanwhile.is_empty(), "a live lease is left alone");
    assert_eq!(survivor.release_leases().await.unwrap(), 0);
    let after = survivor
        .lease_due(now.plus(lease * 2), 10, lease, &helpdesk(10))
        .await
        .unwrap();
    assert_eq!(after.len(), 1, "an expired lease is taken over");
    assert_eq!(after[0].id, taken[0].id);
    assert_eq!(after[0].raw, taken[0].raw);
}

/// A TCP relay to PostgreSQL that the test can cut: every relayed connection is dropped and
/// new ones are refused until it is restored.
struct Relay {
    address: String,
    up: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Relay {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(generation);
        let (up_, generation_) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up_.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let target = target.clone();
                let mut cut = generation_.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            address,
            up,
            generation,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: CHATBRIDGE_TEST_POSTGRES_URL, which .ci/run sets"]
async fn while_the_database_is_unreachable_the_source_is_answered_503_and_nothing_is_lost() {
    let base = database();
    // postgres://USER@HOST:PORT/DATABASE: the relay stands in for HOST:PORT.
    let server = base
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .map(|authority| authority.rsplit('@').next().unwrap_or(authority))
        .unwrap()
        .to_owned();
    let relay = Relay::start(server.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let direct = store_url(dir.path()).await;
    let relayed = direct.replacen(&server, &relay.address, 1);
    assert_ne!(relayed, direct, "the store URL goes through the relay");
    let app = spawn_app_with(Options {
        store: Some(relayed),
        ..Options::default()
    })
    .await;
    assert_eq!(app.post_smartsupp(seed_with_channel(1)).await.status(), 202);
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    relay.cut();
    let refused = app.post_smartsupp(seed_with_channel(2)).await;
    assert_eq!(refused.status(), 503, "the source is told to send again");
    let ready = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    relay.restore();
    crate::helpers::wait_until(|| async {
        (app.post_smartsupp(seed_with_channel(2)).await.status() == 202).then_some(())
    })
    .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 2).await;
    assert_eq!(
        app.zendesk.tickets().len(),
        2,
        "both chats made one ticket each"
    );
}

/// Whether the connections that `application_name` names are encrypted, one entry each.
async fn encrypted(admin: &str, application_name: &str) -> Vec<bool> {
    let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = $1",
            &[&application_name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
#[ignore = "needs PostgreSQL with TLS on: CHATBRIDGE_TEST_POSTGRES_URL, which .ci/run sets"]
async fn sslmode_and_sslrootcert_in_the_store_url_mean_what_they_mean_to_libpq() {
    let admin = database();
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let setting = |name: &'static str| {
        let client = &client;
        async move {
            let row = client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .unwrap();
            row.get::<_, String>(0)
        }
    };
    assert_eq!(
        setting("ssl").await,
        "on",
        "this test needs a PostgreSQL server with ssl = on"
    );
    let dir = tempfile::tempdir().unwrap();
    let url = store_url(dir.path()).await;
    let open = |name: &str, params: &str| {
        let url = format!("{url}&application_name={name}&{params}");
        async move { PostgresStore::open(&url, 1).await }
    };
    for (name, params, expected) in [
        ("cb_tls_default", "", true),
        ("cb_tls_require", "sslmode=require", true),
        ("cb_tls_disable", "sslmode=disable", false),
    ] {
        let store = open(name, params).await.unwrap();
        store.ping().await.unwrap();
        let seen = encrypted(&admin, name).await;
        assert!(
            !seen.is_empty() && seen.iter().all(|e| *e == expected),
            "{params}: {seen:?}"
        );
    }

    // The server's own certificate as the root: it names `localhost` only.
    let cert = setting("ssl_cert_file").await;
    assert!(
        std::fs::read(&cert).is_ok(),
        "this test reads the server's certificate, {cert}, as a root: run it where it can"
    );
    let root = format!("sslrootcert={cert}");
    let store = open("cb_tls_ca", &format!("sslmode=verify-ca&{root}"))
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert_eq!(encrypted(&admin, "cb_tls_ca").await, [true]);
    if url.contains("@127.0.0.1:") {
        // With the system's roots: whether or not they trust it, it does not name the host.
        let error = open("cb_tls_system", "sslmode=verify-full")
            .await
            .expect_err("no certificate of the test server names 127.0.0.1");
        assert!(
            error.to_string().contains("invalid peer certificate"),
            "{error}"
        );
        let error = open("cb_tls_full", &format!("sslmode=verify-full&{root}"))
            .await
            .expect_err("the certificate does not name 127.0.0.1");
        assert!(error.to_string().contains("not valid for name"), "{error}");
        let by_name = url.replace("@127.0.0.1:", "@localhost:");
        let store = PostgresStore::open(
            &format!("{by_name}&application_name=cb_tls_full&sslmode=verify-full&{root}"),
            1,
        )
        .await
        .unwrap();
        store.ping().await.unwrap();
        assert_eq!(encrypted(&admin, "cb_tls_full").await, [true]);
    }
}

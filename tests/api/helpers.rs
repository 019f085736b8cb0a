//! Starting chatbridge for a test: a temporary store, fast retry intervals, a fake Zendesk
//! as the `helpdesk` connector, and helpers to post fixtures and wait for outcomes.
//!
//! The store is a SQLite file in a temporary folder, or, when `CHATBRIDGE_TEST_POSTGRES_URL`
//! names a PostgreSQL database, a fresh schema in it for each app, so the whole suite runs
//! against either store (`.ci/run` runs it twice).

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chatbridge::app::Application;
use chatbridge::config::{Config, LogFormat};
use chatbridge::connectors::{Connector, DeliveryJob, LiveRegistry, PlannedRequest, Registry};
use chatbridge::delivery::Worker;
use chatbridge::model::StepOutputs;
use chatbridge::render::DeliveryInfo;
use chatbridge::sources::Parsed;
use chatbridge::store::{DeliveryFilter, DeliveryRow, DeliveryState, Store};
use tempfile::TempDir;

use crate::fake_vendor::Scripted;
use crate::fake_zendesk::FakeZendesk;

/// Secrets used by every test, so the log check can look for all of them at once.
pub const HOOK_TOKEN: &str = "hook-token-7f3a9c-s3cr3t";
pub const ZENDESK_EMAIL: &str = "agent@acme.example";
pub const ZENDESK_TOKEN: &str = "zd-api-token-1b2c3d-s3cr3t";
pub const WEBHOOK_SECRET: &str = "webhook-secret-9e8d7c-s3cr3t";
pub const ADMIN_TOKEN: &str = "admin-token-5a6b7c-s3cr3t";

/// How long a test waits for a condition before failing.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// What the tests log with: every level of chatbridge, as JSON lines.
const LOG_FILTER: &str = "chatbridge=trace,tower_http=debug,warn";

/// Everything logged by this test binary outside a test's own [`OwnLogs`] (all tests share
/// the global subscriber).
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        chatbridge::tls::install_provider();
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = CaptureWriter(buffer.clone());
        chatbridge::telemetry::init(LogFormat::Json, LOG_FILTER, move || writer.clone(), None);
        buffer
    })
}

/// What one test's service logs, apart from every other test's: the service's subscriber,
/// scoped to the test's thread for as long as this lives. A `#[tokio::test]` runs the app it
/// spawns on that thread; what the store's own threads log goes to [`captured_logs`].
pub struct OwnLogs {
    buffer: Arc<Mutex<Vec<u8>>>,
    _scope: tracing::subscriber::DefaultGuard,
}

impl OwnLogs {
    pub fn capture() -> Self {
        log_buffer();
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = CaptureWriter(buffer.clone());
        let subscriber = chatbridge::telemetry::subscriber(
            LogFormat::Json,
            LOG_FILTER,
            move || writer.clone(),
            None,
        );
        Self {
            buffer,
            _scope: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }
}

#[derive(Clone)]
struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stderr().write_all(bytes)?;
        }
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A target that answers every POST with `status`, keeping what it received.
pub async fn receiver_answering(status: u16) -> wiremock::MockServer {
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(status))
        .mount(&receiver)
        .await;
    receiver
}

/// Reads a fixture from `tests/fixtures`.
/// What `connector` would send for `parsed`, as `chatbridge render` prints it: the first
/// version and, for types with `update` steps, a second one with every ledger entry known.
pub fn every_version(
    registry: &Registry,
    connector: &dyn Connector,
    parsed: &Parsed,
) -> Vec<(i64, Vec<PlannedRequest>)> {
    let definition = registry.definitions().get(connector.kind()).unwrap();
    let completed = BTreeMap::new();
    let nothing = StepOutputs::new();
    // What a first delivery left in the ledger, for the later version's steps.
    let known: StepOutputs = definition
        .ledger
        .iter()
        .map(|name| (name.clone(), serde_json::json!("4242")))
        .collect();
    let versions: &[(i64, &StepOutputs)] = if definition.update.is_empty() {
        &[(1, &nothing)]
    } else {
        &[(1, &nothing), (2, &known)]
    };
    versions
        .iter()
        .map(|&(version, ledger)| {
            let job = DeliveryJob {
                conversation: &parsed.conversation,
                raw: &parsed.raw,
                delivery: DeliveryInfo {
                    id: 0,
                    key: format!("cb:{}:{}", connector.name(), parsed.conversation.id),
                    version,
                    attempt: 1,
                },
                completed: &completed,
                ledger,
            };
            let plan = connector
                .plan(&job)
                .unwrap_or_else(|e| panic!("{} v{version}: {e}", connector.kind()));
            (version, plan)
        })
        .collect()
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Where a payload the tests use lives: under `tests/fixtures`, or, for the chats the product
/// ships as samples (`chatbridge::samples`), under `src/samples`, which the tests read as
/// they are. A name is in one place only.
pub fn fixture_path(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture = root.join("tests/fixtures").join(name);
    let sample = root.join("src/samples").join(name);
    assert!(
        !(fixture.exists() && sample.exists()),
        "{name} is both a test fixture and a shipped sample"
    );
    if sample.exists() { sample } else { fixture }
}

/// Every Smartsupp payload the tests know, fixtures and shipped samples, sorted by name.
pub fn smartsupp_payloads() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<PathBuf> = ["tests/fixtures/smartsupp", "src/samples/smartsupp"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root.join(dir)).expect("payload folder"))
        .map(|entry| entry.expect("payload").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    paths
}

/// The seed chat with `change` made to its document.
pub fn seed_edited(change: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut doc: serde_json::Value =
        serde_json::from_slice(&fixture("smartsupp/seed-example.json")).unwrap();
    change(&mut doc);
    serde_json::to_vec(&doc).unwrap()
}

/// The seed chat before the visitor rated it: its first version, when the seed is the second.
pub fn seed_unrated() -> Vec<u8> {
    seed_edited(|doc| doc["channel"]["rating"] = serde_json::Value::Null)
}

/// The seed with its conversation id changed, for tests that need many distinct chats.
pub fn seed_with_channel(channel_id: u64) -> Vec<u8> {
    seed_edited(|doc| doc["channel"]["id"] = channel_id.into())
}

/// The seed under channel id `channel` (a number or any text), of another visitor.
pub fn seed_of(channel: impl Into<serde_json::Value>, email: &str, name: &str) -> Vec<u8> {
    seed_edited(|doc| {
        doc["channel"]["id"] = channel.into();
        doc["visitor"]["email"] = email.into();
        doc["visitor"]["name"] = name.into();
    })
}

/// What a test can change in the generated config.
pub struct Options {
    /// Top-level keys, placed before the first table (`templates_dir = ...`).
    pub top: String,
    /// Extra TOML appended to the config (more connectors, other settings); `{zendesk}` is
    /// the fake Zendesk's URL and `{data}` the app's folder.
    pub extra: String,
    /// More `[server]` keys (timeouts, the connection cap).
    pub server: String,
    /// Accept the shared hook token (false: only tenants' tokens, given in `extra`).
    pub shared_token: bool,
    /// Run the worker loop (false: the test drives `try_run_once`).
    pub workers: bool,
    /// The `[delivery]` table.
    pub delivery: Delivery,
    /// Configure the `helpdesk` Zendesk instance (tests of other connectors turn it off).
    pub helpdesk: bool,
    /// The `[admin]` table's body ("": the admin API and dashboard are off).
    pub admin: String,
    /// This `store.url` instead of a fresh store.
    pub store: Option<String>,
}

/// The `[delivery]` settings a test app runs with.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub max_attempts: u32,
    pub initial_interval: &'static str,
    pub multiplier: f64,
    pub max_interval: &'static str,
    pub randomization: f64,
    pub request_timeout: &'static str,
    /// Attempts at once (when [`Options::workers`] runs the worker loop).
    pub workers: usize,
    pub lease: &'static str,
}

impl Default for Delivery {
    /// Millisecond intervals, with no jitter; `max_interval` leaves room for a 3 s
    /// Retry-After. A short lease: after a kill -9, a restarted process on a shared store
    /// takes the dead one's deliveries over within it.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_interval: "20ms",
            multiplier: 2.0,
            max_interval: "5s",
            randomization: 0.0,
            request_timeout: "2s",
            workers: 4,
            lease: "3s",
        }
    }
}

impl Delivery {
    /// The table's body; `workers` only if the worker loop runs.
    fn toml(&self, run_workers: bool) -> String {
        format!(
            "max_attempts = {}\ninitial_interval = {:?}\nmultiplier = {:?}\nmax_interval = {:?}\n\
             max_elapsed = \"1h\"\nrandomization = {:?}\nrequest_timeout = {:?}\nworkers = {}\nlease = {:?}\n",
            self.max_attempts,
            self.initial_interval,
            self.multiplier,
            self.max_interval,
            self.randomization,
            self.request_timeout,
            if run_workers { self.workers } else { 0 },
            self.lease,
        )
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            top: String::new(),
            extra: String::new(),
            server: String::new(),
            shared_token: true,
            workers: true,
            delivery: Delivery::default(),
            helpdesk: true,
            admin: format!("token = \"{ADMIN_TOKEN}\""),
            store: None,
        }
    }
}

impl Options {
    /// One connector instance `name` of type `kind` with these settings (TOML lines), and
    /// not the default Zendesk `helpdesk`.
    pub fn only(name: &str, kind: &str, settings: &str) -> Self {
        Self {
            helpdesk: false,
            extra: format!(
                "[connectors.{name}]\ntype = \"{kind}\"\n[connectors.{name}.settings]\n{settings}\n"
            ),
            ..Self::default()
        }
    }
}

/// A running chatbridge and its fake upstream.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub worker: Arc<Worker>,
    /// The connectors in use, for tests that put one of their own in place.
    pub registry: Arc<LiveRegistry>,
    pub zendesk: FakeZendesk,
    pub config_path: PathBuf,
    /// `store.url`: the SQLite file or the PostgreSQL schema this app uses.
    pub store_url: String,
    /// Holds the store and config; removed when the test ends.
    _dir: TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The PostgreSQL database the suite runs against instead of SQLite, if any.
pub fn postgres_url() -> Option<String> {
    std::env::var("CHATBRIDGE_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// Where a test app keeps its data: `sqlite://` in `dir`, or a new schema of the PostgreSQL
/// test database (left there for `.ci/run` to drop with the database).
pub async fn store_url(dir: &Path) -> String {
    static SCHEMAS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Some(base) = postgres_url() else {
        return format!("sqlite://{}", dir.join("chatbridge.db").display());
    };
    let schema = format!(
        "test_{}_{}",
        std::process::id(),
        SCHEMAS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .expect("CHATBRIDGE_TEST_POSTGRES_URL accepts connections");
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    drop(client);
    let _ = connection.await;
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

/// The config a test app runs with; also written to disk for CLI subprocesses.
pub fn config_text(store: &str, zendesk: &FakeZendesk, options: &Options) -> String {
    format!(
        r#"{top}
[server]
listen = "127.0.0.1:0"
max_body_bytes = 2097152
{server}

[store]
url = "{store}"
max_connections = 4

[sources.smartsupp]
{token}

[admin]
{admin}

[delivery]
{delivery}
{helpdesk}
{extra}
"#,
        top = options.top,
        server = options.server,
        token = if options.shared_token {
            format!("token = \"{HOOK_TOKEN}\"")
        } else {
            String::new()
        },
        delivery = options.delivery.toml(options.workers),
        admin = options.admin,
        helpdesk = if options.helpdesk {
            format!(
                r#"
[connectors.helpdesk]
type = "zendesk"
[connectors.helpdesk.settings]
subdomain = "acme"
email = "{ZENDESK_EMAIL}"
api_token = "{ZENDESK_TOKEN}"
base_url = "{zendesk}"
"#,
                zendesk = zendesk.uri()
            )
        } else {
            String::new()
        },
        extra = options.extra.replace("{zendesk}", &zendesk.uri()),
    )
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    log_buffer();
    let dir = tempfile::tempdir().unwrap();
    let zendesk = FakeZendesk::start(ZENDESK_EMAIL, ZENDESK_TOKEN).await;
    let store_url = match &options.store {
        Some(url) => url.clone(),
        None => store_url(dir.path()).await,
    };
    // `{data}` in the options stands for the app's own folder (an outbox beside the store).
    let text = config_text(&store_url, &zendesk, &options)
        .replace("{data}", &dir.path().display().to_string());
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, &text).unwrap();
    let config = Config::load(&config_path).expect("test config is valid");
    let app = Application::build(config).await.expect("app builds");
    let address = format!("http://{}", app.local_addr());
    let store = app.store();
    let worker = app.worker();
    let registry = app.registry();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        store,
        worker,
        registry,
        zendesk,
        config_path,
        store_url,
        _dir: dir,
        stop: Some(stop),
    }
}

impl TestApp {
    pub async fn post_smartsupp(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.post_raw(&format!("/hooks/smartsupp/{HOOK_TOKEN}"), body)
            .await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `GET path` without credentials (probes, metrics, the OpenAPI document), as text.
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `GET path` without credentials, as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.get_text(path).await).unwrap()
    }

    /// A request to the admin API with the admin token.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// `GET path` with the admin token, as JSON (the status must be 200).
    pub async fn api_get(&self, path: &str) -> serde_json::Value {
        let response = self.api(reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// `POST path` with the admin token and a JSON body; the status and the answer.
    pub async fn api_post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self
            .api(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or_default())
    }

    pub async fn deliveries(&self, state: Option<DeliveryState>) -> Vec<DeliveryRow> {
        self.store
            .deliveries(DeliveryFilter {
                state,
                ..DeliveryFilter::default()
            })
            .await
            .unwrap()
    }

    /// Posts the seed chat and waits until its delivery has had an attempt (for tests of
    /// refused credentials, where it stays pending).
    pub async fn first_attempt_of_the_seed(&self) -> DeliveryRow {
        self.post_smartsupp(fixture("smartsupp/seed-example.json"))
            .await;
        wait_until(|| async {
            self.deliveries(None)
                .await
                .into_iter()
                .find(|d| d.attempts >= 1)
        })
        .await
    }

    /// Makes the target refuse the next `count` tickets for good (422), as Zendesk refuses a
    /// suspended requester, and posts that many seed chats (channels 1.. when more than one);
    /// returns their deliveries once dead. The target accepts what comes after.
    pub async fn dead_seeds(&self, count: u64) -> Vec<DeliveryRow> {
        self.zendesk.script((0..count).map(|_| {
            Scripted::status(
                422,
                serde_json::json!({ "error": "RecordInvalid", "description": "Requester is suspended" }),
            )
        }));
        if count == 1 {
            self.post_smartsupp(fixture("smartsupp/seed-example.json"))
                .await;
        } else {
            for channel in 1..=count {
                self.post_smartsupp(seed_with_channel(channel)).await;
            }
        }
        self.wait_for_deliveries(DeliveryState::Dead, count as usize)
            .await
    }

    /// Waits until `count` deliveries are in `state`.
    pub async fn wait_for_deliveries(
        &self,
        state: DeliveryState,
        count: usize,
    ) -> Vec<DeliveryRow> {
        let rows = wait_until(|| async {
            let rows = self.deliveries(Some(state)).await;
            (rows.len() >= count).then_some(rows)
        })
        .await;
        assert_eq!(rows.len(), count, "more {state} deliveries than expected");
        rows
    }
}

/// Polls `check` until it returns `Some`, failing the test after [`PATIENCE`].
pub async fn wait_until<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of environment variable `var`, which an ignored test needs: `.ci/run` sets it
/// and runs the test; run by hand without it, the test fails saying what to set.
pub fn required(var: &str, what: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("set {var} to {what} (.ci/run does)"))
}

/// Runs the `chatbridge` binary with `args`, returning (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chatbridge"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .output()
        .expect("chatbridge binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

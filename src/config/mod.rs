//! Configuration: `config.toml`, overridden by `CHATBRIDGE_*` environment variables.
//!
//! Layers, lowest first: the defaults written on these structs, the TOML file, then the
//! environment (`CHATBRIDGE_SOURCES__SMARTSUPP__TOKEN` sets `sources.smartsupp.token`; `__`
//! separates levels). Unknown keys in our own config are errors that name the valid ones,
//! so a typo fails at start instead of being silently ignored.
//!
//! Loading reports every problem at once ([`ConfigError`]), each with its key. Secrets are
//! [`SecretString`]s or [`SettingValue`]s, whose `Debug` never shows the value.
//!
//! The `///` docs on these fields, together with `config.toml`, are the config reference.

mod validate;
mod values;

pub use validate::{ConfigError, Problem};
pub use values::SettingValue;
pub(crate) use values::optional_duration;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};

use self::values::{accounts, duration};
use crate::sources::auth::{SourceTokens, TokenScope};
use crate::sources::instance::{Api, Credential, Instance, Instances};
use crate::sources::signature::Secrets;
use crate::sources::{Proof, Source};

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "CHATBRIDGE_";

/// The whole configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A folder of templates that shadow the built-in ones of the same relative name.
    pub templates_dir: Option<PathBuf>,
    /// A folder of connector definitions (`TYPE.toml`) that add to or replace the built-in ones.
    pub connectors_dir: Option<PathBuf>,
    /// The HTTP listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where conversations and deliveries are kept.
    #[serde(default)]
    pub store: StoreConfig,
    /// The chat products allowed to post, with their credentials.
    #[serde(default)]
    pub sources: SourcesConfig,
    /// The admin API and dashboard.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Retry policy and workers.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// OpenTelemetry trace export.
    #[serde(default)]
    pub traces: TracesConfig,
    /// How transcripts read in every connector's templates.
    #[serde(default)]
    pub transcript: TranscriptConfig,
    /// How long conversations are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// What is removed from message text before it is stored or sent.
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// Connector instances by name (snake_case).
    #[serde(default)]
    pub connectors: BTreeMap<String, ConnectorConfig>,
    /// The file this was loaded from, for reloads (none for text configs).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on (`127.0.0.1:8080`; port 0 picks a free one).
    pub listen: String,
    /// Largest accepted request body in bytes; larger ones are answered 413.
    pub max_body_bytes: usize,
    /// Connections served at once; more wait in the kernel's backlog. Keep it below the
    /// process's open-file limit (`LimitNOFILE`), which also covers the store and targets.
    pub max_connections: usize,
    /// From a request's first byte to its complete head; a slower client is disconnected.
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// The whole body of a request, once its head has arrived; a slower one is answered 408.
    #[serde(deserialize_with = "duration")]
    pub body_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed (keep-alive).
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 2 * 1024 * 1024,
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// `[store]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` (the file and its folder are created on first start) for one process,
    /// or `postgres://USER:PASSWORD@HOST:PORT/DATABASE` for several replicas sharing one
    /// queue (the database must exist; the tables are created on first start).
    pub url: String,
    /// PostgreSQL: the most connections this process opens.
    pub max_connections: usize,
    /// SQLite durability: `full` syncs every commit to disk (an acknowledged chat survives a
    /// power cut); `normal` may lose the last commits on power loss, never on a crash.
    pub synchronous: Synchronous,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/chatbridge.db".into(),
            max_connections: 16,
            synchronous: Synchronous::Full,
        }
    }
}

/// Where the store lives, from `store.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file, for one process.
    Sqlite(PathBuf),
    /// A PostgreSQL database (the URL, which may hold a password), for several replicas.
    Postgres(String),
}

/// How durable a SQLite commit is before it is answered: the two levels of SQLite's
/// `synchronous` that make sense with WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// The WAL is synced past a commit before any of its work is answered (by the store's
    /// sync thread, beside the writer rather than inside its commit).
    Full,
    /// fsync at checkpoints only.
    Normal,
}

/// `[sources]`: each instance by name. The name is the route (`/hooks/NAME`), the
/// quarantine's `source`, and the account of products whose payload names none (Olark).
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct SourcesConfig(pub BTreeMap<String, SourceConfig>);

impl SourcesConfig {
    /// The instance of that name.
    pub fn get(&self, name: &str) -> Option<&SourceConfig> {
        self.0.get(name)
    }

    /// Every instance, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SourceConfig)> {
        self.0.iter().map(|(name, source)| (name.as_str(), source))
    }

    /// The instances requests are checked against.
    pub fn instances(&self) -> Instances {
        Instances::new(self.iter().filter_map(|(name, s)| s.instance(name)))
    }
}

/// `[sources.NAME]`: one chat product posting to `/hooks/NAME` (signed products) or
/// `/hooks/NAME/{token}` (products that can only be given a URL: Smartsupp's POST hook and
/// Olark). Which keys a product needs is checked at start, each problem naming its key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The product ([`Source`] names: `smartsupp`, `smartsupp-v2`, `tawk`, `crisp`,
    /// `livechat`, `tidio`, `olark`); defaults to the instance's name when that is one.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The product's webhook secret: the HMAC key of signing products, LiveChat's
    /// `secret_key`.
    pub secret: Option<SecretString>,
    /// A secret still accepted while the product switches to a new one; removing it is what
    /// makes the old one stop working.
    pub previous_secret: Option<SecretString>,
    /// The secret in the hook URL (`/hooks/NAME/{token}`), accepted for chats of any
    /// account, for products that cannot send headers. Leave it out when every customer has
    /// a tenant token.
    pub token: Option<SecretString>,
    /// A previous token still accepted while the product switches the URL over.
    pub previous_token: Option<SecretString>,
    /// One entry per customer of a shared deployment: its own hook token, accepted only for
    /// chats of its accounts, so no customer can post into another's help desk.
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    /// The product's REST API, for what its webhook does not carry.
    pub api: Option<SourceApiConfig>,
}

impl SourceConfig {
    /// The product, from `type` or the instance's name; `None` when neither names one.
    pub fn source(&self, name: &str) -> Option<Source> {
        Source::from_name(self.kind.as_deref().unwrap_or(name))
    }

    /// The instance as requests are checked against it; `None` when `type` names no
    /// product (which validation reports).
    pub fn instance(&self, name: &str) -> Option<Instance> {
        let source = self.source(name)?;
        let secrets = || {
            self.secret.clone().map(|current| Secrets {
                current,
                previous: self.previous_secret.clone(),
            })
        };
        let credential = match source.proof() {
            Proof::UrlToken => {
                let shared = [self.token.as_ref(), self.previous_token.as_ref()]
                    .into_iter()
                    .flatten()
                    .map(|t| (t, TokenScope::AnyAccount));
                let tenants = self.tenants.iter().map(|t| {
                    (
                        &t.token,
                        TokenScope::Tenant {
                            name: t.name.clone(),
                            accounts: t.accounts.clone(),
                        },
                    )
                });
                Credential::Tokens(SourceTokens::scoped(shared.chain(tenants)))
            }
            Proof::Signature(scheme) => {
                secrets().map_or(Credential::Unset, |s| Credential::Signature(scheme, s))
            }
            Proof::BodySecret => secrets().map_or(Credential::Unset, Credential::BodySecret),
        };
        let api = source.api_root().map(|root| {
            let api = self.api.as_ref();
            Api {
                base_url: api
                    .and_then(|a| a.base_url.as_deref())
                    .unwrap_or(root)
                    .trim_end_matches('/')
                    .to_owned(),
                token: api.and_then(|a| a.token.clone()),
                identifier: api.and_then(|a| a.identifier.clone()),
                key: api.and_then(|a| a.key.clone()),
            }
        });
        Some(Instance {
            name: name.to_owned(),
            source,
            credential,
            api,
        })
    }
}

/// `[sources.NAME.api]`: the credentials a fetching product's REST API takes. Which keys a
/// product needs is in its section of the README and checked at start.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceApiConfig {
    /// Where the API is (the product's public one by default); tests and proxies set it.
    pub base_url: Option<String>,
    /// An API token: Smartsupp's access token, LiveChat's personal access token.
    pub token: Option<SecretString>,
    /// An account or client id: LiveChat's account id, Crisp's token identifier, Tidio's
    /// client id.
    pub identifier: Option<String>,
    /// The secret paired with `identifier`: Crisp's token key, Tidio's client secret.
    pub key: Option<SecretString>,
}

/// `[[sources.NAME.tenants]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The customer, as logs and refusals name it.
    pub name: String,
    /// Its hook token.
    pub token: SecretString,
    /// Its accounts at the product (Smartsupp `accountId`s).
    #[serde(deserialize_with = "accounts")]
    pub accounts: Vec<String>,
}

/// `[transcript]`: how the shared transcript partials render.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscriptConfig {
    /// The IANA time zone message times are shown in (`Europe/Prague`); agents read
    /// transcripts in their own time, not the server's.
    pub time_zone: String,
    /// Whether system events (agent joined, chat transferred) appear between messages.
    pub system_events: bool,
}

impl Default for TranscriptConfig {
    fn default() -> Self {
        Self {
            time_zone: "UTC".into(),
            system_events: true,
        }
    }
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Bearer token for the admin API and dashboard; absent turns them off.
    pub token: Option<SecretString>,
    /// A dashboard session ends after this long without a request.
    #[serde(deserialize_with = "duration")]
    pub session_idle_timeout: Duration,
    /// A dashboard session ends this long after its login, however busy.
    #[serde(deserialize_with = "duration")]
    pub session_lifetime: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            token: None,
            session_idle_timeout: Duration::from_secs(3600),
            session_lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

/// `[retention]`: transcripts are personal data, kept only as long as they are useful.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days a conversation is kept after its last delivery succeeded (0 keeps it forever).
    pub delivered_days: u32,
    /// Days a conversation with a dead delivery, or a quarantined body, is kept (0: forever).
    /// Longer than `delivered_days` by default: dead letters wait for someone to look.
    pub dead_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            delivered_days: 30,
            dead_days: 90,
        }
    }
}

/// `[privacy]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Rules applied, in order, to message text before it is stored or sent.
    #[serde(default)]
    pub redact: Vec<RedactRule>,
}

/// One redaction rule: every match of `pattern` in a message becomes `replacement`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactRule {
    /// A regular expression (Rust `regex` syntax), compiled as the config loads.
    #[serde(deserialize_with = "regex")]
    pub pattern: regex::Regex,
    /// What a match becomes (`$1` refers to a group).
    #[serde(default = "redacted")]
    pub replacement: String,
}

fn redacted() -> String {
    "[redacted]".into()
}

fn regex<'de, D: Deserializer<'de>>(deserializer: D) -> Result<regex::Regex, D::Error> {
    let text = String::deserialize(deserializer)?;
    regex::Regex::new(&text).map_err(serde::de::Error::custom)
}

/// `[delivery]`: the retry policy and the workers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Failed attempts after which a delivery is dead (429 answers do not count).
    pub max_attempts: u32,
    /// Wait after the first failure.
    #[serde(deserialize_with = "duration")]
    pub initial_interval: Duration,
    /// Growth of the wait per failure.
    pub multiplier: f64,
    /// Longest wait between attempts; also the ceiling for a target's `Retry-After`.
    #[serde(deserialize_with = "duration")]
    pub max_interval: Duration,
    /// After this long since the first attempt, a failing delivery is dead.
    #[serde(deserialize_with = "duration")]
    pub max_elapsed: Duration,
    /// Jitter: each wait is spread by ± this fraction, so retries of many deliveries do not
    /// arrive at a recovering target in one burst.
    pub randomization: f64,
    /// Time limit of one HTTP request to a target.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Deliveries attempted at the same time. 0 runs no workers (an ingest-only process).
    pub workers: usize,
    /// How long a delivery being attempted stays this process's. Renewed while the attempt
    /// runs, so it need not cover the longest attempt; when a replica dies, its deliveries
    /// are taken over by another replica this long after its last renewal.
    #[serde(deserialize_with = "duration")]
    pub lease: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 15,
            initial_interval: Duration::from_secs(2),
            multiplier: 2.0,
            max_interval: Duration::from_secs(15 * 60),
            max_elapsed: Duration::from_secs(48 * 3600),
            randomization: 0.3,
            request_timeout: Duration::from_secs(30),
            workers: 16,
            lease: Duration::from_secs(30),
        }
    }
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
    /// Filter in `RUST_LOG` syntax, used when `RUST_LOG` is not set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// `[traces]`: spans (requests, deliveries, their attempts and upstream calls) exported to
/// an OpenTelemetry collector over OTLP/HTTP with protobuf bodies. Off while `otlp_endpoint`
/// is not set, and then costs nothing: no exporter, no span bookkeeping beyond the logs'.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracesConfig {
    /// The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`); spans are posted to
    /// `{otlp_endpoint}/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of traces kept, from 0.0 to 1.0 (a request's decision holds for its children).
    pub sample_ratio: f64,
    /// Headers sent with every export, such as a vendor's API key.
    pub headers: BTreeMap<String, SecretString>,
}

impl Default for TracesConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "chatbridge".into(),
            sample_ratio: 1.0,
            headers: BTreeMap::new(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[connectors.NAME]`: one connector instance.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// The connector type: a definition in `connectors/TYPE.toml`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A Tera expression over `conversation` (and `raw`); the instance receives only the
    /// conversations for which it holds. Absent: every conversation.
    pub when: Option<String>,
    /// Values for the type's settings; which are secret is said by the definition.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingValue>,
    /// Requests per second this instance may send, with a burst allowance. Targets publish
    /// per-minute limits; staying under them avoids 429s that cost everyone time.
    pub rate_limit: Option<RateLimit>,
    /// Deliveries of this instance attempted at the same time (default: no limit beyond
    /// `delivery.workers`).
    pub concurrency: Option<usize>,
    /// When to stop calling a failing target.
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// Only chats of these Smartsupp `accountId`s (default: every account), so one deployment
    /// gives each customer its own connectors.
    #[serde(default, deserialize_with = "accounts")]
    pub accounts: Vec<String>,
}

/// `rate_limit = { per_second = 5, burst = 5 }`
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second (fractions allowed: 0.5 is one every 2 s).
    pub per_second: f64,
    /// Requests that may go at once after a quiet spell (default 1).
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

/// `circuit = { failures = 5, cool_down = "30s" }`: after `failures` consecutive transient
/// failures (timeouts, 5xx) the target is not called for `cool_down`; then one delivery
/// probes it, and success closes the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitConfig {
    /// Consecutive failures that open the circuit (0: never).
    pub failures: u32,
    /// How long it stays open before a probe.
    #[serde(deserialize_with = "duration")]
    pub cool_down: Duration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// The top-level keys; environment variables outside them (such as test settings that share
/// the prefix) are not configuration.
const SECTIONS: &[&str] = &[
    "templates_dir",
    "connectors_dir",
    "server",
    "store",
    "sources",
    "admin",
    "delivery",
    "log",
    "traces",
    "transcript",
    "retention",
    "privacy",
    "connectors",
];

fn env() -> Env {
    Env::prefixed(ENV_PREFIX).split("__").filter(|key| {
        // Figment may show the key before or after the `__` split; accept both spellings.
        let key = key.as_str().to_ascii_lowercase();
        SECTIONS.iter().any(|s| {
            key.strip_prefix(s).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('.') || rest.starts_with("__")
            })
        })
    })
}

impl Config {
    /// Loads `path` with environment overrides and validates the result.
    ///
    /// # Errors
    /// When the file is missing or malformed, a key is unknown or mistyped, or a value is out
    /// of range; every problem is listed.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(vec![Problem {
                key: path.display().to_string(),
                message: "no such config file (pass --config PATH)".into(),
            }]
            .into());
        }
        let mut config =
            Self::from_figment(Figment::new().merge(Toml::file_exact(path)).merge(env()))?;
        config.path = Some(path.to_owned());
        Ok(config)
    }

    /// Parses TOML text with environment overrides (tests, embedded examples).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(text)).merge(env()))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Self = figment.extract().map_err(|errors| {
            ConfigError::from(
                errors
                    .into_iter()
                    .map(|e| Problem {
                        key: if e.path.is_empty() {
                            "config".into()
                        } else {
                            e.path.join(".")
                        },
                        message: e.kind.to_string(),
                    })
                    .collect::<Vec<_>>(),
            )
        })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems.into())
        }
    }

    /// The listen address, when valid.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.server.listen.parse().ok()
    }

    /// The SQLite file for a `sqlite://` store URL.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let path = self.store.url.strip_prefix("sqlite://")?;
        (!path.is_empty()).then(|| PathBuf::from(path))
    }

    /// Which store `store.url` names, or `None` when it names none we know.
    pub fn store_location(&self) -> Option<StoreLocation> {
        let url = &self.store.url;
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Some(StoreLocation::Postgres(url.clone()));
        }
        self.sqlite_path().map(StoreLocation::Sqlite)
    }
}

#[cfg(test)]
mod tests {
    use super::validate::without_password;
    use super::*;

    #[test]
    fn the_shipped_config_toml_is_valid() {
        let text = include_str!("../../config.toml");
        let config = Config::from_toml(text).unwrap();
        assert_eq!(config.server.max_body_bytes, 2_097_152);
        assert!(!config.connectors.is_empty());
    }

    #[test]
    fn a_store_url_in_an_error_shows_no_password() {
        for url in [
            "mysql://chatbridge:hunter2-s3cret@db:3306/chatbridge",
            "mysql://db/chatbridge?user=c&password=hunter2-s3cret&x=1",
            "redis://:hunter2-s3cret@cache",
        ] {
            let error = Config::from_toml(&format!("[store]\nurl = \"{url}\"\n")).unwrap_err();
            let text = error.to_string();
            assert!(
                text.contains("store.url") && !text.contains("hunter2"),
                "{text}"
            );
        }
        assert_eq!(
            without_password("postgres://u:p%40ss@h:5432/d"),
            "postgres://u:***@h:5432/d"
        );
    }

    #[test]
    fn each_source_is_checked_for_what_its_product_needs_and_told_the_fix() {
        let problems = |text: &str| match Config::from_toml(text) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };
        for (text, key, fix) in [
            (
                "[sources.support]\nsecret = \"s\"\n",
                "sources.support.type",
                "set it to one of smartsupp, smartsupp-v2, tawk",
            ),
            (
                "[sources.x]\ntype = \"tawkto\"\n",
                "sources.x.type",
                "`tawkto` is not a product",
            ),
            (
                "[sources.tawk]\n",
                "sources.tawk.secret",
                "CHATBRIDGE_SOURCES__TAWK__SECRET",
            ),
            (
                "[sources.tawk]\nsecret = \"s\"\ntoken = \"t\"\n",
                "sources.tawk.token",
                "proves its requests with secret",
            ),
            (
                "[sources.olark]\nsecret = \"s\"\n",
                "sources.olark.secret",
                "set token",
            ),
            (
                "[sources.crisp]\nsecret = \"s\"\n",
                "sources.crisp.api",
                "add [sources.crisp.api] with identifier and key",
            ),
            (
                "[sources.crisp]\nsecret = \"s\"\n[sources.crisp.api]\nidentifier = \"i\"\n",
                "sources.crisp.api.key",
                "the key of the plugin's production token",
            ),
            (
                "[sources.tawk]\nsecret = \"s\"\n[sources.tawk.api]\ntoken = \"t\"\n",
                "sources.tawk.api",
                "carry the whole conversation",
            ),
            (
                "[sources.\"Tawk Main\"]\ntype = \"tawk\"\nsecret = \"s\"\n",
                "sources.Tawk Main",
                "not a name for a URL",
            ),
        ] {
            let found = problems(text);
            assert!(
                found.contains(key) && found.contains(fix),
                "{text}: {found}"
            );
        }
        let fine = "[sources.tawk]\nsecret = \"s\"\n[sources.shop2]\ntype = \"livechat\"\nsecret = \"s\"\n\
                    [sources.shop2.api]\nidentifier = \"a\"\ntoken = \"t\"\nbase_url = \"http://127.0.0.1:9\"\n";
        assert_eq!(problems(fine), "");
        let config = Config::from_toml(fine).unwrap();
        let instances = config.sources.instances();
        let shop = instances.get("shop2").unwrap();
        assert_eq!(shop.source, Source::LiveChat);
        assert_eq!(shop.api.as_ref().unwrap().base_url, "http://127.0.0.1:9");
        assert!(
            !format!("{:?}", config.sources).contains("\"s\""),
            "secrets stay hidden"
        );
    }

    #[test]
    fn a_short_admin_token_is_refused() {
        let error = Config::from_toml("[admin]\ntoken = \"letmein\"\n").unwrap_err();
        assert!(error.to_string().contains("admin.token"), "{error}");
        assert!(Config::from_toml("[admin]\ntoken = \"2f9a61c0e4b7d3a8f1e6c2b9\"\n").is_ok());
    }

    #[test]
    fn durations_are_human_strings() {
        let config =
            Config::from_toml("[delivery]\ninitial_interval = \"200ms\"\nmax_interval = \"15m\"")
                .unwrap();
        assert_eq!(config.delivery.initial_interval, Duration::from_millis(200));
        assert_eq!(config.delivery.max_interval, Duration::from_secs(900));
        let config = Config::from_toml(
            "[delivery]

initial_interval = \"1h 30m\"\nmax_interval = \"2d\"\nmax_elapsed = \"1 week\"",
        )
        .unwrap();
        assert_eq!(config.delivery.initial_interval, Duration::from_secs(5_400));
        assert_eq!(config.delivery.max_interval, Duration::from_secs(172_800));
        assert_eq!(config.delivery.max_elapsed, Duration::from_secs(604_800));
        for refused in ["soon", "-5s", "2 months"] {
            let error = Config::from_toml(&format!("[delivery]\nmax_interval = \"{refused}\""))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(&format!("`{refused}` is not a duration")),
                "{error}"
            );
        }
    }

    #[test]
    fn every_problem_is_listed_by_key() {
        let err = Config::from_toml(
            "[server]\nlisten = \"nowhere\"\n[delivery]\nmultiplier = 0.5\nrandomization = 2.0\n",
        )
        .unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "delivery.multiplier",
                "delivery.randomization"
            ]
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_valid_names() {
        let err = Config::from_toml("[server]\nlisten_on = \"127.0.0.1:1\"\n").unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("listen_on") && message.contains("max_body_bytes"),
            "{message}"
        );
    }

    #[test]
    fn setting_values_never_show_in_debug_output() {
        let config = Config::from_toml(
            "[connectors.x]\ntype = \"zendesk\"\nsettings = { api_token = \"s3cr3t-value\" }\n[sources.smartsupp]\ntoken = \"t0k3n-value\"\n",
        )
        .unwrap();
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cr3t-value") && !shown.contains("t0k3n-value"),
            "{shown}"
        );
    }
}

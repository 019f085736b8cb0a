//! Checking a loaded config: every problem found at once, each with its key, so a start
//! that fails says everything that must change.

use std::fmt;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::Config;
use crate::sources::{Proof, Source};

/// The fewest characters an admin token may have: it opens every conversation, and the
/// login form is the one place it can be guessed at.
pub(super) const MIN_ADMIN_TOKEN: usize = 20;

/// A connection URL as it may be shown: the password of `user:password@` and of a
/// `password=` parameter replaced by `***`.
pub(super) fn without_password(url: &str) -> String {
    let mut shown = url.to_owned();
    if let Some(scheme_end) = shown.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = shown[authority_start..]
            .find(['/', '?', '#'])
            .map_or(shown.len(), |i| authority_start + i);
        if let Some(at) = shown[authority_start..authority_end].rfind('@') {
            let userinfo = &shown[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                shown.replace_range(authority_start + colon + 1..authority_start + at, "***");
            }
        }
    }
    let mut out = String::with_capacity(shown.len());
    let mut rest = shown.as_str();
    while let Some(at) = rest.to_ascii_lowercase().find("password=") {
        let value_start = at + "password=".len();
        out.push_str(&rest[..value_start]);
        out.push_str("***");
        let value_end = rest[value_start..]
            .find(['&', ' ', ';'])
            .map_or(rest.len(), |i| value_start + i);
        rest = &rest[value_end..];
    }
    out.push_str(rest);
    out
}

/// The problems [`Config::validate`] finds, in the order of the file's sections.
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: &str, message: String) {
        self.0.push(Problem {
            key: key.into(),
            message,
        });
    }
}

/// One thing wrong with the configuration or a definition, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key (`delivery.multiplier`, `connectors.helpdesk.type`) or file it concerns.
    pub key: String,
    /// What is wrong and, where possible, what would be right.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The configuration cannot be used; lists every problem found.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// Every problem, in the order found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problems):",
            self.problems.len()
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl From<Vec<Problem>> for ConfigError {
    fn from(problems: Vec<Problem>) -> Self {
        Self { problems }
    }
}

impl Config {
    /// Checks values that types alone cannot: ranges, addresses, names.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Problems(Vec::new());
        self.validate_server(&mut problems);
        self.validate_store(&mut problems);
        self.validate_sources(&mut problems);
        self.validate_admin(&mut problems);
        self.validate_delivery(&mut problems);
        self.validate_connectors(&mut problems);
        problems.0
    }

    /// The listener, its limits and timeouts, the traces and the transcript's time zone.
    pub(super) fn validate_server(&self, problems: &mut Problems) {
        if self.listen_addr().is_none() {
            problems.add(
                "server.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:8080",
                    self.server.listen
                ),
            );
        }
        if self.server.max_body_bytes == 0 {
            problems.add("server.max_body_bytes", "must be more than 0".into());
        }
        if let Some(endpoint) = &self.traces.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            problems.add(
                "traces.otlp_endpoint",
                format!(
                    "`{endpoint}` is not an http:// or https:// URL like http://127.0.0.1:4318"
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.traces.sample_ratio) {
            problems.add(
                "traces.sample_ratio",
                format!("{} is not between 0.0 and 1.0", self.traces.sample_ratio),
            );
        }
        for (key, value) in [
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
            ("server.body_read_timeout", self.server.body_read_timeout),
            ("server.idle_timeout", self.server.idle_timeout),
            (
                "admin.session_idle_timeout",
                self.admin.session_idle_timeout,
            ),
            ("admin.session_lifetime", self.admin.session_lifetime),
        ] {
            if value.is_zero() {
                problems.add(key, "must be more than 0".into());
            }
        }
        if self.server.max_connections == 0 {
            problems.add("server.max_connections", "must be at least 1".into());
        }
        if let Err(e) = jiff::tz::TimeZone::get(&self.transcript.time_zone) {
            problems.add(
                "transcript.time_zone",
                format!(
                    "`{}` is not an IANA time zone: {e}",
                    self.transcript.time_zone
                ),
            );
        }
    }

    /// The store's URL and pool.
    pub(super) fn validate_store(&self, problems: &mut Problems) {
        if self.store_location().is_none() {
            problems.add(
                "store.url",
                format!(
                    "`{}` is not supported; use sqlite://PATH or postgres://USER@HOST/DATABASE",
                    without_password(&self.store.url)
                ),
            );
        }
        if self.store.max_connections == 0 {
            problems.add("store.max_connections", "must be more than 0".into());
        }
    }

    /// Each source: a product it names, the credential that product proves itself with
    /// (URL tokens: some set, none empty, none shared by two tenants; a secret otherwise),
    /// and the API keys of products whose conversations are fetched.
    pub(super) fn validate_sources(&self, problems: &mut Problems) {
        for (name, config) in self.sources.iter() {
            let at = |key: &str| format!("sources.{name}{key}");
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                problems.add(
                    &at(""),
                    "is not a name for a URL; use lower-case letters, digits, `-` and `_`".into(),
                );
            }
            let products = Source::ALL.map(Source::name).join(", ");
            let Some(source) = config.source(name) else {
                let message = match &config.kind {
                    Some(kind) => {
                        format!("`{kind}` is not a product chatbridge reads; use one of {products}")
                    }
                    None => format!(
                        "is missing, and `{name}` is not a product's name; set it to one of {products}"
                    ),
                };
                problems.add(&at(".type"), message);
                continue;
            };
            let product = source.name();
            let unused = |problems: &mut Problems, key: &str, present: bool, instead: &str| {
                if present {
                    problems.add(
                        &at(key),
                        format!("is not used by {product} sources; {instead}"),
                    );
                }
            };
            if source.proof() == Proof::UrlToken {
                Self::validate_tokens(name, config, problems);
                let instead = format!(
                    "{product} signs nothing, so its secret is the token in the URL: set token"
                );
                for (key, present) in [
                    (".secret", config.secret.is_some()),
                    (".previous_secret", config.previous_secret.is_some()),
                ] {
                    unused(problems, key, present, &instead);
                }
            } else {
                let instead = format!("{product} proves its requests with secret, not a URL token");
                for (key, present) in [
                    (".token", config.token.is_some()),
                    (".previous_token", config.previous_token.is_some()),
                ] {
                    unused(problems, key, present, &instead);
                }
                unused(
                    problems,
                    ".tenants",
                    !config.tenants.is_empty(),
                    "give each customer a source instance (and route) of its own, with its own secret",
                );
                match &config.secret {
                    None => problems.add(
                        &at(".secret"),
                        format!(
                            "is missing; {product} requests are refused until it is set to the webhook's secret \
                             (CHATBRIDGE_SOURCES__{}__SECRET)",
                            name.to_ascii_uppercase().replace('-', "_")
                        ),
                    ),
                    Some(secret) if secret.expose_secret().trim().is_empty() => {
                        problems.add(&at(".secret"), "must not be empty".into());
                    }
                    Some(_) => {}
                }
                if config
                    .previous_secret
                    .as_ref()
                    .is_some_and(|s| s.expose_secret().trim().is_empty())
                {
                    problems.add(
                        &at(".previous_secret"),
                        "must not be empty; leave it out when no rotation is under way".into(),
                    );
                }
            }
            self.validate_source_api(name, source, config, problems);
        }
    }

    /// `[sources.NAME.api]`: present with every key its product's fetches need, and only
    /// for products that fetch.
    fn validate_source_api(
        &self,
        name: &str,
        source: Source,
        config: &super::SourceConfig,
        problems: &mut Problems,
    ) {
        let at = format!("sources.{name}.api");
        let product = source.name();
        if !source.fetches() {
            if config.api.is_some() {
                problems.add(
                    &at,
                    format!(
                        "is not used: {product} webhooks carry the whole conversation; remove it"
                    ),
                );
            }
            return;
        }
        let Some(api) = &config.api else {
            let keys: Vec<&str> = source.api_keys().iter().map(|(k, _)| *k).collect();
            problems.add(
                &at,
                format!(
                    "is missing; {product} webhooks do not carry the transcript, so chatbridge reads it \
                     from the {product} API: add [sources.{name}.api] with {}",
                    keys.join(" and ")
                ),
            );
            return;
        };
        if let Some(url) = &api.base_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            problems.add(
                &format!("{at}.base_url"),
                format!("`{url}` is not an http(s) URL"),
            );
        }
        for (key, what) in source.api_keys() {
            let set = match *key {
                "token" => api.token.as_ref().map(|s| s.expose_secret().to_owned()),
                "key" => api.key.as_ref().map(|s| s.expose_secret().to_owned()),
                _ => api.identifier.clone(),
            };
            if set.is_none_or(|v| v.trim().is_empty()) {
                problems.add(
                    &format!("{at}.{key}"),
                    format!("is missing; set it to {what}"),
                );
            }
        }
        for (key, present) in [
            ("token", api.token.is_some()),
            ("identifier", api.identifier.is_some()),
            ("key", api.key.is_some()),
        ] {
            if present && !source.api_keys().iter().any(|(k, _)| *k == key) {
                problems.add(
                    &format!("{at}.{key}"),
                    format!("is not used by the {product} API; remove it"),
                );
            }
        }
    }

    /// A URL-token source's tokens: some set, none empty, none shared by two tenants, and
    /// every tenant with its accounts.
    fn validate_tokens(name: &str, config: &super::SourceConfig, problems: &mut Problems) {
        if config.token.is_none() && config.tenants.is_empty() {
            problems.add(
                &format!("sources.{name}"),
                format!("set token, or a token per customer in [[sources.{name}.tenants]]"),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        let tokens = [
            (format!("sources.{name}.token"), config.token.as_ref()),
            (
                format!("sources.{name}.previous_token"),
                config.previous_token.as_ref(),
            ),
        ]
        .into_iter()
        .chain(config.tenants.iter().map(|t| {
            (
                format!("sources.{name}.tenants.{}.token", t.name),
                Some(&t.token),
            )
        }));
        for (key, token) in tokens {
            let Some(token) = token else { continue };
            if token.expose_secret().trim().is_empty() {
                problems.add(&key, "must not be empty".into());
            } else if !seen.insert(token.expose_secret().to_owned()) {
                problems.add(
                    &key,
                    "is used twice; give every tenant a token of its own".into(),
                );
            }
        }
        for tenant in &config.tenants {
            if tenant.accounts.is_empty() {
                problems.add(
                    &format!("sources.{name}.tenants.{}.accounts", tenant.name),
                    "list the tenant's account ids at the product".into(),
                );
            }
        }
    }

    /// The admin token: long enough to resist guessing.
    pub(super) fn validate_admin(&self, problems: &mut Problems) {
        if let Some(token) = &self.admin.token {
            let length = token.expose_secret().trim().chars().count();
            if length < MIN_ADMIN_TOKEN {
                problems.add(
                    "admin.token",
                    format!(
                        "is {length} characters; use at least {MIN_ADMIN_TOKEN} random ones \
                         (`openssl rand -hex 24` makes one), or leave it out to turn the admin API off"
                    ),
                );
            }
        }
    }

    /// Retries, leases and timeouts of deliveries.
    pub(super) fn validate_delivery(&self, problems: &mut Problems) {
        let d = &self.delivery;
        if d.max_attempts == 0 {
            problems.add("delivery.max_attempts", "must be at least 1".into());
        }
        if !(d.multiplier >= 1.0 && d.multiplier.is_finite()) {
            problems.add("delivery.multiplier", "must be at least 1.0".into());
        }
        if !(0.0..=1.0).contains(&d.randomization) {
            problems.add(
                "delivery.randomization",
                "must be between 0.0 and 1.0".into(),
            );
        }
        if d.initial_interval.is_zero() || d.initial_interval > d.max_interval {
            problems.add(
                "delivery.initial_interval",
                "must be more than 0 and at most delivery.max_interval".into(),
            );
        }
        if d.lease < Duration::from_secs(1) {
            problems.add("delivery.lease", "must be at least 1s".into());
        }
        if d.request_timeout.is_zero() {
            problems.add("delivery.request_timeout", "must be more than 0".into());
        }
    }

    /// Each connector instance's name and limits.
    pub(super) fn validate_connectors(&self, problems: &mut Problems) {
        for (name, instance) in &self.connectors {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                problems.add(
                    &format!("connectors.{name}"),
                    "instance names use lower-case letters, digits and `_` (they become environment variable names)".into(),
                );
            }
            if let Some(limit) = instance.rate_limit
                && !(limit.per_second > 0.0 && limit.per_second.is_finite() && limit.burst >= 1)
            {
                problems.add(
                    &format!("connectors.{name}.rate_limit"),
                    "per_second must be more than 0 and burst at least 1".into(),
                );
            }
            if instance.concurrency == Some(0) {
                problems.add(
                    &format!("connectors.{name}.concurrency"),
                    "must be at least 1 (leave it out for no limit)".into(),
                );
            }
            if instance.circuit.failures > 0 && instance.circuit.cool_down.is_zero() {
                problems.add(
                    &format!("connectors.{name}.circuit.cool_down"),
                    "must be more than 0".into(),
                );
            }
            if instance.kind.trim().is_empty() {
                problems.add(
                    &format!("connectors.{name}.type"),
                    "must name a connector type".into(),
                );
            }
        }
    }
}

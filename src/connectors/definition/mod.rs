//! The connector definition schema: `connectors/TYPE.toml`, one file per connector type.
//!
//! A definition is data: the settings an instance must give (and which are secret), how to
//! authenticate, and the HTTP steps to run, each with templates. [`super::http`] runs it.
//! Definitions ship inside the binary; a `connectors_dir` adds new types or replaces shipped
//! ones by file name, without a rebuild.
//!
//! Validation here is pure (no I/O, no templates): it checks the shape and reports every
//! problem with the file and key, so `chatbridge check` can list them all at once.

pub mod snippet;
mod step;
mod validate;

pub use step::{OutputSource, OutputSpec, Search, StatusRule, Step};

use std::collections::BTreeMap;
use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Toml};
use include_dir::{Dir, include_dir};
use serde::Deserialize;

use crate::config::Problem;

/// The definitions shipped in the binary.
static BUILTIN_DEFINITIONS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/connectors");

/// What runs a definition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// HTTP steps, run by [`super::http::HttpConnector`].
    #[default]
    Http,
    /// Writes each rendered delivery to a file ([`super::file::FileConnector`]).
    File,
    /// Sends each delivery as an e-mail over SMTP ([`super::email::EmailConnector`]).
    Email,
}

/// One connector type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// One line for `chatbridge check` and the docs.
    pub description: String,
    /// What runs it; `http` unless said otherwise.
    #[serde(default)]
    pub engine: Engine,
    /// A Tera condition a conversation must meet for this type to take it at all (a CRM
    /// contact needs `conversation.visitor.email`); checked at ingest with the instance's
    /// own `when`, so a conversation it cannot take gets no delivery rather than a dead one.
    pub when: Option<String>,
    /// Template for the base URL, from settings only (`https://{{ settings.subdomain }}.zendesk.com`).
    /// An instance's `settings.base_url` replaces it (tests, proxies).
    pub base_url: Option<String>,
    /// Settings an instance gives, by name.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingSpec>,
    /// How requests authenticate.
    pub auth: Option<Auth>,
    /// Headers sent with every step (templates).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// An HMAC signature of each request body, sent in a header.
    pub signature: Option<Signature>,
    /// The HTTP steps, run in order.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Output names kept per (connector instance, conversation) once a step yields them: the
    /// ids of what this connector made at the target. Later versions read them as
    /// `ledger.NAME`.
    #[serde(default)]
    pub ledger: Vec<String>,
    /// Steps run instead of `steps` for a later version of a conversation once the ledger
    /// holds every name in `ledger` (a comment on the ticket made before, not a new ticket).
    #[serde(default)]
    pub update: Vec<Step>,
    /// Status rules for every step; a step's own `on_status` wins (vendor "busy" codes).
    #[serde(default)]
    pub on_status: BTreeMap<String, StatusRule>,
    /// Where the target says how long to wait, read after `Retry-After`, in order.
    #[serde(default)]
    pub wait_headers: Vec<WaitHeader>,
    /// How long to wait after a throttling answer that names no wait (Salesforce's 403
    /// `REQUEST_LIMIT_EXCEEDED` counts a rolling day: back off for minutes, not seconds).
    #[serde(default, deserialize_with = "crate::config::optional_duration")]
    pub throttle_wait: Option<std::time::Duration>,
    /// For `engine = "file"`: the body template written to the file.
    pub body: Option<String>,
    /// For `engine = "email"`: the message's templates.
    pub message: Option<MessageTemplates>,
}

/// The templates of an e-mail: a subject snippet and two body files, sent as one
/// `multipart/alternative` message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplates {
    /// Subject template (`Chat: {{ conversation.subject }}`).
    pub subject: String,
    /// The text/plain part's template file.
    pub text: String,
    /// The text/html part's template file.
    pub html: String,
}

/// One setting of a connector type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingSpec {
    /// What it is, for `check` and the docs.
    #[serde(default)]
    pub description: String,
    /// Whether an instance must give it (unless it has a default).
    #[serde(default = "yes")]
    pub required: bool,
    /// Whether it is a credential: never printed, masked in dry runs.
    #[serde(default)]
    pub secret: bool,
    /// Value used when the instance gives none.
    pub default: Option<String>,
}

fn yes() -> bool {
    true
}

/// How a request proves who sends it. Values are templates over `settings`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "scheme", rename_all = "lowercase", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// User name template.
        username: String,
        /// Password template.
        password: String,
    },
    /// `Authorization: Bearer token`.
    Bearer {
        /// Token template.
        token: String,
    },
    /// A header of the vendor's choosing (`X-Api-Key: …`).
    Header {
        /// Header name.
        name: String,
        /// Header value template.
        value: String,
    },
    /// OAuth 2.0 client credentials (RFC 6749 §4.4): the engine trades the client id and
    /// secret for an access token, keeps it until shortly before it expires, and sends it as
    /// `Authorization: Bearer`. A 401 from a step fetches a fresh token and sends the step
    /// once more before the connector is called unhealthy.
    #[serde(rename = "oauth2_client_credentials")]
    ClientCredentials {
        /// Token endpoint: a path under the base URL (`/oauth2/token`) or an absolute URL.
        token_url: String,
        /// Client id template.
        client_id: String,
        /// Client secret template.
        client_secret: String,
    },
}

/// An HMAC-SHA256 of the exact body bytes, hex encoded, sent in `header` as
/// `{prefix}{hex}`. Skipped when the secret renders empty, so it can be optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Header name.
    pub header: String,
    /// Secret template (`{{ settings.secret }}`).
    pub secret: String,
    /// Text before the hex digest (`sha256=`).
    #[serde(default)]
    pub prefix: String,
}

/// A response header that tells how long to wait before calling again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitHeader {
    /// Header name (`X-RateLimit-Reset`).
    pub header: String,
    /// How its value reads.
    pub unit: WaitUnit,
}

/// How a wait header's value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitUnit {
    /// Seconds to wait (`30`).
    Seconds,
    /// Milliseconds to wait.
    Milliseconds,
    /// The Unix time, in seconds, to wait until.
    Epoch,
    /// The instant to wait until, as an HTTP date or an RFC 3339 timestamp.
    Date,
}

/// All known connector types by name.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    by_type: BTreeMap<String, Definition>,
}

impl Definitions {
    /// Loads the shipped definitions, then `connectors_dir` (whose files win by name).
    ///
    /// # Errors
    /// Every file that cannot be read, parsed or validated, as problems.
    pub fn load(connectors_dir: Option<&Path>) -> Result<Self, Vec<Problem>> {
        let mut sources: BTreeMap<String, (String, String)> = BTreeMap::new();
        for file in BUILTIN_DEFINITIONS.files() {
            if let (Some(kind), Some(text)) = (type_name(file.path()), file.contents_utf8()) {
                let shown = format!("connectors/{}", file.path().display());
                sources.insert(kind, (shown, text.to_owned()));
            }
        }
        let mut problems = Vec::new();
        if let Some(dir) = connectors_dir {
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
                        let Some(kind) = type_name(&path) else {
                            continue;
                        };
                        match std::fs::read_to_string(&path) {
                            Ok(text) => {
                                sources.insert(kind, (path.display().to_string(), text));
                            }
                            Err(e) => problems.push(Problem {
                                key: path.display().to_string(),
                                message: format!("cannot read: {e}"),
                            }),
                        }
                    }
                }
                Err(e) => problems.push(Problem {
                    key: "connectors_dir".into(),
                    message: format!("cannot read {}: {e}", dir.display()),
                }),
            }
        }
        let mut by_type = BTreeMap::new();
        for (kind, (shown, text)) in sources {
            match Definition::from_toml(&text, &shown) {
                Ok(definition) => {
                    by_type.insert(kind, definition);
                }
                Err(found) => problems.extend(found),
            }
        }
        if problems.is_empty() {
            Ok(Self { by_type })
        } else {
            Err(problems)
        }
    }

    /// The definition of a type.
    pub fn get(&self, kind: &str) -> Option<&Definition> {
        self.by_type.get(kind)
    }

    /// Every type with its definition, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Definition)> {
        self.by_type.iter().map(|(k, d)| (k.as_str(), d))
    }
}

/// `zendesk.toml` → `zendesk`; other files are not definitions.
fn type_name(path: &Path) -> Option<String> {
    (path.extension()? == "toml").then(|| path.file_stem()?.to_str().map(str::to_owned))?
}

impl Definition {
    /// Template files this definition renders, for checking that they exist.
    pub fn templates(&self) -> impl Iterator<Item = &str> {
        let message = self
            .message
            .iter()
            .flat_map(|m| [m.text.as_str(), m.html.as_str()]);
        self.all_steps()
            .filter_map(|s| s.body.as_deref())
            .chain(self.body.as_deref())
            .chain(message)
    }

    /// `steps`, then `update`.
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().chain(&self.update)
    }

    /// Gives every step the definition-wide `on_status` rules it does not set itself.
    fn inherit_status_rules(&mut self) {
        let rules = self.on_status.clone();
        for step in self.steps.iter_mut().chain(&mut self.update) {
            for (status, rule) in &rules {
                step.on_status.entry(status.clone()).or_insert(*rule);
            }
        }
    }
}

impl Definition {
    /// Reads and checks one definition, `shown` naming its file in problems.
    ///
    /// # Errors
    /// Every problem found in it.
    pub fn from_toml(text: &str, shown: &str) -> Result<Self, Vec<Problem>> {
        let mut definition = Figment::from(Toml::string(text))
            .extract::<Definition>()
            .map_err(|errors| {
                errors
                    .into_iter()
                    .map(|e| Problem {
                        key: format!("{shown}: {}", e.path.join(".")),
                        message: e.kind.to_string(),
                    })
                    .collect::<Vec<_>>()
            })?;
        let problems = definition.validate(shown);
        if !problems.is_empty() {
            return Err(problems);
        }
        definition.inherit_status_rules();
        Ok(definition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_definitions_load_and_validate() {
        let defs = Definitions::load(None).unwrap();
        for kind in ["file", "webhook", "zendesk"] {
            assert!(defs.get(kind).is_some(), "missing {kind}");
        }
    }

    #[test]
    fn validation_names_every_problem_with_its_key() {
        let def: Definition = Figment::from(Toml::string(
            r#"
            description = "x"
            [[steps]]
            name = "a b"
            method = "FE TCH"
            on_status = { "9999" = "retry" }
            "#,
        ))
        .extract()
        .unwrap();
        let keys: Vec<String> = def.validate("x.toml").into_iter().map(|p| p.key).collect();
        assert!(keys.contains(&"x.toml: base_url".to_owned()), "{keys:?}");
        for key in ["name", "method", "on_status"] {
            assert!(
                keys.contains(&format!("x.toml: steps[0].{key}")),
                "{key}: {keys:?}"
            );
        }
    }
}

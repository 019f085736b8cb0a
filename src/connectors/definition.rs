//! The connector definition schema: `connectors/TYPE.toml`, one file per connector type.
//!
//! A definition is data: the settings an instance must give (and which are secret), how to
//! authenticate, and the HTTP steps to run, each with templates. [`super::http`] runs it.
//! Definitions ship inside the binary; a `connectors_dir` adds new types or replaces shipped
//! ones by file name, without a rebuild.
//!
//! Validation here is pure (no I/O, no templates): it checks the shape and reports every
//! problem with the file and key, so `chatbridge check` can list them all at once.

use std::collections::BTreeMap;
use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Toml};
use include_dir::{Dir, include_dir};
use serde::Deserialize;

use crate::config::Problem;
use crate::render::{URL_SUFFIX, condition_source};

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

/// One HTTP request of a delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique within the definition; later templates read `steps.NAME.OUTPUT`.
    pub name: String,
    /// HTTP method.
    #[serde(default = "post")]
    pub method: String,
    /// URL template, appended to the base URL; values printed into it are percent-encoded.
    #[serde(default)]
    pub url: String,
    /// Body template file (`zendesk/ticket.json.tera`); none for GET-like steps.
    pub body: Option<String>,
    /// Step headers (templates), added to the definition's.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A Tera expression; the step runs only when it holds (`not steps.find.ticket_id`).
    pub when: Option<String>,
    /// The step only reads, whatever its method (a search sent as POST): it is not
    /// checkpointed and runs again on every attempt, like a GET.
    #[serde(default)]
    pub lookup: bool,
    /// Outputs come from the first item of a list in the answer that contains a text,
    /// for targets that cannot search by the marker chatbridge wrote (Pipedrive notes).
    pub search: Option<Search>,
    /// Statuses that mean success; empty means any 2xx.
    #[serde(default)]
    pub success: Vec<u16>,
    /// What particular statuses mean for this step, overriding the engine's classes
    /// (`409 = "success"` when a conflict carries the existing object).
    #[serde(default)]
    pub on_status: BTreeMap<String, StatusRule>,
    /// Values to pick out of the answer, for later steps and the ledger; see [`OutputSpec`].
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputSpec>,
}

fn post() -> String {
    "POST".to_owned()
}

/// Where a lookup finds its object in a list the target answered, for targets whose search
/// cannot be trusted to answer only that object: the first item of the list at `items` that
/// either contains a text anywhere (`containing`, usually `{{ delivery.key | marker }}`, for
/// targets that cannot search by the marker chatbridge wrote) or holds a value at a JSON
/// pointer (`field` and `equals`, for a fuzzy search by e-mail whose first hit may be another
/// person). Output pointers then read that item (`/id`); with no such item every output is
/// null. The texts are templates.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "SearchShape")]
pub struct Search {
    /// JSON pointer to the list (`/data`).
    pub items: String,
    /// The text looked for (template).
    pub text: String,
    /// Where in each item the text must be, whole; `None`: anywhere, as part of it.
    pub field: Option<String>,
}

impl Search {
    /// Whether `item` is the one looked for, `text` being the rendered [`Search::text`]. An
    /// empty text finds nothing. A field matches when it is the text, or a list holding it,
    /// ignoring letter case as the targets compare e-mail addresses.
    pub fn finds(&self, item: &serde_json::Value, text: &str) -> bool {
        use serde_json::Value;
        fn holds(value: &Value, text: &str) -> bool {
            match value {
                Value::String(s) => s.eq_ignore_ascii_case(text),
                Value::Array(items) => items.iter().any(|v| holds(v, text)),
                _ => false,
            }
        }
        if text.is_empty() {
            return false;
        }
        match &self.field {
            Some(field) => item.pointer(field).is_some_and(|v| holds(v, text)),
            None => item.to_string().contains(text),
        }
    }
}

/// A [`Search`] as written in a definition.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchShape {
    items: String,
    containing: Option<String>,
    field: Option<String>,
    equals: Option<String>,
}

impl TryFrom<SearchShape> for Search {
    type Error = String;
    fn try_from(shape: SearchShape) -> Result<Self, String> {
        let (text, field) = match (shape.containing, shape.field, shape.equals) {
            (Some(text), None, None) => (text, None),
            (None, Some(field), Some(text)) if field.starts_with('/') => (text, Some(field)),
            (None, Some(field), Some(_)) => {
                return Err(format!("`{field}` is not a JSON pointer (start it with /)"));
            }
            _ => return Err("give `containing`, or `field` with `equals`".into()),
        };
        Ok(Self {
            items: shape.items,
            text,
            field,
        })
    }
}

/// A definition's verdict on a status, overriding the engine's classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusRule {
    /// The step succeeded; outputs are read from the answer.
    Success,
    /// Try again later, with backoff.
    Retry,
    /// Permanent: the delivery is dead.
    Dead,
    /// The credentials or the endpoint are wrong: the connector pauses, deliveries wait.
    Unhealthy,
    /// The target is throttling: wait as it says, without using up the attempt budget.
    Throttled,
}

/// Where an output's value comes from. Alternatives are separated by ` | `; the first that
/// yields a value wins:
/// - `/ticket/id`: a JSON pointer into the answer;
/// - `/message ~ Existing ID: (\d+)`: the text at a pointer, matched by a regular
///   expression, keeping its first group (HubSpot names the existing contact only in prose);
/// - `header:Resource-ID`: a response header (Help Scout answers 201 with an empty body).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct OutputSpec {
    source: String,
    alternatives: Vec<OutputSource>,
}

/// One alternative of an [`OutputSpec`].
#[derive(Debug, Clone)]
pub enum OutputSource {
    /// A JSON pointer, optionally narrowed by a regular expression.
    Pointer(String, Option<regex::Regex>),
    /// A response header, by lower-case name.
    Header(String),
}

impl OutputSpec {
    /// The alternatives, in order.
    pub fn alternatives(&self) -> &[OutputSource] {
        &self.alternatives
    }
}

impl std::fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl TryFrom<String> for OutputSpec {
    type Error = String;

    fn try_from(source: String) -> Result<Self, String> {
        let alternatives = source
            .split(" | ")
            .map(|alternative| {
                let alternative = alternative.trim();
                if let Some(name) = alternative.strip_prefix("header:") {
                    return Ok(OutputSource::Header(name.trim().to_ascii_lowercase()));
                }
                let (pointer, pattern) = match alternative.split_once(" ~ ") {
                    Some((pointer, pattern)) => (pointer.trim(), Some(pattern.trim())),
                    None => (alternative, None),
                };
                if !pointer.is_empty() && !pointer.starts_with('/') {
                    return Err(format!(
                        "`{pointer}` is neither a JSON pointer (start it with /) nor header:NAME"
                    ));
                }
                let regex = pattern
                    .map(|p| regex::Regex::new(p).map_err(|e| format!("`{p}`: {e}")))
                    .transpose()?;
                Ok(OutputSource::Pointer(pointer.to_owned(), regex))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            source,
            alternatives,
        })
    }
}

impl Step {
    /// The rule for `status` given the answer, if the definition has one. A rule keyed
    /// `STATUS:TEXT` applies when the answer contains TEXT (Salesforce's 403 means throttled
    /// only with `REQUEST_LIMIT_EXCEEDED`) and wins over the plain `STATUS` rule.
    pub fn rule_for(&self, status: u16, answer: &[u8]) -> Option<StatusRule> {
        let code = status.to_string();
        let answer = String::from_utf8_lossy(answer);
        self.on_status
            .iter()
            .find_map(|(key, rule)| {
                let (s, text) = key.split_once(':')?;
                (s == code && answer.contains(text)).then_some(*rule)
            })
            .or_else(|| self.on_status.get(&code).copied())
    }

    /// Whether the step changes nothing at the target: a safe method (RFC 9110 §9.2.1) or
    /// a step marked `lookup`. Such steps are not checkpointed and run on every attempt,
    /// because their answer may have changed: "no ticket yet" must be asked again after an
    /// attempt whose create lost its answer.
    pub fn is_lookup(&self) -> bool {
        self.lookup
            || matches!(
                self.method.to_ascii_uppercase().as_str(),
                "GET" | "HEAD" | "OPTIONS"
            )
    }

    /// Whether `status` is this step's success.
    pub fn is_success(&self, status: u16) -> bool {
        if self.success.is_empty() {
            (200..300).contains(&status)
        } else {
            self.success.contains(&status)
        }
    }
}

/// Names of a definition's snippet templates, shared by the loader and the engine.
pub mod snippet {
    /// The base URL template.
    pub fn base_url(kind: &str) -> String {
        format!("{kind}/base_url")
    }
    /// An auth field (`username`, `password`, `token`, `value`).
    pub fn auth(kind: &str, field: &str) -> String {
        format!("{kind}/auth/{field}")
    }
    /// A definition-wide header.
    pub fn header(kind: &str, name: &str) -> String {
        format!("{kind}/headers/{name}")
    }
    /// The signature secret.
    pub fn signature_secret(kind: &str) -> String {
        format!("{kind}/signature/secret")
    }
    /// A step's URL (percent-encoded).
    pub fn step_url(kind: &str, step: usize) -> String {
        format!("{kind}/steps/{step}/url{}", crate::render::URL_SUFFIX)
    }
    /// A step's header.
    pub fn step_header(kind: &str, step: usize, name: &str) -> String {
        format!("{kind}/steps/{step}/headers/{name}")
    }
    /// A step's condition.
    pub fn step_when(kind: &str, step: usize) -> String {
        format!("{kind}/steps/{step}/when")
    }
    /// The text a step's search looks for.
    pub fn step_search(kind: &str, step: usize) -> String {
        format!("{kind}/steps/{step}/search")
    }
    /// An e-mail's subject.
    pub fn subject(kind: &str) -> String {
        format!("{kind}/message/subject")
    }
    /// A connector instance's `when` filter.
    pub fn instance_when(instance: &str) -> String {
        format!("instance/{instance}/when")
    }
}

impl Definition {
    /// The snippet templates of this definition, named by [`snippet`], for the renderer.
    pub fn snippets(&self, kind: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(base) = &self.base_url {
            out.push((snippet::base_url(kind), base.clone()));
        }
        match &self.auth {
            Some(Auth::Basic { username, password }) => {
                out.push((snippet::auth(kind, "username"), username.clone()));
                out.push((snippet::auth(kind, "password"), password.clone()));
            }
            Some(Auth::Bearer { token }) => out.push((snippet::auth(kind, "token"), token.clone())),
            Some(Auth::Header { value, .. }) => {
                out.push((snippet::auth(kind, "value"), value.clone()))
            }
            Some(Auth::ClientCredentials {
                token_url,
                client_id,
                client_secret,
            }) => {
                out.push((snippet::auth(kind, "token_url"), token_url.clone()));
                out.push((snippet::auth(kind, "client_id"), client_id.clone()));
                out.push((snippet::auth(kind, "client_secret"), client_secret.clone()));
            }
            None => {}
        }
        for (name, value) in &self.headers {
            out.push((snippet::header(kind, name), value.clone()));
        }
        if let Some(signature) = &self.signature {
            out.push((snippet::signature_secret(kind), signature.secret.clone()));
        }
        if let Some(message) = &self.message {
            out.push((snippet::subject(kind), message.subject.clone()));
        }
        for (i, step) in self.all_steps().enumerate() {
            out.push((snippet::step_url(kind, i), step.url.clone()));
            for (name, value) in &step.headers {
                out.push((snippet::step_header(kind, i, name), value.clone()));
            }
            if let Some(when) = &step.when {
                out.push((snippet::step_when(kind, i), condition_source(when)));
            }
            if let Some(search) = &step.search {
                out.push((snippet::step_search(kind, i), search.text.clone()));
            }
        }
        out
    }

    /// Checks the shape of the definition; every problem is reported with `file` as key prefix.
    pub fn validate(&self, file: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |key: String, message: String| problems.push(Problem { key, message });
        match self.engine {
            Engine::Http => {
                if self.steps.is_empty() {
                    problem(
                        format!("{file}: steps"),
                        "an http connector needs at least one step".into(),
                    );
                }
                if self.base_url.is_none() && !self.settings.contains_key("base_url") {
                    problem(
                        format!("{file}: base_url"),
                        "give a base_url template or a `base_url` setting".into(),
                    );
                }
            }
            Engine::Email => {
                if self.message.is_none() {
                    problem(
                        format!("{file}: message"),
                        "an email connector needs [message] templates".into(),
                    );
                }
                if !self.steps.is_empty() {
                    problem(
                        format!("{file}: steps"),
                        "an email connector has no HTTP steps".into(),
                    );
                }
            }
            Engine::File => {
                if self.body.is_none() {
                    problem(
                        format!("{file}: body"),
                        "a file connector needs a body template".into(),
                    );
                }
                if !self.steps.is_empty() {
                    problem(
                        format!("{file}: steps"),
                        "a file connector has no HTTP steps".into(),
                    );
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        let phases = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| (format!("{file}: steps[{i}]"), step))
            .chain(
                self.update
                    .iter()
                    .enumerate()
                    .map(|(i, step)| (format!("{file}: update[{i}]"), step)),
            );
        for (at, step) in phases {
            if step.name.is_empty()
                || !step
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                problem(
                    format!("{at}.name"),
                    "use letters, digits and `_` (templates read steps.NAME)".into(),
                );
            }
            if !names.insert(step.name.as_str()) {
                problem(
                    format!("{at}.name"),
                    format!("`{}` is used by an earlier step", step.name),
                );
            }
            if reqwest::Method::from_bytes(step.method.as_bytes()).is_err() {
                problem(
                    format!("{at}.method"),
                    format!("`{}` is not an HTTP method", step.method),
                );
            }
            for key in step.on_status.keys().filter(|k| !is_status(k)) {
                problem(
                    format!("{at}.on_status"),
                    format!("`{key}` is not an HTTP status"),
                );
            }
            if step
                .body
                .as_deref()
                .is_some_and(|b| b.ends_with(URL_SUFFIX))
            {
                problem(
                    format!("{at}.body"),
                    "name a template file from templates/".into(),
                );
            }
        }
        for key in self.on_status.keys().filter(|k| !is_status(k)) {
            problem(
                format!("{file}: on_status"),
                format!("`{key}` is not an HTTP status"),
            );
        }
        for name in &self.ledger {
            if !self.all_steps().any(|s| s.outputs.contains_key(name)) {
                problem(
                    format!("{file}: ledger"),
                    format!("`{name}` is not an output of any step"),
                );
            }
        }
        if !self.update.is_empty() && self.ledger.is_empty() {
            problem(
                format!("{file}: update"),
                "update steps need `ledger` names: they run once those are known".into(),
            );
        }
        for wait in &self.wait_headers {
            if reqwest::header::HeaderName::from_bytes(wait.header.as_bytes()).is_err() {
                problem(
                    format!("{file}: wait_headers"),
                    format!("`{}` is not a header name", wait.header),
                );
            }
        }
        for (name, spec) in &self.settings {
            if spec.secret && spec.default.is_some() {
                problem(
                    format!("{file}: settings.{name}"),
                    "a secret cannot have a default".into(),
                );
            }
        }
        problems
    }

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

    /// `steps`, then `update`: the order that numbers their snippets.
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

/// `409`, or `403:REQUEST_LIMIT_EXCEEDED` (a status whose answer contains a text).
fn is_status(key: &str) -> bool {
    let status = key.split_once(':').map_or(
        key,
        |(status, text)| {
            if text.is_empty() { "" } else { status }
        },
    );
    status.parse::<u16>().is_ok_and(|s| (100..600).contains(&s))
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

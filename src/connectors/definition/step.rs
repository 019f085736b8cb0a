//! A definition's steps: one HTTP request each, what its answer means, what it yields.

use std::collections::BTreeMap;

use serde::Deserialize;

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

pub(super) fn post() -> String {
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
pub(super) struct SearchShape {
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

/// `409`, or `403:REQUEST_LIMIT_EXCEEDED` (a status whose answer contains a text).
pub(super) fn is_status(key: &str) -> bool {
    let status = key.split_once(':').map_or(
        key,
        |(status, text)| {
            if text.is_empty() { "" } else { status }
        },
    );
    status.parse::<u16>().is_ok_and(|s| (100..600).contains(&s))
}

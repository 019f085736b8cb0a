//! Local stand-ins for the help desks and CRMs without a spec of their own: Freshdesk,
//! Pipedrive, Help Scout, Zammad, Request Tracker, Jira Service Management, Salesforce,
//! Intercom and Slack, one file each. Each answers what the connector calls the way the
//! vendor documents it (`../shared/reference/third-party-apis.md`): the statuses, the id's
//! place and type, the error bodies, the conflict answers and the searches by marker, with
//! state ([`Records`]), so a test can count what exists upstream. Each is a
//! [`crate::fake_vendor::Vendor`]; [`start`] picks one by the connector type it serves.

/// What every stand-in has alike: it is made from its secret, and tests read its records.
macro_rules! stand_in {
    ($name:ident) => {
        impl $name {
            pub fn new(secret: &str) -> Self {
                Self {
                    secret: secret.to_owned(),
                    records: Records::default(),
                }
            }
        }

        impl Desk for $name {
            fn records(&self) -> &Records {
                &self.records
            }

            fn records_mut(&mut self) -> &mut Records {
                &mut self.records
            }
        }
    };
}

mod freshdesk;
mod helpscout;
mod intercom;
mod jira;
mod pipedrive;
mod rt;
mod salesforce;
mod slack;
mod zammad;

use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

pub use self::freshdesk::Freshdesk;
pub use self::helpscout::HelpScout;
pub use self::intercom::Intercom;
pub use self::jira::Jira;
pub use self::pipedrive::Pipedrive;
pub use self::rt::Rt;
pub use self::salesforce::Salesforce;
pub use self::slack::Slack;
pub use self::zammad::Zammad;
use crate::fake_vendor::{FakeVendor, Vendor, json_answer};
use crate::query_language;

/// The stand-ins, by the connector type they serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Brand {
    Freshdesk,
    Pipedrive,
    HelpScout,
    Zammad,
    Rt,
    Jira,
    Salesforce,
    Intercom,
    Slack,
}

/// Something that exists upstream.
#[derive(Debug, Clone)]
pub struct Object {
    /// What it is: `ticket`, `contact`, `note`, ...
    pub kind: &'static str,
    pub id: Value,
    /// The object it belongs to (a note's ticket), if any.
    pub parent: Option<Value>,
    /// What was sent to make (or last update) it.
    pub body: Value,
    /// How many writes changed it.
    pub writes: u32,
}

/// What exists upstream at one stand-in, and the access tokens it handed out.
#[derive(Default)]
pub struct Records {
    pub objects: Vec<Object>,
    /// Access tokens handed out and still valid (Help Scout's OAuth).
    tokens: Vec<String>,
    next_id: u64,
}

/// A stand-in whose records a test can read and change.
pub trait Desk: Vendor {
    fn records(&self) -> &Records;
    fn records_mut(&mut self) -> &mut Records;
}

/// Any of the stand-ins, as [`start`] makes them.
pub type AnyDesk = Box<dyn Desk>;

impl Vendor for AnyDesk {
    fn authorized(&self, request: &Request) -> bool {
        (**self).authorized(request)
    }

    fn unauthorized(&self) -> ResponseTemplate {
        (**self).unauthorized()
    }

    fn handle(&mut self, request: &Request) -> ResponseTemplate {
        (**self).handle(request)
    }
}

impl dyn Desk {
    pub fn count(&self, kind: &str) -> usize {
        self.records().count(kind)
    }

    pub fn all(&self, kind: &str) -> Vec<Object> {
        self.records().all(kind)
    }

    /// Puts an object upstream as if made earlier, by another tool or person.
    pub fn insert(&mut self, kind: &'static str, id: Value, body: Value) {
        self.records_mut().insert(kind, id, body);
    }

    /// Revokes every access token handed out, as an expiry would.
    pub fn revoke_tokens(&mut self) {
        self.records_mut().tokens.clear();
    }
}

/// The stand-in for `brand`, answering on a port of its own.
pub async fn start(brand: Brand, secret: &str) -> FakeVendor<AnyDesk> {
    let desk: AnyDesk = match brand {
        Brand::Freshdesk => Box::new(Freshdesk::new(secret)),
        Brand::Pipedrive => Box::new(Pipedrive::new(secret)),
        Brand::HelpScout => Box::new(HelpScout::new(secret)),
        Brand::Zammad => Box::new(Zammad::new(secret)),
        Brand::Rt => Box::new(Rt::new(secret)),
        Brand::Jira => Box::new(Jira::new(secret)),
        Brand::Salesforce => Box::new(Salesforce::new(secret)),
        Brand::Intercom => Box::new(Intercom::new(secret)),
        Brand::Slack => Box::new(Slack::new(secret)),
    };
    FakeVendor::start(desk).await
}

/// A request's method and path segments, what each stand-in matches on.
type Route<'a> = (&'a str, &'a [&'a str]);

fn route<R>(request: &Request, answer: impl FnOnce(Route<'_>) -> R) -> R {
    let path = request.url.path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    answer((request.method.as_str(), segments.as_slice()))
}

/// The Help Scout app id the tests configure.
pub const HELPSCOUT_APP: &str = "helpscout-app-1";
/// The Slack webhook path whose last segment is the secret.
pub const SLACK_PATH: &str = "/services/T024BE7LD/B0A1B2C3D";
pub(super) fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
pub(super) fn header<'r>(request: &'r Request, name: &str) -> &'r str {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}
pub(super) fn query(request: &Request, name: &str) -> String {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
pub(super) fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap_or(Value::Null)
}

impl Records {
    pub fn count(&self, kind: &str) -> usize {
        self.objects.iter().filter(|o| o.kind == kind).count()
    }

    pub fn all(&self, kind: &str) -> Vec<Object> {
        self.objects
            .iter()
            .filter(|o| o.kind == kind)
            .cloned()
            .collect()
    }

    pub(super) fn add(
        &mut self,
        kind: &'static str,
        id: Value,
        parent: Option<Value>,
        body: Value,
    ) -> Value {
        self.objects.push(Object {
            kind,
            id: id.clone(),
            parent,
            body,
            writes: 1,
        });
        id
    }

    pub(super) fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn find(&self, kind: &str, test: impl Fn(&Object) -> bool) -> Option<&Object> {
        self.objects.iter().find(|o| o.kind == kind && test(o))
    }

    pub(super) fn exists(&self, kind: &str, id: &str) -> bool {
        self.find(kind, |o| id_text(&o.id) == id).is_some()
    }

    pub(super) fn tagged(&self, kind: &str, field: &str, tag: &str) -> Vec<Object> {
        self.objects
            .iter()
            .filter(|o| o.kind == kind && !tag.is_empty())
            .filter(|o| tags(&o.body[field]).iter().any(|t| t == tag))
            .cloned()
            .collect()
    }

    /// Puts an object upstream as if made earlier, by another tool or person.
    pub fn insert(&mut self, kind: &'static str, id: Value, body: Value) {
        self.add(kind, id, None, body);
    }

    /// Jira's customers whose address or display name contains `text`, ignoring case.
    pub(super) fn customers_like(&self, text: &str) -> Vec<Object> {
        let text = text.to_lowercase();
        self.all("customer")
            .into_iter()
            .filter(|c| {
                ["email", "displayName"].iter().any(|f| {
                    c.body[*f]
                        .as_str()
                        .is_some_and(|v| v.to_lowercase().contains(&text))
                })
            })
            .collect()
    }

    /// Makes Jira customer `id` one of `desk`'s; false when there is no such customer.
    pub(super) fn join_desk(&mut self, id: &str, desk: &str) -> bool {
        let Some(customer) = self
            .objects
            .iter_mut()
            .find(|o| o.kind == "customer" && id_text(&o.id) == id)
        else {
            return false;
        };
        let desks = customer.body["desks"].as_array_mut();
        match desks {
            Some(desks) if !desks.contains(&json!(desk)) => desks.push(json!(desk)),
            Some(_) => {}
            None => customer.body["desks"] = json!([desk]),
        }
        true
    }

    /// The objects of `kind` a query in the vendor's search language finds, `condition`
    /// deciding each of its conditions for an object; what does not parse, otherwise.
    pub(super) fn search(
        &self,
        kind: &str,
        text: &str,
        condition: impl Fn(&Object, &str, &str, &str) -> bool,
    ) -> Result<Vec<Object>, String> {
        let query = query_language::parse(text)?;
        Ok(self
            .objects
            .iter()
            .filter(|o| o.kind == kind && query.holds(&|f, op, v| condition(o, f, op, v)))
            .cloned()
            .collect())
    }
}

/// A Pipedrive lead as the API shows it.
pub(super) fn lead(stored: &Object) -> Value {
    json!({
        "id": stored.id,
        "title": stored.body["title"],
        "person_id": stored.body["person_id"],
        "organization_id": null,
        "origin_id": stored.body["origin_id"],
        "source_name": "API",
        "is_archived": false,
        "was_seen": false,
        "label_ids": [],
        "add_time": "2026-12-06T09:00:00.000Z",
        "update_time": "2026-12-06T09:00:00.000Z",
    })
}
/// A list of tags, sent as a JSON list or as one comma-separated text.
pub(super) fn tags(value: &Value) -> Vec<String> {
    match value {
        Value::Array(tags) => tags
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Value::String(tags) => tags.split(',').map(|t| t.trim().to_owned()).collect(),
        _ => Vec::new(),
    }
}
/// A condition on a list of tags: `=` and `:` hold when one tag matches, `!=` when none does.
pub(super) fn tag_condition(list: &Value, operator: &str, value: &str) -> bool {
    let tags = tags(list);
    match operator {
        "!=" => tags.iter().all(|t| t != value),
        _ => tags
            .iter()
            .any(|t| query_language::compare(t, operator, value)),
    }
}
/// The addresses in a list of mailboxes (`Name <a@b>, c@d`), split where Request Tracker
/// splits them: at commas outside quotes and angle brackets.
pub(super) fn addresses(list: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut current, mut quoted, mut angled) = (String::new(), false, false);
    for c in list.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angled = true,
            '>' if !quoted => angled = false,
            ',' if !quoted && !angled => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .iter()
        .filter_map(|part| {
            let part = part.trim();
            let address = match (part.rfind('<'), part.rfind('>')) {
                (Some(open), Some(close)) if open < close => &part[open + 1..close],
                _ => part.rsplit(' ').next().unwrap_or_default(),
            };
            address.contains('@').then(|| address.to_owned())
        })
        .collect()
}
/// An id as text, whether the vendor made it a number or a string.
pub fn id_text(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
pub(super) fn not_found() -> ResponseTemplate {
    json_answer(404, json!({"message": "Not Found"}))
}

//! Local stand-ins for the help desks and CRMs without a spec of their own: Freshdesk,
//! Pipedrive, Help Scout, Zammad, Request Tracker, Jira Service Management, Salesforce,
//! Intercom and Slack. Each answers what the connector calls the way the vendor documents
//! it (`../shared/reference/third-party-apis.md`): the statuses, the id's place and type,
//! the error bodies, the conflict answers and the searches by marker, with state, so a
//! test can count what exists upstream.

use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use crate::fake_vendor::{FakeVendor, Vendor, authorization, json_answer};
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

pub struct Desk {
    brand: Brand,
    secret: String,
    pub objects: Vec<Object>,
    /// Help Scout access tokens handed out and still valid.
    tokens: Vec<String>,
    next_id: u64,
}

/// The Help Scout app id the tests configure.
pub const HELPSCOUT_APP: &str = "helpscout-app-1";
/// The Slack webhook path whose last segment is the secret.
pub const SLACK_PATH: &str = "/services/T024BE7LD/B0A1B2C3D";

pub async fn start(brand: Brand, secret: &str) -> FakeVendor<Desk> {
    FakeVendor::start(Desk {
        brand,
        secret: secret.to_owned(),
        objects: Vec::new(),
        tokens: Vec::new(),
        next_id: 100,
    })
    .await
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn header<'r>(request: &'r Request, name: &str) -> &'r str {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn query(request: &Request, name: &str) -> String {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap_or(Value::Null)
}

impl Desk {
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

    /// Revokes every Help Scout token handed out, as an expiry would.
    pub fn revoke_tokens(&mut self) {
        self.tokens.clear();
    }

    fn add(&mut self, kind: &'static str, id: Value, parent: Option<Value>, body: Value) -> Value {
        self.objects.push(Object {
            kind,
            id: id.clone(),
            parent,
            body,
            writes: 1,
        });
        id
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn find(&self, kind: &str, test: impl Fn(&Object) -> bool) -> Option<&Object> {
        self.objects.iter().find(|o| o.kind == kind && test(o))
    }

    fn exists(&self, kind: &str, id: &str) -> bool {
        self.find(kind, |o| id_text(&o.id) == id).is_some()
    }

    fn tagged(&self, kind: &str, field: &str, tag: &str) -> Vec<Object> {
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
    fn customers_like(&self, text: &str) -> Vec<Object> {
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
    fn join_desk(&mut self, id: &str, desk: &str) -> bool {
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
    fn search(
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
fn lead(stored: &Object) -> Value {
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
fn tags(value: &Value) -> Vec<String> {
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
fn tag_condition(list: &Value, operator: &str, value: &str) -> bool {
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
fn addresses(list: &str) -> Vec<String> {
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

fn not_found() -> ResponseTemplate {
    json_answer(404, json!({"message": "Not Found"}))
}

impl Vendor for Desk {
    fn authorized(&self, request: &Request) -> bool {
        let auth = authorization(request);
        match self.brand {
            Brand::Freshdesk => auth == basic(&self.secret, "X"),
            Brand::Pipedrive => header(request, "x-api-token") == self.secret,
            Brand::HelpScout => {
                request.url.path() == "/v2/oauth2/token"
                    || auth
                        .strip_prefix("Bearer ")
                        .is_some_and(|t| self.tokens.iter().any(|k| k == t))
            }
            Brand::Zammad => auth == format!("Token token={}", self.secret),
            Brand::Rt => auth == format!("token {}", self.secret),
            Brand::Jira => auth == basic("agent@acme.example", &self.secret),
            Brand::Salesforce | Brand::Intercom => auth == format!("Bearer {}", self.secret),
            // The URL is the credential: a wrong one is a 404, answered by `handle`.
            Brand::Slack => true,
        }
    }

    fn unauthorized(&self) -> ResponseTemplate {
        match self.brand {
            Brand::Freshdesk => json_answer(
                401,
                json!({"code": "invalid_credentials", "message": "You have to be logged in to perform this action."}),
            ),
            Brand::Pipedrive => json_answer(
                401,
                json!({"success": false, "error": "unauthorized access", "errorCode": 401, "error_info": "Please check developers.pipedrive.com"}),
            ),
            Brand::HelpScout => json_answer(
                401,
                json!({"error": "invalid_token", "error_description": "The access token is invalid or has expired"}),
            ),
            Brand::Zammad => json_answer(
                401,
                json!({"error": "Invalid token!", "error_human": "Invalid token!"}),
            ),
            Brand::Rt => json_answer(401, json!({"message": "Unauthorized"})),
            Brand::Jira => json_answer(
                401,
                json!({"errorMessages": ["You are not authenticated. Authentication required to perform this operation."]}),
            ),
            Brand::Salesforce => json_answer(
                401,
                json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
            ),
            Brand::Intercom => json_answer(
                401,
                json!({"type": "error.list", "request_id": "req-1", "errors": [{"code": "unauthorized", "message": "Access Token Invalid"}]}),
            ),
            Brand::Slack => ResponseTemplate::new(403).set_body_string("invalid_token"),
        }
    }

    fn handle(&mut self, request: &Request) -> ResponseTemplate {
        let path = request.url.path().to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = request.method.as_str().to_owned();
        let route = (method.as_str(), segments.as_slice());
        match self.brand {
            Brand::Freshdesk => self.freshdesk(request, route),
            Brand::Pipedrive => self.pipedrive(request, route),
            Brand::HelpScout => self.helpscout(request, route),
            Brand::Zammad => self.zammad(request, route),
            Brand::Rt => self.rt(request, route),
            Brand::Jira => self.jira(request, route),
            Brand::Salesforce => self.salesforce(request, route),
            Brand::Intercom => self.intercom(request, route),
            Brand::Slack => self.slack(request),
        }
    }
}

type Route<'a> = (&'a str, &'a [&'a str]);

impl Desk {
    /// Freshdesk API v2: contacts unique by e-mail (409 names the existing one), tickets
    /// searchable by tag, private notes.
    fn freshdesk(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
        let invalid = |field: &str, code: &str| {
            json_answer(
                400,
                json!({"description": "Validation failed", "errors": [{"field": field, "message": "It should not be blank", "code": code}]}),
            )
        };
        match route {
            ("GET", ["api", "v2", "contacts"]) => {
                let email = query(request, "email");
                let found: Vec<Value> = self
                    .all("contact")
                    .into_iter()
                    .filter(|c| c.body["email"] == email.as_str())
                    .map(|c| json!({"id": c.id, "email": email, "name": c.body["name"]}))
                    .collect();
                json_answer(200, json!(found))
            }
            ("POST", ["api", "v2", "contacts"]) => {
                let b = body(request);
                if !b["name"].is_string() {
                    return invalid("name", "missing_field");
                }
                if let Some(existing) = self.find("contact", |c| c.body["email"] == b["email"]) {
                    return json_answer(
                        409,
                        json!({"description": "Validation failed", "errors": [{"field": "email", "additional_info": {"user_id": existing.id}, "message": "It should be a unique value", "code": "duplicate_value"}]}),
                    );
                }
                let id = self.next();
                self.add("contact", json!(id), None, b.clone());
                json_answer(
                    201,
                    json!({"id": id, "name": b["name"], "email": b["email"]}),
                )
            }
            ("GET", ["api", "v2", "search", "tickets"]) => {
                // The filter comes wrapped in double quotes: "tag:'x' OR priority:1".
                let q = query(request, "query");
                let Some(filter) = q.strip_prefix('"').and_then(|q| q.strip_suffix('"')) else {
                    return invalid("query", "invalid_value");
                };
                let found = self.search("ticket", filter, |t, field, op, value| match field {
                    "tag" => tag_condition(&t.body["tags"], op, value),
                    "status" | "priority" => {
                        query_language::compare(&t.body[field].to_string(), op, value)
                    }
                    _ => false,
                });
                let Ok(found) = found else {
                    return invalid("query", "invalid_value");
                };
                let results: Vec<Value> = found
                    .into_iter()
                    .map(|t| json!({"id": t.id, "subject": t.body["subject"]}))
                    .collect();
                json_answer(200, json!({"results": results, "total": results.len()}))
            }
            ("POST", ["api", "v2", "tickets"]) => {
                let b = body(request);
                if !b["subject"].is_string() || !b["description"].is_string() {
                    return invalid("subject", "missing_field");
                }
                if !b["requester_id"].is_number() && !b["email"].is_string() {
                    return invalid("requester_id", "missing_field");
                }
                if b["requester_id"].is_number()
                    && !self.exists("contact", &b["requester_id"].to_string())
                {
                    return invalid("requester_id", "invalid_value");
                }
                let id = self.next();
                self.add("ticket", json!(id), None, b.clone());
                let mut answer = b;
                answer["id"] = json!(id);
                json_answer(201, answer)
            }
            ("POST", ["api", "v2", "tickets", ticket, "notes"]) => {
                if !self.exists("ticket", ticket) {
                    return json_answer(404, json!({"code": "access_denied"}));
                }
                let b = body(request);
                let id = self.next();
                self.add("note", json!(id), Some(json!(ticket)), b.clone());
                json_answer(
                    201,
                    json!({"id": id, "body": b["body"], "private": b["private"]}),
                )
            }
            _ => not_found(),
        }
    }

    /// Pipedrive: persons v2 searched by e-mail (whole and ignoring case with `exact_match`,
    /// as part otherwise), notes v1 listed by person.
    fn pipedrive(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
        match route {
            ("GET", ["api", "v2", "persons", "search"]) => {
                let term = query(request, "term").to_lowercase();
                let exact = query(request, "exact_match") == "true";
                let items: Vec<Value> = self
                    .all("person")
                    .into_iter()
                    .filter(|p| {
                        let email = p.body["emails"][0]["value"]
                            .as_str()
                            .unwrap_or_default()
                            .to_lowercase();
                        if exact { email == term } else { email.contains(&term) }
                    })
                    .map(|p| json!({"result_score": 1, "item": {"id": p.id, "name": p.body["name"], "emails": [p.body["emails"][0]["value"]]}}))
                    .collect();
                json_answer(
                    200,
                    json!({"success": true, "data": {"items": items}, "additional_data": {}}),
                )
            }
            ("POST", ["api", "v2", "persons"]) => {
                let b = body(request);
                if !b["name"].is_string() {
                    return json_answer(
                        400,
                        json!({"success": false, "error": "Name must be given.", "code": "ERR_SCHEMA_VALIDATION_FAILED"}),
                    );
                }
                let id = self.next();
                self.add("person", json!(id), None, b.clone());
                json_answer(
                    200,
                    json!({"success": true, "data": {"id": id, "name": b["name"]}}),
                )
            }
            ("GET", ["api", "v1", "leads"]) => {
                let person = query(request, "person_id");
                let leads: Vec<Value> = self
                    .all("lead")
                    .into_iter()
                    .filter(|l| id_text(&l.body["person_id"]) == person)
                    .map(|l| lead(&l))
                    .collect();
                json_answer(200, json!({"success": true, "data": leads}))
            }
            ("POST", ["api", "v1", "leads"]) => {
                let b = body(request);
                let person = b["person_id"].to_string();
                if !b["title"].is_string() || !self.exists("person", &person) {
                    return json_answer(
                        400,
                        json!({"success": false, "error": "A lead needs a title and an existing person or organization", "error_info": "Please check developers.pipedrive.com for more information about Pipedrive API.", "data": null, "additional_data": null}),
                    );
                }
                let id = format!("6d2b0a1e-0000-4000-8000-{:012}", self.next());
                self.add("lead", json!(id), Some(b["person_id"].clone()), b);
                let made = self.all("lead").pop().unwrap();
                json_answer(201, json!({"success": true, "data": lead(&made)}))
            }
            ("GET", ["api", "v1", "notes"]) => {
                let person = query(request, "person_id");
                let notes: Vec<Value> = self
                    .all("note")
                    .into_iter()
                    .filter(|n| n.parent.as_ref().map(id_text) == Some(person.clone()))
                    .map(|n| json!({"id": n.id, "content": n.body["content"], "person_id": n.body["person_id"]}))
                    .collect();
                json_answer(200, json!({"success": true, "data": notes}))
            }
            ("POST", ["api", "v1", "notes"]) => {
                let b = body(request);
                let person = b["person_id"].to_string();
                if !b["content"].is_string() || !self.exists("person", &person) {
                    return json_answer(
                        400,
                        json!({"success": false, "error": "Note must have content and an existing person", "code": "ERR_VALIDATION"}),
                    );
                }
                let id = self.next();
                self.add("note", json!(id), Some(b["person_id"].clone()), b.clone());
                // 200, as Pipedrive documents it for a created note (not 201).
                json_answer(
                    200,
                    json!({"success": true, "data": {"id": id, "content": b["content"], "person_id": b["person_id"]}}),
                )
            }
            _ => not_found(),
        }
    }

    /// Help Scout Mailbox API v2: client-credentials tokens, conversations listed by tag,
    /// 201 with the id in `Resource-ID` and an empty body.
    fn helpscout(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
        let created = |id: u64, path: String| {
            ResponseTemplate::new(201)
                .insert_header("Resource-ID", id.to_string().as_str())
                .insert_header("Location", path.as_str())
        };
        match route {
            ("POST", ["v2", "oauth2", "token"]) => {
                let text = String::from_utf8_lossy(&request.body);
                let form: Vec<(String, String)> =
                    reqwest::Url::parse(&format!("http://form.invalid/?{text}"))
                        .map(|u| u.query_pairs().into_owned().collect())
                        .unwrap_or_default();
                let field = |name: &str| {
                    form.iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.as_str())
                        .unwrap_or_default()
                };
                if field("grant_type") != "client_credentials"
                    || field("client_id") != HELPSCOUT_APP
                    || field("client_secret") != self.secret
                {
                    return json_answer(
                        401,
                        json!({"error": "invalid_client", "error_description": "Bad client credentials"}),
                    );
                }
                let token = format!("hs-token-{}", self.next());
                self.tokens.push(token.clone());
                json_answer(
                    200,
                    json!({"token_type": "bearer", "access_token": token, "expires_in": 172800}),
                )
            }
            ("GET", ["v2", "conversations"]) => {
                let tag = query(request, "tag");
                let found: Vec<Value> = self
                    .tagged("conversation", "tags", &tag)
                    .into_iter()
                    .map(|c| json!({"id": c.id, "subject": c.body["subject"]}))
                    .collect();
                json_answer(
                    200,
                    json!({"_embedded": {"conversations": found}, "page": {"size": 25, "totalElements": found.len(), "totalPages": 1, "number": 1}}),
                )
            }
            ("POST", ["v2", "conversations"]) => {
                let b = body(request);
                let complete = [
                    "subject",
                    "customer",
                    "mailboxId",
                    "type",
                    "status",
                    "threads",
                ]
                .iter()
                .all(|k| !b[k].is_null());
                if !complete || !b["threads"][0]["text"].is_string() {
                    return json_answer(
                        400,
                        json!({"logRef": "log-1", "message": "Bad request", "_embedded": {"errors": [{"path": "subject", "message": "may not be empty"}]}}),
                    );
                }
                let id = self.next();
                self.add("conversation", json!(id), None, b);
                created(id, format!("/v2/conversations/{id}"))
            }
            ("POST", ["v2", "conversations", conversation, "notes"]) => {
                if !self.exists("conversation", conversation) {
                    return not_found();
                }
                let id = self.next();
                self.add("note", json!(id), Some(json!(conversation)), body(request));
                created(id, format!("/v2/conversations/{conversation}/threads/{id}"))
            }
            _ => not_found(),
        }
    }

    /// Zammad: tickets with a first article, searchable by tag, articles added later.
    fn zammad(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
        let unprocessable =
            |what: &str| json_answer(422, json!({"error": what, "error_human": what}));
        match route {
            ("GET", ["api", "v1", "tickets", "search"]) => {
                let q = query(request, "query");
                let found = self.search("ticket", &q, |t, field, op, value| {
                    field == "tags" && tag_condition(&t.body["tags"], op, value)
                });
                let Ok(found) = found else {
                    return unprocessable("query_string: failed to parse the query");
                };
                let found: Vec<Value> = found
                    .into_iter()
                    .map(|t| json!({"id": t.id, "title": t.body["title"]}))
                    .collect();
                json_answer(200, json!(found))
            }
            ("POST", ["api", "v1", "tickets"]) => {
                let b = body(request);
                if !b["title"].is_string() || !b["group"].is_string() {
                    return unprocessable("Missing required attribute title or group");
                }
                if !b["article"]["body"].is_string() {
                    return unprocessable("Need at least article: { body: '...' }");
                }
                let id = self.next();
                self.add("ticket", json!(id), None, b.clone());
                json_answer(
                    201,
                    json!({"id": id, "number": format!("31{id}"), "title": b["title"], "article_ids": [id * 10]}),
                )
            }
            ("POST", ["api", "v1", "ticket_articles"]) => {
                let b = body(request);
                if !self.exists("ticket", &b["ticket_id"].to_string()) {
                    return unprocessable("No such ticket");
                }
                let id = self.next();
                self.add(
                    "article",
                    json!(id),
                    Some(b["ticket_id"].clone()),
                    b.clone(),
                );
                json_answer(201, json!({"id": id, "ticket_id": b["ticket_id"]}))
            }
            _ => not_found(),
        }
    }

    /// Request Tracker REST2: tickets with custom fields, TicketSQL search on one, comments.
    fn rt(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
        match route {
            ("GET", ["REST", "2.0", "tickets"]) => {
                // TicketSQL: 'CF.{ChatbridgeKey}' = 'value', id > 10, Subject = 'x', ...
                let q = query(request, "query");
                let found = self.search("ticket", &q, |t, field, op, value| {
                    let actual = match field.strip_prefix("CF.{").and_then(|f| f.strip_suffix('}'))
                    {
                        Some(custom) => t.body["CustomFields"][custom].as_str().map(str::to_owned),
                        None if field.eq_ignore_ascii_case("id") => Some(id_text(&t.id)),
                        None => t.body[field].as_str().map(str::to_owned),
                    };
                    actual.is_some_and(|a| query_language::compare(&a, op, value))
                });
                let Ok(found) = found else {
                    return json_answer(400, json!({"message": "Invalid query"}));
                };
                let items: Vec<Value> = found
                    .into_iter()
                    .map(|t| json!({"type": "ticket", "id": t.id, "_url": format!("/REST/2.0/ticket/{}", id_text(&t.id))}))
                    .collect();
                json_answer(
                    200,
                    json!({"count": items.len(), "page": 1, "pages": 1, "per_page": 20, "total": items.len(), "items": items}),
                )
            }
            ("POST", ["REST", "2.0", "ticket"]) => {
                let b = body(request);
                if !b["Queue"].is_string() {
                    return json_answer(
                        400,
                        json!({"message": "Could not create ticket. Queue not set"}),
                    );
                }
                let id = self.next().to_string();
                let mut b = b;
                // RT keeps the requestors as the addresses it parsed out of the list.
                let requestors = addresses(b["Requestor"].as_str().unwrap_or_default());
                b["Requestors"] = json!(requestors);
                self.add("ticket", json!(id), None, b);
                json_answer(
                    201,
                    json!({"type": "ticket", "id": id, "_url": format!("/REST/2.0/ticket/{id}")}),
                )
            }
            ("POST", ["REST", "2.0", "ticket", ticket, "comment"]) => {
                if !self.exists("ticket", ticket) {
                    return not_found();
                }
                let id = self.next();
                self.add("comment", json!(id), Some(json!(ticket)), body(request));
                json_answer(201, json!(["Comments added"]))
            }
            _ => not_found(),
        }
    }

    /// Jira Service Management: JQL search by label, customers, requests, comments.
    fn jira(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
        match route {
            ("POST", ["rest", "api", "3", "search", "jql"]) => {
                let b = body(request);
                let jql = b["jql"].as_str().unwrap_or_default();
                let found = self.search("request", jql, |r, field, op, value| {
                    field == "labels"
                        && tag_condition(&r.body["requestFieldValues"]["labels"], op, value)
                });
                let found = match found {
                    Ok(found) => found,
                    Err(e) => {
                        return json_answer(400, json!({"errorMessages": [e], "errors": {}}));
                    }
                };
                let issues: Vec<Value> = found
                    .into_iter()
                    .map(|r| json!({"id": r.id, "key": r.id}))
                    .collect();
                json_answer(200, json!({"issues": issues, "isLast": true}))
            }
            ("GET", ["rest", "servicedeskapi", "servicedesk", _, "customer"]) => {
                if header(request, "x-experimentalapi") != "opt-in" {
                    return json_answer(
                        400,
                        json!({"errorMessage": "This API is experimental. Experimental APIs are not guaranteed to be stable."}),
                    );
                }
                // This desk's customers whose name or address contains `query`.
                let ("GET", [_, _, _, desk, _]) = route else {
                    unreachable!()
                };
                let values: Vec<Value> = self
                    .customers_like(&query(request, "query"))
                    .into_iter()
                    .filter(|c| c.body["desks"].as_array().is_some_and(|d| d.contains(&json!(desk))))
                    .map(|c| json!({"accountId": c.id, "emailAddress": c.body["email"], "displayName": c.body["displayName"]}))
                    .collect();
                json_answer(200, json!({"size": values.len(), "values": values}))
            }
            ("POST", ["rest", "servicedeskapi", "customer"]) => {
                // A customer of the site, of no desk yet; an address the site knows is a 409
                // only when asked for, a 400 like any bad request otherwise.
                let mut b = body(request);
                let email = b["email"].as_str().unwrap_or_default().to_lowercase();
                let known = self.all("customer").iter().any(|c| {
                    c.body["email"]
                        .as_str()
                        .is_some_and(|e| e.to_lowercase() == email)
                });
                if known {
                    let status = if query(request, "strictConflictStatusCode") == "true" {
                        409
                    } else {
                        400
                    };
                    return json_answer(
                        status,
                        json!({"errorMessage": "An account already exists for this email", "i18nErrorMessage": {"i18nKey": "sd.customer.create.error.email.exists", "parameters": []}}),
                    );
                }
                b["desks"] = json!([]);
                let id = format!("qm:{}", self.next());
                let name = b["displayName"].clone();
                self.add("customer", json!(id), None, b);
                json_answer(
                    201,
                    json!({"accountId": id, "emailAddress": email, "displayName": name, "active": true, "timeZone": "UTC", "_links": {"jiraRest": format!("https://acme.atlassian.net/rest/api/2/user?accountId={id}"), "avatarUrls": {}, "self": format!("https://acme.atlassian.net/rest/api/2/user?accountId={id}")}}),
                )
            }
            ("GET", ["rest", "api", "3", "user", "search"]) => {
                let users: Vec<Value> = self
                    .customers_like(&query(request, "query"))
                    .into_iter()
                    .map(|c| json!({"accountId": c.id, "accountType": "customer", "emailAddress": c.body["email"], "displayName": c.body["displayName"], "active": true}))
                    .collect();
                json_answer(200, json!(users))
            }
            ("POST", ["rest", "servicedeskapi", "servicedesk", desk, "customer"]) => {
                let b = body(request);
                let ids: Vec<String> = b["accountIds"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                for id in &ids {
                    if !self.join_desk(id, desk) {
                        return json_answer(
                            400,
                            json!({"errorMessage": format!("no such account: {id}")}),
                        );
                    }
                }
                ResponseTemplate::new(204)
            }
            ("POST", ["rest", "servicedeskapi", "request"]) => {
                let b = body(request);
                let ok = b["serviceDeskId"].is_string()
                    && b["requestTypeId"].is_string()
                    && b["requestFieldValues"]["summary"].is_string();
                if !ok {
                    return json_answer(
                        400,
                        json!({"errorMessage": "Summary: You must specify a summary of the issue.", "i18nErrorMessage": {"i18nKey": "sd.request.create.error", "parameters": []}}),
                    );
                }
                // Raised for a customer: they become one of the desk's, as in an open desk.
                if let (Some(account), Some(desk)) =
                    (b["raiseOnBehalfOf"].as_str(), b["serviceDeskId"].as_str())
                    && !self.join_desk(account, desk)
                {
                    return json_answer(
                        400,
                        json!({"errorMessage": format!("The user '{account}' does not exist."), "i18nErrorMessage": {"i18nKey": "sd.request.create.error", "parameters": []}}),
                    );
                }
                let key = format!("HELP-{}", self.next());
                self.add("request", json!(key), None, b);
                json_answer(
                    201,
                    json!({"issueId": "10010", "issueKey": key, "requestTypeId": "25", "serviceDeskId": "10"}),
                )
            }
            ("POST", ["rest", "servicedeskapi", "request", key, "comment"]) => {
                if !self.exists("request", key) {
                    return not_found();
                }
                let id = self.next().to_string();
                self.add("comment", json!(id), Some(json!(key)), body(request));
                json_answer(201, json!({"id": id, "public": false}))
            }
            _ => not_found(),
        }
    }

    /// Salesforce sObject upsert on an External ID field: 201 created, 200 updated.
    fn salesforce(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
        match route {
            ("PATCH", ["services", "data", _, "sobjects", object, field, key]) => {
                let b = body(request);
                if !b.is_object() || b.get(*field).is_some() {
                    return json_answer(
                        400,
                        json!([{"message": "The external id field must not be in the body", "errorCode": "INVALID_FIELD"}]),
                    );
                }
                let key = (*key).to_owned();
                if let Some(existing) = self
                    .objects
                    .iter_mut()
                    .find(|o| o.kind == "record" && o.body["__key"] == key.as_str())
                {
                    let id = existing.id.clone();
                    let mut stored = b;
                    stored["__key"] = json!(key);
                    stored["__object"] = json!(object);
                    existing.body = stored;
                    existing.writes += 1;
                    return json_answer(
                        200,
                        json!({"id": id, "success": true, "errors": [], "created": false}),
                    );
                }
                let id = format!("5003000000D8c{:05}", self.next());
                let mut stored = b;
                stored["__key"] = json!(key);
                stored["__object"] = json!(object);
                self.add("record", json!(id), None, stored);
                json_answer(
                    201,
                    json!({"id": id, "success": true, "errors": [], "created": true}),
                )
            }
            _ => json_answer(
                404,
                json!([{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]),
            ),
        }
    }

    /// Intercom 2.14: contacts (409 names the existing id in prose), conversations searched
    /// by a word of their first message, admin notes as replies.
    fn intercom(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
        if header(request, "intercom-version") != "2.14" {
            return json_answer(
                400,
                json!({"type": "error.list", "errors": [{"code": "intercom_version_invalid", "message": "Requested version is invalid"}]}),
            );
        }
        let b = body(request);
        match route {
            ("POST", ["contacts", "search"]) => {
                let email = b["query"]["value"].clone();
                let data: Vec<Value> = self
                    .all("contact")
                    .into_iter()
                    .filter(|c| c.body["email"] == email)
                    .map(|c| json!({"type": "contact", "id": c.id, "email": email}))
                    .collect();
                json_answer(
                    200,
                    json!({"type": "list", "data": data, "total_count": data.len()}),
                )
            }
            ("POST", ["contacts"]) => {
                if let Some(existing) = self.find("contact", |c| c.body["email"] == b["email"]) {
                    return json_answer(
                        409,
                        json!({"type": "error.list", "request_id": "req-409", "errors": [{"code": "conflict", "message": format!("A contact matching those details already exists with id={}", id_text(&existing.id))}]}),
                    );
                }
                let id = format!("{:024x}", self.next());
                self.add("contact", json!(id), None, b.clone());
                json_answer(
                    200,
                    json!({"type": "contact", "id": id, "role": b["role"], "email": b["email"]}),
                )
            }
            ("POST", ["conversations", "search"]) => {
                let word = b["query"]["value"].as_str().unwrap_or_default().to_owned();
                let found: Vec<Value> = self
                    .all("conversation")
                    .into_iter()
                    .filter(|c| {
                        !word.is_empty()
                            && c.body["body"]
                                .as_str()
                                .is_some_and(|t| t.split_whitespace().any(|w| w == word))
                    })
                    .map(|c| json!({"type": "conversation", "id": c.id}))
                    .collect();
                json_answer(
                    200,
                    json!({"type": "conversation.list", "conversations": found, "total_count": found.len()}),
                )
            }
            ("POST", ["conversations"]) => {
                let from = id_text(&b["from"]["id"]);
                if !self.exists("contact", &from) || !b["body"].is_string() {
                    return json_answer(
                        404,
                        json!({"type": "error.list", "errors": [{"code": "not_found", "message": "User Not Found"}]}),
                    );
                }
                let id = self.next().to_string();
                self.add("conversation", json!(id), Some(json!(from)), b.clone());
                json_answer(
                    200,
                    json!({"type": "user_message", "id": format!("40{id}"), "conversation_id": id,
                           "created_at": 1_427_470_439, "body": b["body"], "message_type": "inapp"}),
                )
            }
            ("POST", ["conversations", conversation, "reply"]) => {
                if !self.exists("conversation", conversation) {
                    return not_found();
                }
                let id = self.next().to_string();
                self.add("note", json!(id), Some(json!(conversation)), b);
                json_answer(
                    200,
                    json!({"type": "conversation", "id": conversation, "conversation_parts": {"type": "conversation_part.list", "conversation_parts": [{"type": "conversation_part", "id": id, "part_type": "note"}]}}),
                )
            }
            _ => not_found(),
        }
    }

    /// Slack incoming webhook: the path is the credential; plain-text answers.
    fn slack(&mut self, request: &Request) -> ResponseTemplate {
        if request.url.path() != format!("{SLACK_PATH}/{}", self.secret) {
            return ResponseTemplate::new(404).set_body_string("no_service");
        }
        let b = body(request);
        if !b["text"].is_string() {
            return ResponseTemplate::new(400).set_body_string("invalid_payload");
        }
        let id = self.next();
        self.add("message", json!(id), None, b);
        ResponseTemplate::new(200).set_body_string("ok")
    }
}

//! A local server that answers like Zendesk's ticket API, with state: tickets are created,
//! found by `external_id`, updated with comments by `PUT /api/v2/tickets/{id}`, and
//! `Idempotency-Key` replays the first answer (a different body under the same key is refused
//! with 400, as Zendesk does).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use crate::fake_vendor::{FakeVendor, Scripted, Vendor, authorization, json_answer};

/// The stand-in; `uri()` is the connector's `base_url`.
pub struct FakeZendesk {
    fake: FakeVendor<Zendesk>,
}

struct Zendesk {
    expected_auth: String,
    tickets: Vec<Value>,
    idempotency: HashMap<String, (String, Value)>,
    /// End users made from requesters, by e-mail (or name, without one); the index + 1 is
    /// the user's id after [`API_USER`].
    users: Vec<String>,
    /// Each ticket's requester, by ticket id.
    requesters: HashMap<u64, u64>,
}

/// The id of the user whose API token the connector uses: the requester of a ticket made
/// without one.
const API_USER: u64 = 4000;

impl FakeZendesk {
    pub async fn start(email: &str, api_token: &str) -> Self {
        use base64::Engine as _;
        let expected_auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{email}/token:{api_token}"))
        );
        let fake = FakeVendor::start(Zendesk {
            expected_auth,
            tickets: Vec::new(),
            idempotency: HashMap::new(),
            users: Vec::new(),
            requesters: HashMap::new(),
        })
        .await;
        Self { fake }
    }

    pub fn uri(&self) -> String {
        self.fake.uri()
    }

    /// The Authorization header a correct client sends.
    pub fn expected_auth(&self) -> String {
        self.fake.with(|z| z.expected_auth.clone())
    }

    /// Queues scripted answers for the next writes.
    pub fn script(&self, steps: impl IntoIterator<Item = Scripted>) {
        self.fake.script(steps);
    }

    /// Delays every answer (a ticket is created before the delay).
    pub fn delay(&self, delay: Duration) {
        self.fake.delay(delay);
    }

    /// Tickets created so far.
    pub fn tickets(&self) -> Vec<Value> {
        self.fake.with(|z| z.tickets.clone())
    }

    /// Times and bodies of every POST received.
    pub fn posts(&self) -> Vec<(Instant, Value)> {
        self.fake
            .requests_with("POST")
            .into_iter()
            .map(|(at, r)| (at, serde_json::from_slice(&r.body).unwrap_or(Value::Null)))
            .collect()
    }

    /// Every request received.
    pub fn requests(&self) -> Vec<Request> {
        self.fake.requests().into_iter().map(|(_, r)| r).collect()
    }
}

impl Vendor for Zendesk {
    fn authorized(&self, request: &Request) -> bool {
        authorization(request) == self.expected_auth
    }

    fn unauthorized(&self) -> ResponseTemplate {
        json_answer(401, json!({"error": "Couldn't authenticate you"}))
    }

    fn handle(&mut self, request: &Request) -> ResponseTemplate {
        let path = request.url.path();
        match (request.method.as_str(), path) {
            ("GET", "/api/v2/tickets") => self.find(request),
            ("POST", "/api/v2/tickets") => self.create(request),
            ("PUT", _) if path.starts_with("/api/v2/tickets/") => self.update(request),
            _ => json_answer(
                404,
                json!({"error": "InvalidEndpoint", "description": "Not found"}),
            ),
        }
    }
}

impl Zendesk {
    /// `GET /api/v2/tickets?external_id=`.
    fn find(&self, request: &Request) -> ResponseTemplate {
        let wanted = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "external_id")
            .map(|(_, v)| v.into_owned());
        let found: Vec<Value> = self
            .tickets
            .iter()
            .filter(|t| wanted.is_some() && t["external_id"].as_str() == wanted.as_deref())
            .map(|t| self.answered(t))
            .collect();
        let count = found.len();
        json_answer(
            200,
            json!({"tickets": found, "count": count, "next_page": null}),
        )
    }

    /// `POST /api/v2/tickets`, honouring `Idempotency-Key`.
    fn create(&mut self, request: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return json_answer(
                400,
                json!({"error": "Unprocessable Entity", "description": "invalid JSON"}),
            );
        };
        let raw_body = String::from_utf8_lossy(&request.body).into_owned();
        let key = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(key) = &key
            && let Some((seen_body, answer)) = self.idempotency.get(key)
        {
            if *seen_body != raw_body {
                return json_answer(
                    400,
                    json!({"error": "IdempotentRequestError", "description": "Request body does not match"}),
                );
            }
            return json_answer(201, answer.clone()).insert_header("x-idempotency-lookup", "hit");
        }
        let ticket = &body["ticket"];
        if ticket["comment"]["body"].as_str().is_none_or(str::is_empty) {
            return json_answer(
                422,
                json!({"error": "RecordInvalid", "description": "Record validation errors",
                       "details": {"description": [{"description": "Description: cannot be blank", "error": "BlankValue"}]}}),
            );
        }
        let id = self.tickets.len() as u64 + 1;
        let mut stored = ticket.clone();
        stored["id"] = json!(id);
        let requester = self.user(&ticket["requester"]);
        self.requesters.insert(id, requester);
        self.tickets.push(stored.clone());
        let answer = json!({"ticket": self.answered(&stored), "audit": audit(id * 100, id)});
        if let Some(key) = key {
            self.idempotency.insert(key, (raw_body, answer.clone()));
        }
        json_answer(201, answer)
            .insert_header(
                "Location",
                format!("https://acme.zendesk.com/api/v2/tickets/{id}.json").as_str(),
            )
            .insert_header("x-idempotency-lookup", "miss")
    }

    /// `PUT /api/v2/tickets/{id}`: a comment in the body is appended to the ticket's
    /// comments, tags replace the set.
    fn update(&mut self, request: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return json_answer(400, json!({"error": "invalid JSON"}));
        };
        let id: u64 = request
            .url
            .path()
            .rsplit('/')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or_default();
        let Some(ticket) = self.tickets.iter_mut().find(|t| t["id"] == json!(id)) else {
            return json_answer(
                404,
                json!({"error": "RecordNotFound", "description": "Not found"}),
            );
        };
        let change = &body["ticket"];
        if let Some(comment) = change.get("comment") {
            if comment["body"].as_str().is_none_or(str::is_empty) {
                return json_answer(
                    422,
                    json!({"error": "RecordInvalid", "description": "Record validation errors"}),
                );
            }
            match ticket["comments"].as_array_mut() {
                Some(comments) => comments.push(comment.clone()),
                None => ticket["comments"] = json!([comment]),
            }
        }
        if let Some(tags) = change.get("tags") {
            ticket["tags"] = tags.clone();
        }
        let ticket = ticket.clone();
        json_answer(
            200,
            json!({"ticket": self.answered(&ticket), "audit": audit(id * 100 + 1, id)}),
        )
    }

    /// The id of the end user a requester names, made on first sight as Zendesk does; the
    /// API user's without a requester.
    fn user(&mut self, requester: &Value) -> u64 {
        let Some(who) = requester["email"]
            .as_str()
            .or_else(|| requester["name"].as_str())
        else {
            return API_USER;
        };
        let index = match self.users.iter().position(|u| u == who) {
            Some(index) => index,
            None => {
                self.users.push(who.to_owned());
                self.users.len() - 1
            }
        };
        API_USER + 1 + index as u64
    }

    /// A stored ticket as Zendesk answers it: the fields it keeps, not the request's
    /// `requester` and `comment`.
    fn answered(&self, ticket: &Value) -> Value {
        let id = ticket["id"].as_u64().unwrap_or_default();
        json!({
            "id": id,
            "url": format!("https://acme.zendesk.com/api/v2/tickets/{id}.json"),
            "external_id": ticket["external_id"],
            "subject": ticket["subject"],
            "raw_subject": ticket["subject"],
            "description": ticket["comment"]["body"],
            "status": "new",
            "requester_id": self.requesters.get(&id).copied().unwrap_or(API_USER),
            "submitter_id": API_USER,
            "tags": ticket["tags"],
            "created_at": "2026-12-06T09:00:00Z",
            "updated_at": "2026-12-06T09:00:00Z",
        })
    }
}

/// The audit of a change to ticket `ticket`.
fn audit(id: u64, ticket: u64) -> Value {
    json!({"id": id, "ticket_id": ticket, "author_id": API_USER, "created_at": "2026-12-06T09:00:00Z", "events": []})
}

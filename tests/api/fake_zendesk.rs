//! A local server that answers like Zendesk's ticket API, with state: tickets are created,
//! found by `external_id`, updated with comments by `PUT /api/v2/tickets/{id}`, and
//! `Idempotency-Key` replays the first answer (a different body under the same key is refused
//! with 400, as Zendesk does). Failures can be scripted.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// What the next POST /api/v2/tickets does instead of the normal create.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// Answer this status (with optional Retry-After) without creating anything.
    Fail {
        status: u16,
        retry_after: Option<u64>,
        body: Value,
    },
    /// Create the ticket, then answer so late that the client gives up: a lost answer.
    CreateAndLoseAnswer,
}

#[derive(Debug, Default)]
struct State {
    tickets: Vec<Value>,
    idempotency: HashMap<String, (String, Value)>,
    script: VecDeque<Scripted>,
    posts: Vec<(Instant, Value)>,
    requests: Vec<Request>,
    delay: Duration,
}

/// The fake; `uri()` is the connector's `base_url`.
#[derive(Clone)]
pub struct FakeZendesk {
    pub server: Arc<MockServer>,
    state: Arc<Mutex<State>>,
    expected_auth: String,
}

impl FakeZendesk {
    pub async fn start(email: &str, api_token: &str) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        use base64::Engine as _;
        let expected_auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{email}/token:{api_token}"))
        );
        let responder = Responder {
            state: state.clone(),
            expected_auth: expected_auth.clone(),
        };
        Mock::given(path("/api/v2/tickets"))
            .respond_with(responder.clone())
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .and(path_regex(r"^/api/v2/tickets/[0-9]+$"))
            .respond_with(responder)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&server)
            .await;
        Self {
            server: Arc::new(server),
            state,
            expected_auth,
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// The Authorization header a correct client sends.
    pub fn expected_auth(&self) -> &str {
        &self.expected_auth
    }

    /// Queues scripted answers for the next creates.
    pub fn script(&self, steps: impl IntoIterator<Item = Scripted>) {
        self.state.lock().unwrap().script.extend(steps);
    }

    /// Delays every answer (the ticket is created before the delay).
    pub fn delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Tickets created so far.
    pub fn tickets(&self) -> Vec<Value> {
        self.state.lock().unwrap().tickets.clone()
    }

    /// Times and bodies of every POST received.
    pub fn posts(&self) -> Vec<(Instant, Value)> {
        self.state.lock().unwrap().posts.clone()
    }

    /// Every request received.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }
}

#[derive(Clone)]
struct Responder {
    state: Arc<Mutex<State>>,
    expected_auth: String,
}

fn error(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.state.lock().unwrap();
        state.requests.push(request.clone());
        let delay = state.delay;
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if auth != self.expected_auth {
            return error(401, json!({"error": "Couldn't authenticate you"}));
        }
        if request.method.as_str() == "GET" {
            let wanted = request
                .url
                .query_pairs()
                .find(|(k, _)| k == "external_id")
                .map(|(_, v)| v.into_owned());
            let found: Vec<Value> = state
                .tickets
                .iter()
                .filter(|t| wanted.is_some() && t["external_id"].as_str() == wanted.as_deref())
                .cloned()
                .collect();
            let count = found.len();
            return ResponseTemplate::new(200)
                .set_body_json(json!({"tickets": found, "count": count, "next_page": null}))
                .set_delay(delay);
        }
        let body: Value = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(_) => {
                return error(
                    400,
                    json!({"error": "Unprocessable Entity", "description": "invalid JSON"}),
                );
            }
        };
        if request.method.as_str() == "PUT" {
            return update(&mut state, request, &body).set_delay(delay);
        }
        state.posts.push((Instant::now(), body.clone()));
        let mut lose_answer = false;
        match state.script.pop_front() {
            Some(Scripted::Fail {
                status,
                retry_after,
                body,
            }) => {
                let mut response = error(status, body);
                if let Some(seconds) = retry_after {
                    response = response.insert_header("Retry-After", seconds.to_string().as_str());
                }
                return response;
            }
            Some(Scripted::CreateAndLoseAnswer) => lose_answer = true,
            None => {}
        }
        let raw_body = String::from_utf8_lossy(&request.body).into_owned();
        let key = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(key) = &key
            && let Some((seen_body, answer)) = state.idempotency.get(key)
        {
            if *seen_body != raw_body {
                return error(
                    400,
                    json!({"error": "IdempotentRequestError", "description": "Request body does not match"}),
                );
            }
            return ResponseTemplate::new(201)
                .set_body_json(answer.clone())
                .insert_header("x-idempotency-lookup", "hit");
        }
        let ticket = &body["ticket"];
        if ticket["comment"]["body"].as_str().is_none_or(str::is_empty) {
            return error(
                422,
                json!({"error": "RecordInvalid", "description": "Record validation errors",
                       "details": {"description": [{"description": "Description: cannot be blank", "error": "BlankValue"}]}}),
            );
        }
        let id = state.tickets.len() as u64 + 1;
        let mut stored = ticket.clone();
        stored["id"] = json!(id);
        state.tickets.push(stored.clone());
        let answer = json!({"ticket": stored, "audit": {"id": id * 100}});
        if let Some(key) = key {
            state.idempotency.insert(key, (raw_body, answer.clone()));
        }
        let response = ResponseTemplate::new(201)
            .set_body_json(answer)
            .insert_header(
                "Location",
                format!("https://acme.zendesk.com/api/v2/tickets/{id}.json").as_str(),
            )
            .insert_header("x-idempotency-lookup", "miss");
        if lose_answer {
            response.set_delay(Duration::from_secs(30))
        } else {
            response.set_delay(delay)
        }
    }
}

/// `PUT /api/v2/tickets/{id}`: a comment in the body is appended to the ticket's comments,
/// tags replace the set.
fn update(state: &mut State, request: &Request, body: &Value) -> ResponseTemplate {
    let id: u64 = request
        .url
        .path()
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_default();
    let Some(ticket) = state.tickets.iter_mut().find(|t| t["id"] == json!(id)) else {
        return error(
            404,
            json!({"error": "RecordNotFound", "description": "Not found"}),
        );
    };
    let change = &body["ticket"];
    if let Some(comment) = change.get("comment") {
        if comment["body"].as_str().is_none_or(str::is_empty) {
            return error(
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
    ResponseTemplate::new(200)
        .set_body_json(json!({"ticket": ticket.clone(), "audit": {"id": id * 100 + 1}}))
}

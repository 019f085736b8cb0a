//! Help Scout Mailbox API v2: client-credentials tokens, conversations listed by tag,
//! 201 with the id in `Resource-ID` and an empty body.

use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use super::*;
use crate::fake_vendor::{Vendor, authorization, json_answer};

/// Help Scout Mailbox API 2.0, as the connector calls it.
pub struct HelpScout {
    secret: String,
    records: Records,
}

stand_in!(HelpScout);

impl HelpScout {
    fn answer(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
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
                let token = format!("hs-token-{}", self.records.next());
                self.records.tokens.push(token.clone());
                json_answer(
                    200,
                    json!({"token_type": "bearer", "access_token": token, "expires_in": 172800}),
                )
            }
            ("GET", ["v2", "conversations"]) => {
                let tag = query(request, "tag");
                let found: Vec<Value> = self
                    .records
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
                let id = self.records.next();
                self.records.add("conversation", json!(id), None, b);
                created(id, format!("/v2/conversations/{id}"))
            }
            ("POST", ["v2", "conversations", conversation, "notes"]) => {
                if !self.records.exists("conversation", conversation) {
                    return not_found();
                }
                let id = self.records.next();
                self.records
                    .add("note", json!(id), Some(json!(conversation)), body(request));
                created(id, format!("/v2/conversations/{conversation}/threads/{id}"))
            }
            _ => not_found(),
        }
    }
}

impl Vendor for HelpScout {
    fn authorized(&self, request: &Request) -> bool {
        request.url.path() == "/v2/oauth2/token"
            || authorization(request)
                .strip_prefix("Bearer ")
                .is_some_and(|t| self.records.tokens.iter().any(|k| k == t))
    }

    fn unauthorized(&self) -> ResponseTemplate {
        json_answer(
            401,
            json!({"error": "invalid_token", "error_description": "The access token is invalid or has expired"}),
        )
    }

    fn handle(&mut self, request: &Request) -> ResponseTemplate {
        route(request, |route| self.answer(request, route))
    }
}

//! Intercom 2.14: contacts (409 names the existing id in prose), conversations searched
//! by a word of their first message, admin notes as replies.

use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use super::*;
use crate::fake_vendor::{Vendor, authorization, json_answer};

/// Intercom REST API 2.x, as the connector calls it.
pub struct Intercom {
    secret: String,
    records: Records,
}

stand_in!(Intercom);

impl Intercom {
    fn answer(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
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
                    .records
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
                if let Some(existing) = self
                    .records
                    .find("contact", |c| c.body["email"] == b["email"])
                {
                    return json_answer(
                        409,
                        json!({"type": "error.list", "request_id": "req-409", "errors": [{"code": "conflict", "message": format!("A contact matching those details already exists with id={}", id_text(&existing.id))}]}),
                    );
                }
                let id = format!("{:024x}", self.records.next());
                self.records.add("contact", json!(id), None, b.clone());
                json_answer(
                    200,
                    json!({"type": "contact", "id": id, "role": b["role"], "email": b["email"]}),
                )
            }
            ("POST", ["conversations", "search"]) => {
                let word = b["query"]["value"].as_str().unwrap_or_default().to_owned();
                let found: Vec<Value> = self
                    .records
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
                if !self.records.exists("contact", &from) || !b["body"].is_string() {
                    return json_answer(
                        404,
                        json!({"type": "error.list", "errors": [{"code": "not_found", "message": "User Not Found"}]}),
                    );
                }
                let id = self.records.next().to_string();
                self.records
                    .add("conversation", json!(id), Some(json!(from)), b.clone());
                json_answer(
                    200,
                    json!({"type": "user_message", "id": format!("40{id}"), "conversation_id": id,
                           "created_at": 1_427_470_439, "body": b["body"], "message_type": "inapp"}),
                )
            }
            ("POST", ["conversations", conversation, "reply"]) => {
                if !self.records.exists("conversation", conversation) {
                    return not_found();
                }
                let id = self.records.next().to_string();
                self.records
                    .add("note", json!(id), Some(json!(conversation)), b);
                json_answer(
                    200,
                    json!({"type": "conversation", "id": conversation, "conversation_parts": {"type": "conversation_part.list", "conversation_parts": [{"type": "conversation_part", "id": id, "part_type": "note"}]}}),
                )
            }
            _ => not_found(),
        }
    }
}

impl Vendor for Intercom {
    fn authorized(&self, request: &Request) -> bool {
        authorization(request) == format!("Bearer {}", self.secret)
    }

    fn unauthorized(&self) -> ResponseTemplate {
        json_answer(
            401,
            json!({"type": "error.list", "request_id": "req-1", "errors": [{"code": "unauthorized", "message": "Access Token Invalid"}]}),
        )
    }

    fn handle(&mut self, request: &Request) -> ResponseTemplate {
        route(request, |route| self.answer(request, route))
    }
}

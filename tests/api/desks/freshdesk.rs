//! Freshdesk API v2: contacts unique by e-mail (409 names the existing one), tickets
//! searchable by tag, private notes.

use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use super::*;
use crate::fake_vendor::{Vendor, authorization, json_answer};

/// Freshdesk API v2, as the connector calls it.
pub struct Freshdesk {
    secret: String,
    records: Records,
}

stand_in!(Freshdesk);

impl Freshdesk {
    fn answer(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
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
                    .records
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
                if let Some(existing) = self
                    .records
                    .find("contact", |c| c.body["email"] == b["email"])
                {
                    return json_answer(
                        409,
                        json!({"description": "Validation failed", "errors": [{"field": "email", "additional_info": {"user_id": existing.id}, "message": "It should be a unique value", "code": "duplicate_value"}]}),
                    );
                }
                let id = self.records.next();
                self.records.add("contact", json!(id), None, b.clone());
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
                let found =
                    self.records
                        .search("ticket", filter, |t, field, op, value| match field {
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
                    && !self
                        .records
                        .exists("contact", &b["requester_id"].to_string())
                {
                    return invalid("requester_id", "invalid_value");
                }
                let id = self.records.next();
                self.records.add("ticket", json!(id), None, b.clone());
                let mut answer = b;
                answer["id"] = json!(id);
                json_answer(201, answer)
            }
            ("POST", ["api", "v2", "tickets", ticket, "notes"]) => {
                if !self.records.exists("ticket", ticket) {
                    return json_answer(404, json!({"code": "access_denied"}));
                }
                let b = body(request);
                let id = self.records.next();
                self.records
                    .add("note", json!(id), Some(json!(ticket)), b.clone());
                json_answer(
                    201,
                    json!({"id": id, "body": b["body"], "private": b["private"]}),
                )
            }
            _ => not_found(),
        }
    }
}

impl Vendor for Freshdesk {
    fn authorized(&self, request: &Request) -> bool {
        authorization(request) == basic(&self.secret, "X")
    }

    fn unauthorized(&self) -> ResponseTemplate {
        json_answer(
            401,
            json!({"code": "invalid_credentials", "message": "You have to be logged in to perform this action."}),
        )
    }

    fn handle(&mut self, request: &Request) -> ResponseTemplate {
        route(request, |route| self.answer(request, route))
    }
}

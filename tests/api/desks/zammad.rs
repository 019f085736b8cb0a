//! Zammad: tickets with a first article, searchable by tag, articles added later.

use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use super::*;
use crate::fake_vendor::{Vendor, authorization, json_answer};

/// Zammad REST API, as the connector calls it.
pub struct Zammad {
    secret: String,
    records: Records,
}

stand_in!(Zammad);

impl Zammad {
    fn answer(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
        let unprocessable =
            |what: &str| json_answer(422, json!({"error": what, "error_human": what}));
        match route {
            ("GET", ["api", "v1", "tickets", "search"]) => {
                let q = query(request, "query");
                let found = self.records.search("ticket", &q, |t, field, op, value| {
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
                let id = self.records.next();
                self.records.add("ticket", json!(id), None, b.clone());
                json_answer(
                    201,
                    json!({"id": id, "number": format!("31{id}"), "title": b["title"], "article_ids": [id * 10]}),
                )
            }
            ("POST", ["api", "v1", "ticket_articles"]) => {
                let b = body(request);
                if !self.records.exists("ticket", &b["ticket_id"].to_string()) {
                    return unprocessable("No such ticket");
                }
                let id = self.records.next();
                self.records.add(
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
}

impl Vendor for Zammad {
    fn authorized(&self, request: &Request) -> bool {
        authorization(request) == format!("Token token={}", self.secret)
    }

    fn unauthorized(&self) -> ResponseTemplate {
        json_answer(
            401,
            json!({"error": "Invalid token!", "error_human": "Invalid token!"}),
        )
    }

    fn handle(&mut self, request: &Request) -> ResponseTemplate {
        route(request, |route| self.answer(request, route))
    }
}

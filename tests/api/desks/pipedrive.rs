//! Pipedrive: persons v2 searched by e-mail (whole and ignoring case with `exact_match`,
//! as part otherwise), notes v1 listed by person.

use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use super::*;
use crate::fake_vendor::{Vendor, json_answer};

/// Pipedrive API v1 and v2, as the connector calls it.
pub struct Pipedrive {
    secret: String,
    records: Records,
}

stand_in!(Pipedrive);

impl Pipedrive {
    fn answer(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
        match route {
            ("GET", ["api", "v2", "persons", "search"]) => {
                let term = query(request, "term").to_lowercase();
                let exact = query(request, "exact_match") == "true";
                let items: Vec<Value> = self
                    .records.all("person")
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
                let id = self.records.next();
                self.records.add("person", json!(id), None, b.clone());
                json_answer(
                    200,
                    json!({"success": true, "data": {"id": id, "name": b["name"]}}),
                )
            }
            ("GET", ["api", "v1", "leads"]) => {
                let person = query(request, "person_id");
                let leads: Vec<Value> = self
                    .records
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
                if !b["title"].is_string() || !self.records.exists("person", &person) {
                    return json_answer(
                        400,
                        json!({"success": false, "error": "A lead needs a title and an existing person or organization", "error_info": "Please check developers.pipedrive.com for more information about Pipedrive API.", "data": null, "additional_data": null}),
                    );
                }
                let id = format!("6d2b0a1e-0000-4000-8000-{:012}", self.records.next());
                self.records
                    .add("lead", json!(id), Some(b["person_id"].clone()), b);
                let made = self.records.all("lead").pop().unwrap();
                json_answer(201, json!({"success": true, "data": lead(&made)}))
            }
            ("GET", ["api", "v1", "notes"]) => {
                let person = query(request, "person_id");
                let notes: Vec<Value> = self
                    .records.all("note")
                    .into_iter()
                    .filter(|n| n.parent.as_ref().map(id_text) == Some(person.clone()))
                    .map(|n| json!({"id": n.id, "content": n.body["content"], "person_id": n.body["person_id"]}))
                    .collect();
                json_answer(200, json!({"success": true, "data": notes}))
            }
            ("POST", ["api", "v1", "notes"]) => {
                let b = body(request);
                let person = b["person_id"].to_string();
                if !b["content"].is_string() || !self.records.exists("person", &person) {
                    return json_answer(
                        400,
                        json!({"success": false, "error": "Note must have content and an existing person", "code": "ERR_VALIDATION"}),
                    );
                }
                let id = self.records.next();
                self.records
                    .add("note", json!(id), Some(b["person_id"].clone()), b.clone());
                // 200, as Pipedrive documents it for a created note (not 201).
                json_answer(
                    200,
                    json!({"success": true, "data": {"id": id, "content": b["content"], "person_id": b["person_id"]}}),
                )
            }
            _ => not_found(),
        }
    }
}

impl Vendor for Pipedrive {
    fn authorized(&self, request: &Request) -> bool {
        header(request, "x-api-token") == self.secret
    }

    fn unauthorized(&self) -> ResponseTemplate {
        json_answer(
            401,
            json!({"success": false, "error": "unauthorized access", "errorCode": 401, "error_info": "Please check developers.pipedrive.com"}),
        )
    }

    fn handle(&mut self, request: &Request) -> ResponseTemplate {
        route(request, |route| self.answer(request, route))
    }
}

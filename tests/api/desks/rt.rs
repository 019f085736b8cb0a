//! Request Tracker REST2: tickets with custom fields, TicketSQL search on one, comments.

use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use super::*;
use crate::fake_vendor::{Vendor, authorization, json_answer};

/// Request Tracker 5 REST 2, as the connector calls it.
pub struct Rt {
    secret: String,
    records: Records,
}

stand_in!(Rt);

impl Rt {
    fn answer(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
        match route {
            ("GET", ["REST", "2.0", "tickets"]) => {
                // TicketSQL: 'CF.{ChatbridgeKey}' = 'value', id > 10, Subject = 'x', ...
                let q = query(request, "query");
                let found = self.records.search("ticket", &q, |t, field, op, value| {
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
                let id = self.records.next().to_string();
                let mut b = b;
                // RT keeps the requestors as the addresses it parsed out of the list.
                let requestors = addresses(b["Requestor"].as_str().unwrap_or_default());
                b["Requestors"] = json!(requestors);
                self.records.add("ticket", json!(id), None, b);
                json_answer(
                    201,
                    json!({"type": "ticket", "id": id, "_url": format!("/REST/2.0/ticket/{id}")}),
                )
            }
            ("POST", ["REST", "2.0", "ticket", ticket, "comment"]) => {
                if !self.records.exists("ticket", ticket) {
                    return not_found();
                }
                let id = self.records.next();
                self.records
                    .add("comment", json!(id), Some(json!(ticket)), body(request));
                json_answer(201, json!(["Comments added"]))
            }
            _ => not_found(),
        }
    }
}

impl Vendor for Rt {
    fn authorized(&self, request: &Request) -> bool {
        authorization(request) == format!("token {}", self.secret)
    }

    fn unauthorized(&self) -> ResponseTemplate {
        json_answer(401, json!({"message": "Unauthorized"}))
    }

    fn handle(&mut self, request: &Request) -> ResponseTemplate {
        route(request, |route| self.answer(request, route))
    }
}

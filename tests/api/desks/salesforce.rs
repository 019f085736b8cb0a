//! Salesforce sObject upsert on an External ID field: 201 created, 200 updated.

use serde_json::json;
use wiremock::{Request, ResponseTemplate};

use super::*;
use crate::fake_vendor::{Vendor, authorization, json_answer};

/// Salesforce REST, as the connector calls it.
pub struct Salesforce {
    secret: String,
    records: Records,
}

stand_in!(Salesforce);

impl Salesforce {
    fn answer(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
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
                    .records
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
                let id = format!("5003000000D8c{:05}", self.records.next());
                let mut stored = b;
                stored["__key"] = json!(key);
                stored["__object"] = json!(object);
                self.records.add("record", json!(id), None, stored);
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
}

impl Vendor for Salesforce {
    fn authorized(&self, request: &Request) -> bool {
        authorization(request) == format!("Bearer {}", self.secret)
    }

    fn unauthorized(&self) -> ResponseTemplate {
        json_answer(
            401,
            json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
        )
    }

    fn handle(&mut self, request: &Request) -> ResponseTemplate {
        route(request, |route| self.answer(request, route))
    }
}

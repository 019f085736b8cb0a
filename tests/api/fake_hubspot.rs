//! A local server that answers like HubSpot's CRM v3/v4 APIs for what the `hubspot` connector
//! calls, with state: contacts upserted on e-mail, notes upserted on the unique
//! `chatbridge_key` property, note → contact associations. Error bodies, statuses and the
//! 200 batch answers follow `../shared/specs/hubspot/` and HubSpot's error guide.

use serde_json::{Map, Value, json};
use wiremock::{Request, ResponseTemplate};

use crate::fake_vendor::{FakeVendor, Vendor, authorization, json_answer};

/// The unique note property this account has.
pub const NOTE_KEY_PROPERTY: &str = "chatbridge_key";

#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub id: String,
    pub properties: Map<String, Value>,
}

pub struct HubSpot {
    token: String,
    pub contacts: Vec<Object>,
    pub notes: Vec<Object>,
    /// (note id, contact id).
    pub associations: Vec<(String, String)>,
    next_id: u64,
}

impl HubSpot {
    /// Asserts that some note's body holds each of `lines`.
    pub fn assert_notes_hold(&self, lines: &[&str]) {
        let bodies: Vec<&str> = self
            .notes
            .iter()
            .map(|n| n.properties["hs_note_body"].as_str().unwrap_or_default())
            .collect();
        for line in lines {
            assert!(
                bodies.iter().any(|b| b.contains(line)),
                "no note holds {line:?}: {bodies:#?}"
            );
        }
    }
}

pub async fn start(token: &str) -> FakeVendor<HubSpot> {
    FakeVendor::start(HubSpot {
        token: token.to_owned(),
        contacts: Vec::new(),
        notes: Vec::new(),
        associations: Vec::new(),
        next_id: 1000,
    })
    .await
}

fn hubspot_error(status: u16, category: &str, message: &str) -> ResponseTemplate {
    json_answer(
        status,
        json!({"status": "error", "message": message, "correlationId": "5a2f6c1e-0000-4000-8000-000000000000", "category": category}),
    )
}

const NOW: &str = "2026-05-04T10:00:00.000Z";

impl Vendor for HubSpot {
    fn authorized(&self, request: &Request) -> bool {
        authorization(request) == format!("Bearer {}", self.token)
    }

    fn unauthorized(&self) -> ResponseTemplate {
        hubspot_error(
            401,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication.",
        )
    }

    fn handle(&mut self, request: &Request) -> ResponseTemplate {
        let path = request.url.path().to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (request.method.as_str(), segments.as_slice()) {
            ("POST", ["crm", "v3", "objects", "contacts", "batch", "upsert"]) => {
                self.upsert(request, Kind::Contact)
            }
            ("POST", ["crm", "v3", "objects", "notes", "batch", "upsert"]) => {
                self.upsert(request, Kind::Note)
            }
            (
                "PUT",
                [
                    "crm",
                    "v4",
                    "objects",
                    "notes",
                    note,
                    "associations",
                    "default",
                    "contacts",
                    contact,
                ],
            ) => self.associate(note, contact),
            _ => hubspot_error(404, "OBJECT_NOT_FOUND", "resource not found"),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Contact,
    Note,
}

impl HubSpot {
    /// `POST /crm/v3/objects/{contacts,notes}/batch/upsert`.
    fn upsert(&mut self, request: &Request, kind: Kind) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return hubspot_error(400, "VALIDATION_ERROR", "Invalid input JSON");
        };
        let Some(inputs) = body["inputs"]
            .as_array()
            .filter(|i| (1..=100).contains(&i.len()))
        else {
            return hubspot_error(400, "VALIDATION_ERROR", "inputs: 1 to 100 required");
        };
        let unique = match kind {
            Kind::Contact => "email",
            Kind::Note => NOTE_KEY_PROPERTY,
        };
        let mut results = Vec::new();
        for input in inputs {
            let id_property = input["idProperty"].as_str().unwrap_or_default();
            if id_property != unique {
                return hubspot_error(
                    400,
                    "VALIDATION_ERROR",
                    &format!(
                        "Property \"{id_property}\" does not exist or is not a unique property"
                    ),
                );
            }
            let Some(properties) = input["properties"].as_object() else {
                return hubspot_error(400, "VALIDATION_ERROR", "properties: required");
            };
            if let Some((name, _)) = properties.iter().find(|(_, v)| !v.is_string()) {
                return hubspot_error(
                    400,
                    "VALIDATION_ERROR",
                    &format!("Property values must be strings: {name}"),
                );
            }
            if matches!(kind, Kind::Note) && !properties.contains_key("hs_timestamp") {
                return hubspot_error(400, "VALIDATION_ERROR", "hs_timestamp is required");
            }
            let key = input["id"].as_str().unwrap_or_default().to_owned();
            let next_id = &mut self.next_id;
            let objects = match kind {
                Kind::Contact => &mut self.contacts,
                Kind::Note => &mut self.notes,
            };
            let existing = objects
                .iter_mut()
                .find(|o| o.properties.get(unique).and_then(Value::as_str) == Some(key.as_str()));
            let (object, new) = match existing {
                Some(object) => {
                    object.properties.extend(properties.clone());
                    (object.clone(), false)
                }
                None => {
                    *next_id += 1;
                    let mut properties = properties.clone();
                    properties.insert(unique.to_owned(), Value::String(key));
                    let object = Object {
                        id: next_id.to_string(),
                        properties,
                    };
                    objects.push(object.clone());
                    (object, true)
                }
            };
            results.push(json!({
                "id": object.id, "properties": object.properties, "createdAt": NOW,
                "updatedAt": NOW, "archived": false, "new": new
            }));
        }
        json_answer(
            200,
            json!({"status": "COMPLETE", "results": results, "startedAt": NOW, "completedAt": NOW}),
        )
    }

    /// `PUT /crm/v4/objects/notes/{id}/associations/default/contacts/{id}`: idempotent.
    fn associate(&mut self, note: &str, contact: &str) -> ResponseTemplate {
        if !self.notes.iter().any(|n| n.id == note)
            || !self.contacts.iter().any(|c| c.id == contact)
        {
            return hubspot_error(
                404,
                "OBJECT_NOT_FOUND",
                "One or more objects were not found",
            );
        }
        let pair = (note.to_owned(), contact.to_owned());
        if !self.associations.contains(&pair) {
            self.associations.push(pair);
        }
        json_answer(
            200,
            json!({"status": "COMPLETE", "results": [{
                "from": {"id": note}, "to": {"id": contact},
                "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}
            }], "startedAt": NOW, "completedAt": NOW}),
        )
    }
}

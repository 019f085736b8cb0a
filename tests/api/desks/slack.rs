//! Slack incoming webhook: the path is the credential; plain-text answers.

use serde_json::json;
use wiremock::{Request, ResponseTemplate};

use super::*;
use crate::fake_vendor::Vendor;

/// Slack incoming webhooks, as the connector calls it.
pub struct Slack {
    secret: String,
    records: Records,
}

stand_in!(Slack);

impl Slack {
    fn answer(&mut self, request: &Request, _: Route<'_>) -> ResponseTemplate {
        if request.url.path() != format!("{SLACK_PATH}/{}", self.secret) {
            return ResponseTemplate::new(404).set_body_string("no_service");
        }
        let b = body(request);
        if !b["text"].is_string() {
            return ResponseTemplate::new(400).set_body_string("invalid_payload");
        }
        let id = self.records.next();
        self.records.add("message", json!(id), None, b);
        ResponseTemplate::new(200).set_body_string("ok")
    }
}

impl Vendor for Slack {
    fn authorized(&self, _request: &Request) -> bool {
        // The URL is the credential: a wrong one is a 404, answered by `handle`.
        true
    }

    fn unauthorized(&self) -> ResponseTemplate {
        ResponseTemplate::new(403).set_body_string("invalid_token")
    }

    fn handle(&mut self, request: &Request) -> ResponseTemplate {
        route(request, |route| self.answer(request, route))
    }
}

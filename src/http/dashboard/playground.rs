//! The template playground: a connector's templates tried against a sample or pasted
//! chat, nothing sent.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;

use super::Dashboard;
use crate::http::api;
use crate::http::api::PreviewRequest;
use crate::samples;

/// Form fields of the playground that carry template texts: `template:NAME`.
pub(super) const TEMPLATE_FIELD: &str = "template:";

/// The playground's state, as shown and as posted back.
#[derive(Debug, Default, Serialize)]
pub(super) struct Playground {
    section: &'static str,
    samples: Vec<&'static str>,
    connectors: Vec<String>,
    sample: String,
    connector: String,
    payload: String,
    /// Template texts by name, edited or as loaded.
    templates: BTreeMap<String, String>,
    requests: Vec<api::PlannedItem>,
    error: Option<String>,
}

impl Playground {
    fn new(dashboard: &Dashboard) -> Self {
        let connectors = dashboard.app.registry.current().names();
        Self {
            section: "playground",
            samples: samples::SMARTSUPP.iter().map(|s| s.name).collect(),
            connector: connectors.first().cloned().unwrap_or_default(),
            connectors,
            sample: samples::DOCUMENTED.name.to_owned(),
            payload: samples::DOCUMENTED.body.to_owned(),
            ..Self::default()
        }
    }
}

/// The playground, with the first sample and connector picked.
pub(super) async fn playground(State(dashboard): State<Dashboard>) -> Response {
    let mut state = Playground::new(&dashboard);
    state.render(&dashboard).await;
    dashboard.show("playground.html", &state)
}

/// Renders the posted payload through the chosen connector with the posted template texts,
/// saving nothing. Picking another sample or connector (`load`) starts from its originals.
pub(super) async fn render_playground(
    State(dashboard): State<Dashboard>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let mut state = Playground::new(&dashboard);
    let mut load = false;
    for (name, value) in fields {
        match name.as_str() {
            "sample" => state.sample = value,
            "connector" => state.connector = value,
            "payload" => state.payload = value,
            "load" => load = true,
            _ => {
                if let Some(template) = name.strip_prefix(TEMPLATE_FIELD) {
                    state.templates.insert(template.to_owned(), value);
                }
            }
        }
    }
    if load {
        state.templates.clear();
        if let Some(sample) = samples::find(&state.sample) {
            state.payload = sample.body.to_owned();
        }
    }
    state.render(&dashboard).await;
    dashboard.show("playground.html", &state)
}

impl Playground {
    /// Fills in the requests (or the error) and the connector's template texts.
    pub(super) async fn render(&mut self, dashboard: &Dashboard) {
        let payload = match serde_json::from_str::<Value>(&self.payload) {
            Ok(payload) => payload,
            Err(e) => {
                self.error = Some(format!("The payload is not JSON: {e}"));
                return;
            }
        };
        let request = PreviewRequest {
            connector: self.connector.clone(),
            payload,
            templates: self.templates.clone(),
        };
        match api::render_preview(&dashboard.app, request).await {
            Ok(preview) => {
                self.requests = preview.requests;
                self.templates = preview.templates;
            }
            Err(e) => self.error = Some(e.public_message()),
        }
    }
}

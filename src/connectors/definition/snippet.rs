//! Names of a definition's snippet templates, shared by the loader and the engine.

use std::collections::BTreeMap;

use super::{Auth, Definition, Step};
use crate::render::{URL_SUFFIX, condition_source};

/// The base URL template.
pub fn base_url(kind: &str) -> String {
    format!("{kind}/base_url")
}
/// An auth field (`username`, `password`, `token`, `value`).
pub fn auth(kind: &str, field: &str) -> String {
    format!("{kind}/auth/{field}")
}
/// A definition-wide header.
pub fn header(kind: &str, name: &str) -> String {
    format!("{kind}/headers/{name}")
}
/// The signature secret.
pub fn signature_secret(kind: &str) -> String {
    format!("{kind}/signature/secret")
}
/// An e-mail's subject.
pub fn subject(kind: &str) -> String {
    format!("{kind}/message/subject")
}
/// A connector instance's `when` filter.
pub fn instance_when(instance: &str) -> String {
    format!("instance/{instance}/when")
}

impl Definition {
    /// The snippet templates of this definition, named by [`snippet`], for the renderer.
    pub fn snippets(&self, kind: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(base) = &self.base_url {
            out.push((base_url(kind), base.clone()));
        }
        match &self.auth {
            Some(Auth::Basic { username, password }) => {
                out.push((auth(kind, "username"), username.clone()));
                out.push((auth(kind, "password"), password.clone()));
            }
            Some(Auth::Bearer { token }) => out.push((auth(kind, "token"), token.clone())),
            Some(Auth::Header { value, .. }) => out.push((auth(kind, "value"), value.clone())),
            Some(Auth::ClientCredentials {
                token_url,
                client_id,
                client_secret,
            }) => {
                out.push((auth(kind, "token_url"), token_url.clone()));
                out.push((auth(kind, "client_id"), client_id.clone()));
                out.push((auth(kind, "client_secret"), client_secret.clone()));
            }
            None => {}
        }
        for (name, value) in &self.headers {
            out.push((header(kind, name), value.clone()));
        }
        if let Some(signature) = &self.signature {
            out.push((signature_secret(kind), signature.secret.clone()));
        }
        if let Some(message) = &self.message {
            out.push((subject(kind), message.subject.clone()));
        }
        let names = DefinitionSteps::of(kind, self);
        let steps = self.steps.iter().zip(&names.steps);
        for (step, names) in steps.chain(self.update.iter().zip(&names.update)) {
            out.push((names.url.clone(), step.url.clone()));
            // Both are keyed by the step's header names, in the same order.
            for (value, template) in step.headers.values().zip(names.headers.values()) {
                out.push((template.clone(), value.clone()));
            }
            if let (Some(when), Some(name)) = (&step.when, &names.when) {
                out.push((name.clone(), condition_source(when)));
            }
            if let (Some(search), Some(name)) = (&step.search, &names.search) {
                out.push((name.clone(), search.text.clone()));
            }
        }
        out
    }
}

/// The names a step's templates are registered under, worked out once per step from where it
/// stands in the definition: the loader registers them and the engine renders them, so the
/// two cannot disagree about a name.
#[derive(Debug, Clone)]
pub struct StepSnippets {
    /// The URL (percent-encoded).
    pub url: String,
    /// The condition, when the step has one.
    pub when: Option<String>,
    /// The text its search looks for, when it searches.
    pub search: Option<String>,
    /// Its own headers', by header name.
    pub headers: BTreeMap<String, String>,
}

/// The step snippets of a definition: its create steps and its update steps, in order.
#[derive(Debug, Clone)]
pub struct DefinitionSteps {
    /// For `steps`.
    pub steps: Vec<StepSnippets>,
    /// For `update`.
    pub update: Vec<StepSnippets>,
}

impl DefinitionSteps {
    /// The names of every step of `definition`, shipped as type `kind`.
    pub fn of(kind: &str, definition: &Definition) -> Self {
        let phase = |phase: &str, steps: &[Step]| {
            steps
                .iter()
                .enumerate()
                .map(|(i, step)| StepSnippets::of(&format!("{kind}/{phase}/{i}"), step))
                .collect()
        };
        Self {
            steps: phase("steps", &definition.steps),
            update: phase("update", &definition.update),
        }
    }
}

impl StepSnippets {
    fn of(prefix: &str, step: &Step) -> Self {
        Self {
            url: format!("{prefix}/url{URL_SUFFIX}"),
            when: step.when.as_ref().map(|_| format!("{prefix}/when")),
            search: step.search.as_ref().map(|_| format!("{prefix}/search")),
            headers: step
                .headers
                .keys()
                .map(|name| (name.clone(), format!("{prefix}/headers/{name}")))
                .collect(),
        }
    }
}

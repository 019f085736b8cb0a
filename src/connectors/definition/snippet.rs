//! Names of a definition's snippet templates, shared by the loader and the engine.

use super::{Auth, Definition};
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
/// A step's URL (percent-encoded).
pub fn step_url(kind: &str, step: usize) -> String {
    format!("{kind}/steps/{step}/url{}", URL_SUFFIX)
}
/// A step's header.
pub fn step_header(kind: &str, step: usize, name: &str) -> String {
    format!("{kind}/steps/{step}/headers/{name}")
}
/// A step's condition.
pub fn step_when(kind: &str, step: usize) -> String {
    format!("{kind}/steps/{step}/when")
}
/// The text a step's search looks for.
pub fn step_search(kind: &str, step: usize) -> String {
    format!("{kind}/steps/{step}/search")
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
        for (i, step) in self.all_steps().enumerate() {
            out.push((step_url(kind, i), step.url.clone()));
            for (name, value) in &step.headers {
                out.push((step_header(kind, i, name), value.clone()));
            }
            if let Some(when) = &step.when {
                out.push((step_when(kind, i), condition_source(when)));
            }
            if let Some(search) = &step.search {
                out.push((step_search(kind, i), search.text.clone()));
            }
        }
        out
    }
}

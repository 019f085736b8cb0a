//! Checking a definition's shape, reporting every problem with its file and key.

use super::step::is_status;
use super::{Definition, Engine};
use crate::config::Problem;
use crate::render::URL_SUFFIX;

impl Definition {
    /// Checks the shape of the definition; every problem is reported with `file` as key prefix.
    pub fn validate(&self, file: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |key: String, message: String| problems.push(Problem { key, message });
        match self.engine {
            Engine::Http => {
                if self.steps.is_empty() {
                    problem(
                        format!("{file}: steps"),
                        "an http connector needs at least one step".into(),
                    );
                }
                if self.base_url.is_none() && !self.settings.contains_key("base_url") {
                    problem(
                        format!("{file}: base_url"),
                        "give a base_url template or a `base_url` setting".into(),
                    );
                }
            }
            Engine::Email => {
                if self.message.is_none() {
                    problem(
                        format!("{file}: message"),
                        "an email connector needs [message] templates".into(),
                    );
                }
                if !self.steps.is_empty() {
                    problem(
                        format!("{file}: steps"),
                        "an email connector has no HTTP steps".into(),
                    );
                }
            }
            Engine::File => {
                if self.body.is_none() {
                    problem(
                        format!("{file}: body"),
                        "a file connector needs a body template".into(),
                    );
                }
                if !self.steps.is_empty() {
                    problem(
                        format!("{file}: steps"),
                        "a file connector has no HTTP steps".into(),
                    );
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        let phases = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| (format!("{file}: steps[{i}]"), step))
            .chain(
                self.update
                    .iter()
                    .enumerate()
                    .map(|(i, step)| (format!("{file}: update[{i}]"), step)),
            );
        for (at, step) in phases {
            if step.name.is_empty()
                || !step
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                problem(
                    format!("{at}.name"),
                    "use letters, digits and `_` (templates read steps.NAME)".into(),
                );
            }
            if !names.insert(step.name.as_str()) {
                problem(
                    format!("{at}.name"),
                    format!("`{}` is used by an earlier step", step.name),
                );
            }
            if reqwest::Method::from_bytes(step.method.as_bytes()).is_err() {
                problem(
                    format!("{at}.method"),
                    format!("`{}` is not an HTTP method", step.method),
                );
            }
            for key in step.on_status.keys().filter(|k| !is_status(k)) {
                problem(
                    format!("{at}.on_status"),
                    format!("`{key}` is not an HTTP status"),
                );
            }
            if step
                .body
                .as_deref()
                .is_some_and(|b| b.ends_with(URL_SUFFIX))
            {
                problem(
                    format!("{at}.body"),
                    "name a template file from templates/".into(),
                );
            }
        }
        for key in self.on_status.keys().filter(|k| !is_status(k)) {
            problem(
                format!("{file}: on_status"),
                format!("`{key}` is not an HTTP status"),
            );
        }
        for name in &self.ledger {
            if !self.all_steps().any(|s| s.outputs.contains_key(name)) {
                problem(
                    format!("{file}: ledger"),
                    format!("`{name}` is not an output of any step"),
                );
            }
        }
        if !self.update.is_empty() && self.ledger.is_empty() {
            problem(
                format!("{file}: update"),
                "update steps need `ledger` names: they run once those are known".into(),
            );
        }
        for wait in &self.wait_headers {
            if reqwest::header::HeaderName::from_bytes(wait.header.as_bytes()).is_err() {
                problem(
                    format!("{file}: wait_headers"),
                    format!("`{}` is not a header name", wait.header),
                );
            }
        }
        for (name, spec) in &self.settings {
            if spec.secret && spec.default.is_some() {
                problem(
                    format!("{file}: settings.{name}"),
                    "a secret cannot have a default".into(),
                );
            }
        }
        problems
    }
}

//! The declarative HTTP engine: runs a [`Definition`]'s steps and classifies every answer.
//!
//! This is the one place that decides what an HTTP status means ([`classify`]), so no
//! connector can "send and assume success", and retries behave the same for every target.
//! Per step it renders the URL (values percent-encoded), headers, auth and body (JSON
//! checked), signs the body if the definition asks, sends it, and picks outputs out of the
//! answer by JSON pointer for later steps. Each success of a step that changes something at
//! the target is checkpointed before the next step, so a retry resumes at the step that
//! failed and never repeats a create that succeeded. Safe steps (GET, HEAD, OPTIONS: look-ups)
//! are not checkpointed and run again on every attempt, because their answer may have changed:
//! "no ticket yet" must be asked again after an attempt whose create lost its answer.

mod classify;
pub use classify::{failure_of, retry_after};
mod oauth;
mod outputs;
mod request;

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use tera::Context;
use tracing::Instrument as _;

use self::classify::{Answer, Verdict, classify, describe_transport_error, excerpt};
use self::outputs::outputs;
use self::request::Prepared;
use crate::config::Problem;
use crate::connectors::definition::snippet::{self, DefinitionSteps, StepSnippets};
use crate::connectors::definition::{Definition, Step};
use crate::connectors::{
    BuildContext, Checkpoint, Connector, DeliveryError, DeliveryJob, PlannedRequest, Receipt,
    Settings, StepOutcome, StepOutputs, StepReport,
};
use crate::render::{Reads, Renderer};

/// How much of an answer is kept for the attempt log.
const EXCERPT_BYTES: usize = 1024;

/// Answers larger than this are not read further (outputs come from the first part).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Headers whose values are credentials, masked whenever requests are printed.
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-api-token",
    "api-key",
    "cookie",
];

/// A connector instance run by the HTTP engine.
pub struct HttpConnector {
    name: String,
    kind: String,
    definition: Definition,
    /// Where its steps' templates are registered, step by step.
    snippets: DefinitionSteps,
    settings: Settings,
    base_url: String,
    /// What its templates read of what is costly to make for each attempt.
    reads: Reads,
    cx: BuildContext,
    /// The access token of an OAuth 2.0 definition and when to stop using it.
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for HttpConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConnector")
            .field("name", &self.name)
            .field("type", &self.kind)
            .field("base_url", &self.settings.mask(&self.base_url))
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Connector for HttpConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        &self.kind
    }

    fn reads(&self) -> Reads {
        self.reads
    }

    async fn deliver(
        &self,
        job: &DeliveryJob<'_>,
        checkpoint: &dyn Checkpoint,
    ) -> Result<Receipt, DeliveryError> {
        let (mut context, mut steps) = self.context(job)?;
        let mut token = self.access_token(&context, false).await?;
        let mut receipt = Receipt::default();
        let phase: Vec<(&Step, &StepSnippets)> = self.phase(job).collect();
        let count = phase.len();
        for (position, (step, names)) in phase.into_iter().enumerate() {
            let safe = step.is_lookup();
            if let Some(done) = job.completed.get(&step.name).filter(|_| !safe) {
                receipt
                    .steps
                    .push(report(step, StepOutcome::AlreadyDone, done.clone()));
                continue;
            }
            context.insert("steps", &steps);
            if !self.should_run(names, &context)? {
                receipt
                    .steps
                    .push(report(step, StepOutcome::Skipped, StepOutputs::new()));
                continue;
            }
            let search = names
                .search
                .as_ref()
                .map(|name| self.renderer().snippet(name, &context))
                .transpose()?;
            let prepared = self.prepare(step, names, &context, token.as_deref())?;
            let started = Instant::now();
            let mut result = self.send(step, prepared, search.as_deref()).await;
            if token.is_some() && result.as_ref().is_err_and(|e| e.status() == Some(401)) {
                // The token was revoked or expired early: one fresh token, one more try.
                token = self.access_token(&context, true).await?;
                let prepared = self.prepare(step, names, &context, token.as_deref())?;
                result = self.send(step, prepared, search.as_deref()).await;
            }
            tracing::debug!(step = %step.name, elapsed_ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "step answered");
            let (status, outputs) = result?;
            // The last step's success is kept by the attempt's own record, one commit less per
            // delivery. Were that record lost, the step would run again as after a crash right
            // after the answer, and its dedupe would find what it made.
            if !safe && position + 1 != count {
                checkpoint
                    .step_completed(&step.name, &outputs, &self.remembered(&outputs))
                    .await?;
            }
            steps.insert(step.name.clone(), outputs.clone());
            receipt
                .steps
                .push(report(step, StepOutcome::Sent(status), outputs));
        }
        // What was known before, updated by what this attempt's steps found or made.
        receipt.ledger = job.ledger.clone();
        for report in &receipt.steps {
            receipt.ledger.extend(self.remembered(&report.outputs));
        }
        Ok(receipt)
    }

    fn plan(&self, job: &DeliveryJob<'_>) -> Result<Vec<PlannedRequest>, DeliveryError> {
        let (mut context, steps) = self.context(job)?;
        context.insert("steps", &steps);
        let mut planned = Vec::new();
        for (step, names) in self.phase(job) {
            if !self.should_run(names, &context)? {
                continue;
            }
            let prepared = self.prepare(step, names, &context, None)?;
            let headers = prepared
                .headers
                .iter()
                .map(|(name, value)| {
                    let value = value.to_str().unwrap_or("(binary)");
                    let shown = if SENSITIVE_HEADERS.contains(&name.as_str()) {
                        "***".to_owned()
                    } else {
                        self.settings.mask(value)
                    };
                    (name.as_str().to_owned(), shown)
                })
                .collect();
            planned.push(PlannedRequest {
                step: step.name.clone(),
                method: prepared.method.to_string(),
                target: self.settings.mask(&prepared.rendered_url),
                headers,
                body: prepared.body.map(|b| self.settings.mask(&b)),
                depends_on_earlier: self.reads_earlier_steps(step),
            });
        }
        Ok(planned)
    }
}

fn report(step: &Step, outcome: StepOutcome, outputs: StepOutputs) -> StepReport {
    StepReport {
        step: step.name.clone(),
        outcome,
        outputs,
    }
}

impl HttpConnector {
    /// Resolves the base URL and keeps what the engine needs.
    ///
    /// # Errors
    /// When the base URL cannot be rendered or is not an absolute http(s) URL.
    pub fn build(
        name: &str,
        kind: &str,
        definition: &Definition,
        settings: Settings,
        cx: &BuildContext,
    ) -> Result<Self, Problem> {
        let problem = |message: String| Problem {
            key: format!("connectors.{name}.settings.base_url"),
            message,
        };
        let base_url = match settings.get("base_url").filter(|b| !b.is_empty()) {
            Some(base) => base.to_owned(),
            None => {
                let mut context = Context::new();
                context.insert("settings", settings.values());
                cx.renderer
                    .snippet(&snippet::base_url(kind), &context)
                    .map_err(|e| problem(e.to_string()))?
            }
        };
        match reqwest::Url::parse(&base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => {
                return Err(problem(format!(
                    "`{}` is not an http(s) URL",
                    settings.mask(&base_url)
                )));
            }
        }
        Ok(Self {
            name: name.to_owned(),
            kind: kind.to_owned(),
            definition: definition.clone(),
            snippets: DefinitionSteps::of(kind, definition),
            settings,
            base_url: base_url.trim_end_matches('/').to_owned(),
            reads: cx.renderer.reads(
                definition.all_steps().filter_map(|s| s.body.as_deref()),
                kind,
            ),
            cx: cx.clone(),
            token: tokio::sync::Mutex::new(None),
        })
    }

    fn renderer(&self) -> &Renderer {
        &self.cx.renderer
    }

    /// The Tera context of one attempt, with every step's outputs present (null until known),
    /// so templates may test `steps.find.ticket_id` before `find` ran.
    fn context(
        &self,
        job: &DeliveryJob<'_>,
    ) -> Result<(Context, BTreeMap<String, StepOutputs>), DeliveryError> {
        let context = job.render_context(
            self.renderer(),
            &self.name,
            &self.kind,
            &self.settings,
            &self.base_url,
            self.reads,
        )?;
        let mut steps: BTreeMap<String, StepOutputs> = self
            .definition
            .all_steps()
            .map(|s| {
                (
                    s.name.clone(),
                    s.outputs
                        .keys()
                        .map(|k| (k.clone(), serde_json::Value::Null))
                        .collect(),
                )
            })
            .collect();
        for (name, outputs) in job.completed {
            steps
                .entry(name.clone())
                .or_default()
                .extend(outputs.clone());
        }
        Ok((context, steps))
    }

    /// The steps of this attempt, with their snippet numbers: `update` once the ledger knows
    /// every name, unless a create step already completed (a delivery that began creating
    /// finishes creating).
    fn phase<'s>(
        &'s self,
        job: &DeliveryJob<'_>,
    ) -> impl Iterator<Item = (&'s Step, &'s StepSnippets)> {
        let d = &self.definition;
        let updating = !d.update.is_empty()
            && d.ledger
                .iter()
                .all(|name| job.ledger.get(name).is_some_and(|v| !v.is_null()))
            && !d.steps.iter().any(|s| job.completed.contains_key(&s.name));
        let (steps, names) = if updating {
            (&d.update[..], &self.snippets.update[..])
        } else {
            (&d.steps[..], &self.snippets.steps[..])
        };
        steps.iter().zip(names)
    }

    /// The ledger names among `outputs` that have a value.
    fn remembered(&self, outputs: &StepOutputs) -> StepOutputs {
        outputs
            .iter()
            .filter(|(name, value)| !value.is_null() && self.definition.ledger.contains(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }

    fn should_run(&self, names: &StepSnippets, context: &Context) -> Result<bool, DeliveryError> {
        match &names.when {
            Some(when) => Ok(self.renderer().condition(when, context)?),
            None => Ok(true),
        }
    }

    async fn send(
        &self,
        step: &Step,
        prepared: Prepared,
        search: Option<&str>,
    ) -> Result<(u16, StepOutputs), DeliveryError> {
        let mut request = self
            .cx
            .shared
            .client
            .request(prepared.method, prepared.url)
            .headers(prepared.headers);
        if let Some(body) = prepared.body {
            request = request.body(body);
        }
        let (status, headers, answer) = self.exchange(step, request).await?;
        Ok((status, outputs(step, &headers, &answer, search)))
    }

    /// Sends a request and reads the answer; a failure status comes back classified.
    async fn exchange(
        &self,
        step: &Step,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, HeaderMap, Vec<u8>), DeliveryError> {
        let transport = |e: reqwest::Error| DeliveryError::Transport {
            step: step.name.clone(),
            // without_url: a URL can carry a secret (Slack webhooks, tokens in queries).
            message: describe_transport_error(&e.without_url()),
        };
        self.cx.throttle().await;
        // The call to the target, as a child of the attempt's span in exported traces.
        let span =
            tracing::info_span!("upstream", step = %step.name, status = tracing::field::Empty);
        let started = Instant::now();
        let sent = request.send().instrument(span.clone()).await;
        self.cx
            .shared
            .metrics
            .upstream(&self.name, &step.name, started.elapsed());
        let mut response = sent.map_err(transport)?;
        let status = response.status().as_u16();
        // Signed: trace exporters keep unsigned numbers as text.
        span.record("status", i64::from(status));
        let headers = response.headers().clone();
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            answer.extend_from_slice(&chunk);
            if answer.len() >= MAX_ANSWER_BYTES {
                break;
            }
        }
        match classify(
            step,
            Answer {
                status,
                headers: &headers,
                body: &answer,
            },
            &self.definition,
            SystemTime::now(),
        ) {
            Verdict::Success => Ok((status, headers, answer)),
            Verdict::Failure { class, retry_after } => Err(DeliveryError::Status {
                step: step.name.clone(),
                status,
                class,
                retry_after,
                excerpt: self.settings.mask(&excerpt(&answer)),
            }),
        }
    }
}

impl HttpConnector {
    /// Whether a step's templates read answers of earlier steps (which a dry run lacks).
    fn reads_earlier_steps(&self, step: &Step) -> bool {
        let mentions = |t: &str| t.contains("steps.");
        mentions(&step.url)
            || step.when.as_deref().is_some_and(mentions)
            || step.headers.values().any(|h| mentions(h))
            || step
                .body
                .as_deref()
                .is_some_and(|b| self.renderer().template_mentions(b, "steps."))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use reqwest::header::{HeaderName, HeaderValue};

    use super::classify::retry_after;
    use super::*;
    use crate::connectors::Failure;
    use crate::connectors::definition::{OutputSpec, StatusRule, WaitHeader, WaitUnit};

    fn step(on_status: &[(&str, StatusRule)], success: &[u16]) -> Step {
        Step {
            name: "s".into(),
            method: "POST".into(),
            url: String::new(),
            body: None,
            headers: BTreeMap::new(),
            when: None,
            lookup: false,
            search: None,
            success: success.to_vec(),
            on_status: on_status
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            outputs: BTreeMap::new(),
        }
    }

    fn definition() -> Definition {
        toml_definition("description = \"d\"")
    }

    fn toml_definition(text: &str) -> Definition {
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(text))
            .extract()
            .unwrap()
    }

    fn verdict(s: &Step, status: u16, body: &[u8], d: &Definition) -> Verdict {
        let headers = HeaderMap::new();
        let answer = Answer {
            status,
            headers: &headers,
            body,
        };
        classify(s, answer, d, UNIX_EPOCH)
    }

    fn class_of(status: u16) -> Option<Failure> {
        match verdict(&step(&[], &[]), status, b"", &definition()) {
            Verdict::Success => None,
            Verdict::Failure { class, .. } => Some(class),
        }
    }

    #[test]
    fn statuses_are_classified_by_what_a_retry_can_change() {
        assert_eq!(class_of(201), None);
        for s in [408, 425, 500, 502, 503, 504] {
            assert_eq!(class_of(s), Some(Failure::Transient), "{s}");
        }
        assert_eq!(class_of(429), Some(Failure::RateLimited));
        assert_eq!(class_of(401), Some(Failure::Unhealthy));
        assert_eq!(class_of(403), Some(Failure::Unhealthy));
        for s in [400, 404, 409, 422, 501, 302] {
            assert_eq!(class_of(s), Some(Failure::Invalid), "{s}");
        }
    }

    #[test]
    fn definition_rules_override_the_engine() {
        let s = step(
            &[("409", StatusRule::Success), ("404", StatusRule::Retry)],
            &[201],
        );
        let d = definition();
        assert_eq!(verdict(&s, 409, b"", &d), Verdict::Success);
        assert!(matches!(
            verdict(&s, 404, b"", &d),
            Verdict::Failure {
                class: Failure::Transient,
                ..
            }
        ));
        assert!(matches!(
            verdict(&s, 200, b"", &d),
            Verdict::Failure {
                class: Failure::Invalid,
                ..
            }
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(
            retry_after(&headers, &[], UNIX_EPOCH),
            Some(Duration::from_secs(3))
        );
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Thu, 01 Jan 1970 00:01:40 GMT"),
        );
        assert_eq!(
            retry_after(&headers, &[], UNIX_EPOCH),
            Some(Duration::from_secs(100))
        );
        assert_eq!(
            retry_after(&headers, &[], UNIX_EPOCH + Duration::from_secs(500)),
            Some(Duration::ZERO)
        );
        // Some targets answer an RFC 3339 instant instead.
        headers.insert(
            "retry-after",
            HeaderValue::from_static("1970-01-01T00:01:40Z"),
        );
        assert_eq!(
            retry_after(&headers, &[], UNIX_EPOCH),
            Some(Duration::from_secs(100))
        );
        headers.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, &[], UNIX_EPOCH), None);
    }

    fn spec(source: &str) -> OutputSpec {
        OutputSpec::try_from(source.to_owned()).unwrap()
    }

    #[test]
    fn outputs_are_null_when_nothing_is_found() {
        let mut s = step(&[], &[]);
        s.outputs.insert("id".into(), spec("/tickets/0/id"));
        let none = HeaderMap::new();
        assert_eq!(
            outputs(&s, &none, br#"{"tickets": [{"id": 7}]}"#, None)["id"],
            serde_json::json!(7)
        );
        assert_eq!(
            outputs(&s, &none, br#"{"tickets": []}"#, None)["id"],
            serde_json::Value::Null
        );
        assert_eq!(
            outputs(&s, &none, b"not json", None)["id"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn outputs_read_headers_and_prose_and_take_the_first_alternative_found() {
        let mut s = step(&[], &[]);
        s.outputs.insert(
            "contact".into(),
            spec(r"/id | /message ~ Existing ID: (\d+)"),
        );
        s.outputs
            .insert("conversation".into(), spec("header:Resource-ID"));
        let mut headers = HeaderMap::new();
        headers.insert("resource-id", HeaderValue::from_static("123"));
        let conflict = br#"{"status":"error","message":"Contact already exists. Existing ID: 377651","category":"CONFLICT"}"#;
        let found = outputs(&s, &headers, conflict, None);
        assert_eq!(found["contact"], serde_json::json!("377651"));
        assert_eq!(found["conversation"], serde_json::json!("123"));
        assert_eq!(
            outputs(&s, &HeaderMap::new(), br#"{"id":"42"}"#, None)["contact"],
            serde_json::json!("42")
        );
        assert!(OutputSpec::try_from("ticket/id".to_owned()).is_err());
        assert!(OutputSpec::try_from("/m ~ (".to_owned()).is_err());
    }

    #[test]
    fn vendor_wait_headers_are_read_in_their_unit() {
        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        let wait = |header: &str, unit, value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                HeaderName::from_bytes(header.as_bytes()).unwrap(),
                HeaderValue::from_static(value),
            );
            let waits = [WaitHeader {
                header: header.into(),
                unit,
            }];
            retry_after(&headers, &waits, at)
        };
        let secs = Duration::from_secs;
        assert_eq!(
            wait("x-ratelimit-retry-after", WaitUnit::Seconds, "7"),
            Some(secs(7))
        );
        assert_eq!(
            wait("x-ratelimit-reset", WaitUnit::Epoch, "1030"),
            Some(secs(30))
        );
        assert_eq!(
            wait("x-ratelimit-reset", WaitUnit::Epoch, "10"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            wait(
                "x-hubspot-ratelimit-interval-milliseconds",
                WaitUnit::Milliseconds,
                "10000"
            ),
            Some(secs(10))
        );
        assert_eq!(
            wait("x-ratelimit-reset", WaitUnit::Date, "1970-01-01T00:17:00Z"),
            Some(secs(20))
        );
        assert_eq!(wait("x-ratelimit-reset", WaitUnit::Epoch, "soon"), None);
    }

    #[test]
    fn a_rule_can_ask_for_a_text_in_the_answer_and_throttling_gets_the_default_wait() {
        let s = step(
            &[
                ("403", StatusRule::Unhealthy),
                ("403:REQUEST_LIMIT_EXCEEDED", StatusRule::Throttled),
            ],
            &[],
        );
        let d = toml_definition("description = \"d\"\nthrottle_wait = \"5m\"");
        let limited = br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        assert_eq!(
            verdict(&s, 403, limited, &d),
            Verdict::Failure {
                class: Failure::RateLimited,
                retry_after: Some(Duration::from_secs(300)),
            }
        );
        let denied = br#"[{"message":"no","errorCode":"INSUFFICIENT_ACCESS"}]"#;
        assert_eq!(
            verdict(&s, 403, denied, &d),
            Verdict::Failure {
                class: Failure::Unhealthy,
                retry_after: None,
            }
        );
    }

    #[test]
    fn a_search_reads_the_first_item_containing_the_marker() {
        let mut s = step(&[], &[]);
        s.search = Some(crate::connectors::definition::Search {
            items: "/data".into(),
            text: String::new(),
            field: None,
        });
        s.outputs.insert("note_id".into(), spec("/id"));
        let answer =
            br#"{"data": [{"id": 1, "content": "other"}, {"id": 2, "content": "<p>cb12ab</p>"}]}"#;
        let none = HeaderMap::new();
        assert_eq!(outputs(&s, &none, answer, Some("cb12ab"))["note_id"], 2);
        assert!(outputs(&s, &none, answer, Some("cb99"))["note_id"].is_null());
        assert!(outputs(&s, &none, answer, Some(""))["note_id"].is_null());
    }

    /// A fuzzy search by e-mail answers the people whose address merely contains it first.
    #[test]
    fn a_search_by_field_reads_the_item_holding_exactly_that_value() {
        let mut s = step(&[], &[]);
        s.search = Some(crate::connectors::definition::Search {
            items: "/values".into(),
            text: String::new(),
            field: Some("/emails".into()),
        });
        s.outputs.insert("account_id".into(), spec("/id"));
        let answer = br#"{"values": [
            {"id": "a", "emails": ["jo.bob@example.com"]},
            {"id": "b", "emails": "bob@example.com"},
            {"id": "c", "emails": ["x@example.com", "Bob@Example.com"]}
        ]}"#;
        let none = HeaderMap::new();
        let found = |text| outputs(&s, &none, answer, Some(text))["account_id"].clone();
        assert_eq!(found("bob@example.com"), "b");
        assert_eq!(found("BOB@example.com"), "b");
        assert_eq!(found("x@example.com"), "c");
        assert!(found("example.com").is_null());
    }
}

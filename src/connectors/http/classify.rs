//! What an answer means: the one place that maps a status (and the definition's own rules)
//! to delivered, retry later, or dead; and how long a throttled target asks us to wait.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

use super::EXCERPT_BYTES;
use crate::connectors::Failure;
use crate::connectors::definition::{Definition, StatusRule, Step, WaitHeader, WaitUnit};

/// An answer to classify.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: &'a HeaderMap,
    /// The body (or its first part).
    pub body: &'a [u8],
}

/// The engine's reading of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The step succeeded.
    Success,
    /// It failed, with a class and maybe a requested wait.
    Failure {
        /// How to treat it.
        class: Failure,
        /// The target's `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
}

/// Classifies an answer. A definition's `on_status` rule wins; then the step's success
/// statuses; then the engine's classes: 408, 425, 429 and 5xx (but 501, which will not
/// change) are retried; 401 and 403 pause the connector; other 4xx are permanent. A
/// 3xx that reqwest did not follow is a misconfiguration, hence permanent. A throttling
/// answer that names no wait gets the definition's `throttle_wait`.
pub fn classify(
    step: &Step,
    answer: Answer<'_>,
    definition: &Definition,
    now: SystemTime,
) -> Verdict {
    let status = answer.status;
    let retry_after = retry_after(answer.headers, &definition.wait_headers, now);
    let failure = |class| Verdict::Failure {
        class,
        retry_after: match class {
            Failure::RateLimited => retry_after.or(definition.throttle_wait),
            _ => retry_after,
        },
    };
    match step.rule_for(status, answer.body) {
        Some(StatusRule::Success) => return Verdict::Success,
        Some(StatusRule::Retry) => return failure(Failure::Transient),
        Some(StatusRule::Dead) => return failure(Failure::Invalid),
        Some(StatusRule::Unhealthy) => return failure(Failure::Unhealthy),
        Some(StatusRule::Throttled) => return failure(Failure::RateLimited),
        None => {}
    }
    if step.is_success(status) {
        return Verdict::Success;
    }
    failure(failure_of(status))
}

/// What a failure status means when nothing more specific says: 408, 425, 429 and 5xx (but
/// 501 and 505, which will not change) are worth another try; 401 and 403 are the
/// credentials' fault; other statuses are the request's. Connectors and the fetch stage
/// (`sources::api`) judge every answer by this.
pub fn failure_of(status: u16) -> Failure {
    match status {
        429 => Failure::RateLimited,
        408 | 425 => Failure::Transient,
        501 | 505 => Failure::Invalid,
        500..=599 => Failure::Transient,
        401 | 403 => Failure::Unhealthy,
        _ => Failure::Invalid,
    }
}

/// How long the target asks us to wait: `Retry-After` (seconds or an HTTP date), else the
/// definition's wait headers in order. An instant in the past means no wait.
pub fn retry_after(headers: &HeaderMap, waits: &[WaitHeader], now: SystemTime) -> Option<Duration> {
    let standard = WaitHeader {
        header: reqwest::header::RETRY_AFTER.as_str().to_owned(),
        unit: WaitUnit::Seconds,
    };
    std::iter::once(&standard).chain(waits).find_map(|wait| {
        let value = headers.get(wait.header.as_str())?.to_str().ok()?.trim();
        // Retry-After may be either; a vendor's header is what its definition says.
        match wait_from(value, wait.unit, now) {
            None if wait.header == standard.header => wait_from(value, WaitUnit::Date, now),
            found => found,
        }
    })
}

pub(super) static HTTP_DATE: jiff::fmt::rfc2822::DateTimeParser =
    jiff::fmt::rfc2822::DateTimeParser::new();

pub(super) fn wait_from(value: &str, unit: WaitUnit, now: SystemTime) -> Option<Duration> {
    let until = |at: SystemTime| at.duration_since(now).unwrap_or(Duration::ZERO);
    let number = || {
        value
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    match unit {
        WaitUnit::Seconds => number().map(Duration::from_secs_f64),
        WaitUnit::Milliseconds => number().map(|ms| Duration::from_secs_f64(ms / 1000.0)),
        WaitUnit::Epoch => {
            number().map(|s| until(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s)))
        }
        // An HTTP date (RFC 9110's IMF-fixdate is RFC 2822's form), else RFC 3339.
        WaitUnit::Date => HTTP_DATE
            .parse_timestamp(value.trim())
            .or_else(|_| value.trim().parse::<jiff::Timestamp>())
            .ok()
            .and_then(|at| SystemTime::try_from(at).ok())
            .map(until),
    }
}

pub(super) fn excerpt(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(&answer[..answer.len().min(EXCERPT_BYTES)]);
    text.trim().to_owned()
}

pub(super) fn describe_transport_error(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut message = what.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

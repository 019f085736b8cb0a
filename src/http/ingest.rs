//! `POST /hooks/smartsupp/{token}` (or `?token=`): receive a conversation, keep it, answer.
//!
//! Smartsupp's POST hook is unsigned, documents no retries, and is configured by e-mailing
//! Smartsupp a URL: the token can only travel in the URL, and a chat we do not store before
//! answering may be gone for good. Hence:
//! - the token is compared in constant time (over SHA-256 digests, so its length does not
//!   leak either) and never logged; the request span names the route, not the URI;
//! - 2xx only after the commit; a store failure answers 503 so a retrying sender resends;
//! - a body that does not parse is kept (quarantined) and answered 400 with the reason;
//! - an identical resend answers 200 `duplicate`; a changed body is a new version.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::model::Timestamp;
use crate::sources::Source;
use crate::store::{IngestOutcome, NewVersion, Quarantined};

/// The accepted tokens of a source, kept as digests.
#[derive(Clone)]
pub struct SourceTokens {
    digests: Arc<Vec<[u8; 32]>>,
}

impl std::fmt::Debug for SourceTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceTokens({} accepted)", self.digests.len())
    }
}

impl SourceTokens {
    /// Accepts any of `tokens` (the current one and, during a rotation, the previous).
    pub fn new<'a>(tokens: impl IntoIterator<Item = &'a SecretString>) -> Self {
        let digests = tokens
            .into_iter()
            .map(|t| digest(t.expose_secret().as_bytes()))
            .collect();
        Self {
            digests: Arc::new(digests),
        }
    }

    /// Whether `candidate` is an accepted token, in time independent of where it differs.
    pub fn accepts(&self, candidate: &str) -> bool {
        let candidate = digest(candidate.as_bytes());
        self.digests
            .iter()
            .fold(false, |found, d| found | bool::from(d.ct_eq(&candidate)))
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `?token=` for senders that cannot put it in the path.
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// `POST /hooks/smartsupp/{token}`.
pub async fn smartsupp_path(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    receive(&state, Source::Smartsupp, &token, &headers, body).await
}

/// `POST /hooks/smartsupp?token=…`.
pub async fn smartsupp_query(
    State(state): State<AppState>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    receive(
        &state,
        Source::Smartsupp,
        query.token.as_deref().unwrap_or_default(),
        &headers,
        body,
    )
    .await
}

async fn receive(
    state: &AppState,
    source: Source,
    token: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tokens = state
        .sources
        .get(source)
        .ok_or(ApiError::UnknownSource(source.name()))?;
    if !tokens.accepts(token) {
        // Loud: a mistyped URL at the chat product loses every chat silently otherwise.
        tracing::warn!(
            source = source.name(),
            "hook refused: wrong token; check the URL the chat product posts to"
        );
        return Err(ApiError::Unauthorized);
    }
    let body = body.map_err(|rejection| match rejection {
        BytesRejection::FailedToBufferBody(e) if is_too_large(&e) => ApiError::TooLarge {
            limit: state.max_body_bytes,
        },
        other => ApiError::BadBody(other.body_text()),
    })?;
    let received_at = Timestamp::now();
    let clock = std::time::Instant::now();
    let mut parsed = match source.parse(&body) {
        Ok(parsed) => parsed,
        Err(error) => {
            let reason = error.to_string();
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let quarantine_id = state
                .store
                .quarantine(Quarantined {
                    source: source.name().to_owned(),
                    reason: reason.clone(),
                    body: state.redactor.body(&body).unwrap_or_else(|| body.to_vec()),
                    content_type,
                    received_at,
                })
                .await?;
            state.metrics.quarantined(source.name());
            state.metrics.ack(source.name(), clock.elapsed());
            // The reason is not logged: a parser's message can quote the body, and a log line
            // cannot be erased by `forget`. It is in the answer and the quarantine.
            tracing::warn!(
                source = source.name(),
                quarantine_id,
                "payload refused and quarantined; the reason went back to the sender and is kept with the body"
            );
            return Err(ApiError::Unparseable {
                reason,
                quarantine_id,
            });
        }
    };
    let redacted = state
        .redactor
        .conversation(&mut parsed.conversation, &mut parsed.raw);
    let conversation_id = parsed.conversation.id.to_string();
    let status = parsed.conversation.status.as_str();
    let connectors = state.registry.current().matching(&parsed.conversation, &parsed.raw).unwrap_or_else(|e| {
        // The conversation is still stored; fixing the filter and replaying delivers it.
        tracing::error!(conversation_id, error = %e, "a connector filter failed; no deliveries created");
        Vec::new()
    });
    let mut version = NewVersion::new(parsed.conversation, body.to_vec(), connectors, received_at)?;
    // The digest stays that of the body as sent, so a resend is still a duplicate.
    if let Some(redacted) = redacted {
        version.raw = redacted;
    }
    let outcome = state.store.ingest(version).await?;
    state.metrics.ack(source.name(), clock.elapsed());
    match outcome {
        IngestOutcome::Stored {
            version,
            deliveries,
        } => {
            state.metrics.received(source.name(), status);
            state.wake.notify_one();
            // Debug, not info: each delivery's outcome is logged at info with the same
            // conversation id, and at thousands of acks per second a line per ack is a
            // measurable share of the request's cost.
            tracing::debug!(
                source = source.name(),
                conversation_id,
                version,
                deliveries,
                "conversation stored"
            );
            Ok((
                StatusCode::ACCEPTED,
                Json(
                    json!({ "conversation": conversation_id, "version": version, "deliveries": deliveries }),
                ),
            ))
        }
        IngestOutcome::Duplicate { version } => {
            tracing::debug!(
                source = source.name(),
                conversation_id,
                version,
                "duplicate ignored"
            );
            Ok((
                StatusCode::OK,
                Json(
                    json!({ "conversation": conversation_id, "version": version, "deliveries": 0, "duplicate": true }),
                ),
            ))
        }
    }
}

fn is_too_large(error: &axum::extract::rejection::FailedToBufferBody) -> bool {
    matches!(
        error,
        axum::extract::rejection::FailedToBufferBody::LengthLimitError(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly_and_rotation_keeps_the_previous_one() {
        let current = SecretString::from("new-token");
        let previous = SecretString::from("old-token");
        let tokens = SourceTokens::new([&current, &previous]);
        assert!(tokens.accepts("new-token"));
        assert!(tokens.accepts("old-token"));
        assert!(!tokens.accepts("new-toke"));
        assert!(!tokens.accepts(""));
        assert!(!format!("{tokens:?}").contains("token\""));
    }
}

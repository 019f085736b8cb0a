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
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::AppState;
use super::error::ApiError;
use crate::model::Timestamp;
use crate::sources::Source;
use crate::store::{IngestOutcome, NewVersion, Quarantined};

/// What a token may post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenScope {
    /// Chats of any account.
    AnyAccount,
    /// Only chats of these accounts: one customer's token in a shared deployment.
    Tenant {
        /// The customer.
        name: String,
        /// Its Smartsupp `accountId`s.
        accounts: Vec<String>,
    },
}

impl TokenScope {
    /// Whether a chat of `account` may come with this token.
    pub fn admits(&self, account: &str) -> bool {
        match self {
            Self::AnyAccount => true,
            Self::Tenant { accounts, .. } => accounts.iter().any(|a| a == account),
        }
    }
}

/// The accepted tokens of a source, kept as digests, each with what it may post.
#[derive(Clone)]
pub struct SourceTokens {
    tokens: Arc<Vec<([u8; 32], TokenScope)>>,
}

impl std::fmt::Debug for SourceTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceTokens({} accepted)", self.tokens.len())
    }
}

impl SourceTokens {
    /// Accepts any of `tokens` (the current one and, during a rotation, the previous) for
    /// chats of any account.
    pub fn new<'a>(tokens: impl IntoIterator<Item = &'a SecretString>) -> Self {
        Self::scoped(tokens.into_iter().map(|t| (t, TokenScope::AnyAccount)))
    }

    /// Accepts each token for what its scope admits.
    pub fn scoped<'a>(tokens: impl IntoIterator<Item = (&'a SecretString, TokenScope)>) -> Self {
        let tokens = tokens
            .into_iter()
            .map(|(t, scope)| (digest(t.expose_secret().as_bytes()), scope))
            .collect();
        Self {
            tokens: Arc::new(tokens),
        }
    }

    /// The scope of `candidate` if it is an accepted token. Every token is compared, in
    /// time independent of where they differ.
    pub fn scope(&self, candidate: &str) -> Option<&TokenScope> {
        let candidate = digest(candidate.as_bytes());
        // 1 + the index of the matching token, chosen without branching on secret data.
        let mut found = 0u32;
        for (index, (d, _)) in self.tokens.iter().enumerate() {
            let position = u32::try_from(index + 1).unwrap_or(u32::MAX);
            found.conditional_assign(&position, d.ct_eq(&candidate));
        }
        let index = usize::try_from(found).ok()?.checked_sub(1)?;
        self.tokens.get(index).map(|(_, scope)| scope)
    }

    /// Whether `candidate` is an accepted token.
    pub fn accepts(&self, candidate: &str) -> bool {
        self.scope(candidate).is_some()
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
    let Some(scope) = tokens.scope(token) else {
        // Loud: a mistyped URL at the chat product loses every chat silently otherwise.
        tracing::warn!(
            source = source.name(),
            "hook refused: wrong token; check the URL the chat product posts to"
        );
        return Err(ApiError::Unauthorized);
    };
    let body = body.map_err(|rejection| match rejection {
        BytesRejection::FailedToBufferBody(e) if is_too_large(&e) => ApiError::TooLarge {
            limit: state.max_body_bytes,
        },
        other => ApiError::BadBody(other.body_text()),
    })?;
    let received_at = Timestamp::now();
    let clock = std::time::Instant::now();
    // Keeps a refused body, with why, and says where.
    let body = &body;
    let refuse = |reason: String| async move {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let quarantine_id = state
            .store
            .quarantine(Quarantined {
                source: source.name().to_owned(),
                reason: reason.clone(),
                body: state.redactor.body(body).unwrap_or_else(|| body.to_vec()),
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
        Ok::<_, ApiError>((reason, quarantine_id))
    };
    let registry = state.registry.current();
    // The document as JSON only for a redaction rule or a filter that reads `raw`.
    let needs_raw = !state.redactor.is_empty() || registry.filters_read_raw();
    let parsed = if needs_raw {
        source.parse(body).map(|p| (p.conversation, p.raw))
    } else {
        source.conversation(body).map(|c| (c, Value::Null))
    };
    let (mut conversation, mut raw) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            let (reason, quarantine_id) = refuse(error.to_string()).await?;
            return Err(ApiError::Unparseable {
                reason,
                quarantine_id,
            });
        }
    };
    if let TokenScope::Tenant { name, .. } = scope
        && !scope.admits(&conversation.account_id)
    {
        let (reason, quarantine_id) = refuse(format!(
            "account {} is not one of tenant `{name}`'s accounts; this URL takes only its chats",
            conversation.account_id
        ))
        .await?;
        return Err(ApiError::OtherTenant {
            reason,
            quarantine_id,
        });
    }
    let redacted = state.redactor.conversation(&mut conversation, &mut raw);
    let conversation_id = conversation.id.to_string();
    let status = conversation.status.as_str();
    let connectors = registry.matching(&conversation, &raw).unwrap_or_else(|e| {
        // The conversation is still stored; fixing the filter and replaying delivers it.
        tracing::error!(conversation_id, error = %e, "a connector filter failed; no deliveries created");
        Vec::new()
    });
    let mut version = NewVersion::new(conversation, body.to_vec(), connectors, received_at)?;
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

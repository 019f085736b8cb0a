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

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::intake::{Admitted, Intake, Refusal};
use crate::model::Timestamp;
use crate::sources::Source;
use crate::sources::auth::TokenScope;
use crate::store::{IngestOutcome, Quarantined};
use crate::telemetry::Escaped;

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
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    receive(&state, Source::Smartsupp, &token, &headers, body).await
}

/// `POST /hooks/smartsupp?token=…`.
pub async fn smartsupp_query(
    State(state): State<AppState>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    body: Body,
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

/// The handlers take the body unread: nothing of it is read before the token is checked, so
/// a sender without the token costs a header's worth of memory, whatever it claims to send.
async fn receive(
    state: &AppState,
    source: Source,
    token: &str,
    headers: &HeaderMap,
    body: Body,
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
    let body = read_body(body, state.max_body_bytes).await?;
    let received_at = Timestamp::now();
    let clock = std::time::Instant::now();
    let registry = state.registry.current();
    let intake = Intake {
        store: state.store.as_ref(),
        registry: &registry,
        redactor: &state.redactor,
        wake: Some(&state.wake),
    };
    let refused_account = |account: &str| match scope {
        TokenScope::Tenant { name, .. } if !scope.admits(account) => Some(format!(
            "account {account} is not one of tenant `{name}`'s accounts; this URL takes only its chats"
        )),
        _ => None,
    };
    let admitted = intake
        .admit(source, body.clone(), refused_account, received_at)
        .await?;
    let answered = match admitted {
        Ok(admitted) => Ok(answer(state, source, admitted)),
        Err(refusal) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Err(refuse(state, source, refusal, &body, content_type, received_at).await?)
        }
    };
    state.metrics.ack(source.name(), clock.elapsed());
    answered
}

/// The answer to a chat kept: 202 with its version and deliveries, or 200 for a resend.
fn answer(state: &AppState, source: Source, admitted: Admitted) -> (StatusCode, Json<Value>) {
    let Admitted {
        conversation_id,
        status,
        outcome,
    } = admitted;
    match outcome {
        IngestOutcome::Stored {
            version,
            deliveries,
            merged,
        } => {
            state.metrics.received(source.name(), status);
            // Debug, not info: each delivery's outcome is logged at info with the same
            // conversation id, and at thousands of acks per second a line per ack is a
            // measurable share of the request's cost.
            tracing::debug!(
                source = source.name(),
                conversation_id = %Escaped(&conversation_id),
                version,
                deliveries,
                merged,
                "conversation stored"
            );
            (
                StatusCode::ACCEPTED,
                Json(
                    json!({ "conversation": conversation_id, "version": version, "deliveries": deliveries, "merged": merged }),
                ),
            )
        }
        IngestOutcome::Duplicate { version } => {
            tracing::debug!(
                source = source.name(),
                conversation_id = %Escaped(&conversation_id),
                version,
                "duplicate ignored"
            );
            (
                StatusCode::OK,
                Json(
                    json!({ "conversation": conversation_id, "version": version, "deliveries": 0, "duplicate": true }),
                ),
            )
        }
    }
}

/// A refused body kept in quarantine (redacted), and the error that tells the sender why:
/// 400 unparseable, 403 another tenant's account. A store failure instead answers 503, so
/// that the sender sends it again.
async fn refuse(
    state: &AppState,
    source: Source,
    refusal: Refusal,
    body: &Bytes,
    content_type: Option<String>,
    received_at: Timestamp,
) -> Result<ApiError, ApiError> {
    let quarantine_id = state
        .store
        .quarantine(Quarantined {
            source: source.name().to_owned(),
            reason: refusal.reason().to_owned(),
            body: state.redactor.body(body).unwrap_or_else(|| body.to_vec()),
            content_type,
            received_at,
        })
        .await?;
    state.metrics.quarantined(source.name(), refusal.kind());
    // The reason is not logged: a parser's message can quote the body, and a log line
    // cannot be erased by `forget`. It is in the answer and the quarantine.
    tracing::warn!(
        source = source.name(),
        quarantine_id,
        "payload refused and quarantined; the reason went back to the sender and is kept with the body"
    );
    let reason = refusal.reason().to_owned();
    Ok(match refusal {
        Refusal::Unparseable(_) => ApiError::Unparseable {
            reason,
            quarantine_id,
        },
        Refusal::OtherAccount(_) => ApiError::OtherTenant {
            reason,
            quarantine_id,
        },
    })
}

/// Reads the whole body, up to `limit` bytes (413 past it). A body that stops arriving is
/// cut off by the server's `body_read_timeout` (408).
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(cause) = source {
            if cause.is::<http_body_util::LengthLimitError>() {
                return ApiError::TooLarge { limit };
            }
            if cause.is::<super::BodyTimeout>() {
                return ApiError::BodyTimeout;
            }
            source = cause.source();
        }
        ApiError::BadBody(e.to_string())
    })
}

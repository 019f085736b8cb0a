//! `POST /hooks/{name}` and `POST /hooks/{name}/{token}` (or `?token=`): receive a chat
//! product's webhook, keep what it carries, answer.
//!
//! Each configured source (`[sources.NAME]`) proves its requests its product's way, and
//! nothing is parsed or stored before that proof holds:
//! - products that can only be given a URL (Smartsupp's POST hook, Olark) put a token in
//!   it; it is compared in constant time (over SHA-256 digests, so its length does not leak
//!   either) before the body is read, and never logged: the request span names the route,
//!   not the URI;
//! - signing products (Smartsupp v2, tawk.to, Crisp, Tidio) are checked over the raw bytes
//!   (`sources::signature`), LiveChat by the secret in its body; a failed check is 401 and
//!   stores nothing, and a source without its secret refuses every request.
//!
//! Then:
//! - 2xx only after the commit; a store failure answers 503 so a retrying sender resends;
//! - an event that ends no conversation (a message, a chat starting) is answered 200
//!   `ignored` and nothing is kept: the products re-deliver on anything but 2xx;
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
use crate::intake::{Admitted, Intake, Intaken, Refusal};
use crate::model::Timestamp;
use crate::sources::auth::TokenScope;
use crate::sources::instance::Instance;
use crate::store::{IngestOutcome, Quarantined};
use crate::telemetry::Escaped;

/// `?token=` for senders that cannot put it in the path.
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// `POST /hooks/{name}/{token}`.
pub async fn with_token(
    State(state): State<AppState>,
    Path((name, token)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    receive(&state, &name, Some(&token), &headers, body).await
}

/// `POST /hooks/{name}` (signed sources; `?token=…` for the others).
pub async fn without_token(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    receive(&state, &name, query.token.as_deref(), &headers, body).await
}

/// The handlers take the body unread: a URL-token source reads nothing of it before the
/// token is checked, so a sender without the token costs a header's worth of memory,
/// whatever it claims to send. A signed one must read it to check it, within
/// `max_body_bytes` and the body's deadline like any other.
async fn receive(
    state: &AppState,
    name: &str,
    token: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let instance = state
        .sources
        .get(name)
        .ok_or_else(|| ApiError::UnknownSource(name.to_owned()))?;
    let received_at = Timestamp::now();
    let clock = std::time::Instant::now();
    let (sent, scope) = if instance.takes_url_token() {
        let Some(scope) = instance.token_scope(token.unwrap_or_default()) else {
            // Loud: a mistyped URL at the chat product loses every chat silently otherwise.
            tracing::warn!(
                source = name,
                "hook refused: wrong token; check the URL the chat product posts to"
            );
            return Err(ApiError::Unauthorized);
        };
        (read_body(body, state.max_body_bytes).await?, Some(scope))
    } else {
        if token.is_some() {
            // A signed source has no token route: its URL is /hooks/NAME.
            return Err(ApiError::NotFound(format!(
                "{} sources are posted to /hooks/{name}, without a token",
                instance.source
            )));
        }
        let body = read_body(body, state.max_body_bytes).await?;
        match instance.verify_body(headers, body, received_at) {
            Ok(kept) => (kept, None),
            Err(refused) => {
                tracing::warn!(
                    source = name,
                    reason = %refused,
                    "hook refused: not signed by the configured secret; check the secret given to the product"
                );
                return Err(ApiError::BadSignature(refused.to_string()));
            }
        }
    };
    let registry = state.registry.current();
    let intake = Intake {
        store: state.store.as_ref(),
        registry: &registry,
        redactor: &state.redactor,
        wake: Some(&state.wake),
        fetch_wake: Some(&state.fetch_wake),
    };
    let refused_account = |account: &str| match scope {
        Some(scope @ TokenScope::Tenant { name, .. }) if !scope.admits(account) => Some(format!(
            "account {account} is not one of tenant `{name}`'s accounts; this URL takes only its chats"
        )),
        _ => None,
    };
    let admitted = intake
        .admit(instance, sent.clone(), refused_account, received_at)
        .await?;
    let answered = match admitted {
        Ok(Intaken::Stored(admitted)) => Ok(answer(state, instance, admitted)),
        Ok(Intaken::Fetching {
            conversation_id,
            enqueued,
        }) => {
            tracing::debug!(source = name, conversation_id = %Escaped(&conversation_id), fetch = enqueued.id, duplicate = enqueued.duplicate, "event kept; its conversation is fetched");
            Ok(if enqueued.duplicate {
                (
                    StatusCode::OK,
                    Json(
                        json!({ "conversation": conversation_id, "fetch": enqueued.id, "deliveries": 0, "duplicate": true }),
                    ),
                )
            } else {
                (
                    StatusCode::ACCEPTED,
                    Json(
                        json!({ "conversation": conversation_id, "fetch": enqueued.id, "deliveries": 0 }),
                    ),
                )
            })
        }
        Ok(Intaken::Ignored(event)) => {
            tracing::debug!(source = name, event = %Escaped(&event), "event acknowledged and ignored");
            state.metrics.ignored(name);
            Ok((
                StatusCode::OK,
                Json(json!({ "ignored": event, "deliveries": 0 })),
            ))
        }
        Err(refusal) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Err(refuse(state, instance, refusal, &sent, content_type, received_at).await?)
        }
    };
    state.metrics.ack(name, clock.elapsed());
    answered
}

/// The answer to a chat kept: 202 with its version and deliveries, or 200 for a resend.
fn answer(state: &AppState, source: &Instance, admitted: Admitted) -> (StatusCode, Json<Value>) {
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
            state.metrics.received(source.name.as_str(), status);
            // Debug, not info: each delivery's outcome is logged at info with the same
            // conversation id, and at thousands of acks per second a line per ack is a
            // measurable share of the request's cost.
            tracing::debug!(
                source = %source.name,
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
                source = %source.name,
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
    source: &Instance,
    refusal: Refusal,
    body: &Bytes,
    content_type: Option<String>,
    received_at: Timestamp,
) -> Result<ApiError, ApiError> {
    let quarantine_id = state
        .store
        .quarantine(Quarantined {
            source: source.name.as_str().to_owned(),
            reason: refusal.reason().to_owned(),
            body: state.redactor.body(body).unwrap_or_else(|| body.to_vec()),
            content_type,
            received_at,
        })
        .await?;
    state
        .metrics
        .quarantined(source.name.as_str(), refusal.kind());
    // The reason is not logged: a parser's message can quote the body, and a log line
    // cannot be erased by `forget`. It is in the answer and the quarantine.
    tracing::warn!(
        source = %source.name,
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

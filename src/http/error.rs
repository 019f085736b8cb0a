//! `ApiError`: the one place that decides status codes for the HTTP API.
//!
//! Causes of 5xx answers are logged here and never sent to the caller.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// Everything an HTTP handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: missing or wrong token.
    #[error("invalid or missing token")]
    Unauthorized,
    /// 401: a signed request whose signature (or body secret) does not prove it is the
    /// product's; the reason names the header or the mismatch, never a secret.
    #[error("request not signed by the configured secret: {0}")]
    BadSignature(String),
    /// 404: the source is not configured.
    #[error("source `{0}` is not configured")]
    UnknownSource(String),
    /// 400: the body is not a payload of this source; it was quarantined.
    #[error("{reason}")]
    Unparseable {
        /// Why, for the sender.
        reason: String,
        /// Where it was kept.
        quarantine_id: i64,
    },
    /// 403: a tenant's token with a chat of another account; it was quarantined.
    #[error("{reason}")]
    OtherTenant {
        /// Why, for the sender.
        reason: String,
        /// Where it was kept.
        quarantine_id: i64,
    },
    /// 413: larger than `server.max_body_bytes`.
    #[error("body larger than {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// 408: the body did not arrive within `server.body_read_timeout`.
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// 400: the body could not be read.
    #[error("cannot read body: {0}")]
    BadBody(String),
    /// 400: a request the admin API cannot act on, with what to change.
    #[error("{0}")]
    Invalid(String),
    /// 403: authenticated, but the request may not come this way (a form from another site).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such conversation or delivery.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request does not fit the object's state.
    #[error("{0}")]
    Conflict(String),
    /// 422: a template or definition does not parse or render.
    #[error("{0}")]
    Unrenderable(String),
    /// 500: something on this machine failed (a folder that cannot be cleaned); logged, not
    /// sent.
    #[error("{0}")]
    Internal(String),
    /// 503: the store could not commit; the sender should send again.
    #[error("storage unavailable")]
    Unavailable(#[from] StoreError),
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized | Self::BadSignature(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::OtherTenant { .. } => StatusCode::FORBIDDEN,
            Self::UnknownSource(_) | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unparseable { .. } | Self::BadBody(_) | Self::Invalid(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unrenderable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the caller is told: the cause of a 503 is logged here instead.
    pub fn public_message(&self) -> String {
        match self {
            Self::Unavailable(cause) => {
                tracing::error!(error = %cause, "store failed; answering 503 so the sender retries");
                "storage unavailable; send again later".to_owned()
            }
            Self::Internal(cause) => {
                tracing::error!(error = %cause, "request failed");
                "internal error; see the service's log".to_owned()
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            Self::Unparseable {
                reason,
                quarantine_id,
            }
            | Self::OtherTenant {
                reason,
                quarantine_id,
            } => {
                json!({ "error": reason, "quarantined": quarantine_id })
            }
            other => json!({ "error": other.public_message() }),
        };
        (status, Json(body)).into_response()
    }
}

//! How a delivery attempt fails, classified once so the worker's retry policy is the same
//! for every target.

use std::time::Duration;

use crate::render::RenderError;

/// How the worker should treat a failed attempt. The engine classifies each answer once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying with backoff: connection errors, timeouts, 408, 425, 5xx.
    Transient,
    /// The target asked us to slow down (429): retry after its wait, without using up the
    /// attempt budget.
    RateLimited,
    /// Credentials or endpoint rejected (401/403): the connector is paused and its
    /// deliveries wait; it is not the conversation's fault.
    Unhealthy,
    /// The target refused this conversation (other 4xx), or it cannot be rendered: dead.
    Invalid,
}

/// A failed delivery attempt.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// A template failed or produced invalid JSON.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The definition or settings produce something unusable (a bad URL or header).
    #[error("step `{step}`: {message}")]
    Invalid {
        /// The step.
        step: String,
        /// What is wrong.
        message: String,
    },
    /// No answer: connection refused or reset, DNS, timeout.
    #[error("step `{step}`: {message}")]
    Transport {
        /// The step.
        step: String,
        /// What failed (never the URL, which may hold a secret).
        message: String,
    },
    /// The target answered with a failure status.
    #[error("step `{step}`: HTTP {status}: {excerpt}")]
    Status {
        /// The step.
        step: String,
        /// The status code.
        status: u16,
        /// How the engine classified it.
        class: Failure,
        /// The target's requested wait, already parsed and capped.
        retry_after: Option<Duration>,
        /// The start of the answer's body, for the attempt log.
        excerpt: String,
    },
    /// Local I/O failed (the file connector, or recording a checkpoint).
    #[error("{message}")]
    Io {
        /// What failed, and the system's reason.
        message: String,
        /// Classified by the error's kind (see [`DeliveryError::io`]).
        class: Failure,
    },
    /// The connector panicked. Caught at the edge of the attempt, so the slot, the rate-limit
    /// token and the circuit's count it held are given back, and recorded as permanent: the
    /// same conversation through the same code panics again.
    #[error(
        "the connector failed unexpectedly ({0}); this conversation cannot go through it as it is"
    )]
    Panicked(String),
}

impl DeliveryError {
    /// How the worker should treat it.
    pub fn class(&self) -> Failure {
        match self {
            Self::Render(_) | Self::Invalid { .. } | Self::Panicked(_) => Failure::Invalid,
            Self::Transport { .. } => Failure::Transient,
            Self::Status { class, .. } | Self::Io { class, .. } => *class,
        }
    }

    /// A local I/O failure, `what` saying what was being done, classified by its kind: a
    /// name the file system cannot take will not take it on a retry (invalid); a folder that
    /// cannot be written to, or a full disk, is the configuration's or the machine's fault,
    /// not the conversation's (the connector pauses, as for rejected credentials); anything
    /// else may pass on a retry.
    pub fn io(what: &str, error: &std::io::Error) -> Self {
        use std::io::ErrorKind as Kind;
        let class = match error.kind() {
            Kind::InvalidInput | Kind::InvalidFilename | Kind::InvalidData => Failure::Invalid,
            Kind::PermissionDenied
            | Kind::ReadOnlyFilesystem
            | Kind::StorageFull
            | Kind::QuotaExceeded
            | Kind::NotADirectory
            | Kind::IsADirectory => Failure::Unhealthy,
            _ => Failure::Transient,
        };
        Self::Io {
            message: format!("{what}: {error}"),
            class,
        }
    }

    /// The wait the target asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, if the target answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error without the target's answer, for logs: an answer may echo the visitor's
    /// data (an e-mail address in "contact already exists"), and logs cannot be erased by
    /// `forget`. The full text, excerpt included, is in the attempt log in the store.
    pub fn summary(&self) -> String {
        match self {
            Self::Status { step, status, .. } => {
                format!("step `{step}`: HTTP {status} (answer in the attempt log)")
            }
            // A panic's message can quote the value it choked on.
            Self::Panicked(_) => {
                "the connector failed unexpectedly (details in the attempt log)".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// The step that failed, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            Self::Invalid { step, .. }
            | Self::Transport { step, .. }
            | Self::Status { step, .. } => Some(step),
            _ => None,
        }
    }
}

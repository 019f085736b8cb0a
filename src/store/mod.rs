//! Where conversations and deliveries live: the store's roles and their two implementations.
//!
//! The store is the only memory that matters. Ingest answers the chat product only after
//! [`Inbox::ingest`] has committed the raw body, the normalized conversation and one delivery
//! per matching connector; the workers work only from leased rows. A crash at any moment
//! therefore loses nothing: a restart finds every pending delivery where it was.
//!
//! Deliveries of one (conversation, connector) pair run one at a time, oldest first; a new
//! version that arrives while an older one still waits, unleased, replaces it in place
//! instead of queueing a second delivery of the same ticket.
//!
//! [`sqlite::SqliteStore`] is the default (one process); [`postgres::PostgresStore`] serves
//! several replicas sharing one queue. Both pass the same test suite.
//!
//! The store is one object with several roles, each a trait of its own so that a caller names
//! the part it uses: [`Inbox`] (ingest and quarantine), [`Queue`] (the workers' leases and
//! attempts), [`Deliveries`] (deliveries as operators see them), [`Fetches`] (events whose
//! conversation is read from the product's API), [`Archive`] (stored
//! conversations), [`Maintenance`] (retention, erasure, health) and [`Sessions`] (the
//! dashboard's). [`Store`] is all of them, what the application opens and hands out.

mod archive;
mod deliveries;
mod fetches;
mod inbox;
mod maintenance;
mod packed;
pub mod postgres;
mod queue;
mod sessions;
pub mod sqlite;

use std::fmt;

pub use archive::*;
pub use deliveries::*;
pub use fetches::*;
pub use inbox::*;
pub use maintenance::*;
pub use packed::*;
pub use queue::*;
pub use sessions::*;

use crate::model::Timestamp;

/// Durable storage for conversations, deliveries and their attempts: every role at once.
pub trait Store:
    Inbox + Queue + Deliveries + Fetches + Archive + Maintenance + Sessions + fmt::Debug
{
}

impl<T> Store for T where
    T: Inbox + Queue + Deliveries + Fetches + Archive + Maintenance + Sessions + fmt::Debug
{
}

/// A storage failure. Ingest answers 503 for these, so the source can send again.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[source] Cause),
    /// The batch this work was part of could not be committed.
    #[error("commit failed: {0}")]
    Commit(#[source] Cause),
    /// A stored value could not be read back.
    #[error("corrupt row: {0}")]
    Corrupt(#[source] Cause),
    /// The store is shutting down.
    #[error("store is closed")]
    Closed,
    /// The store could not be opened or migrated.
    #[error("cannot open store: {0}")]
    Open(#[source] Cause),
}

impl StoreError {
    /// The database was migrated by a later chatbridge than this one: it is not opened, since
    /// this one would misread what it does not know.
    pub(crate) fn newer_schema(applied: usize, known: usize) -> Self {
        Self::Open(
            format!(
                "the database is at schema version {applied}, newer than this chatbridge knows ({known}); upgrade chatbridge"
            )
            .into(),
        )
    }
}

/// Why a store operation failed: a description fit for the log, and the driver's error it
/// came from, when there is one, kept for whoever needs to look closer (a SQLSTATE, an I/O
/// error kind). The description already says what the source says, so
/// [`crate::render::error_chain`] does not repeat it.
#[derive(Debug)]
pub struct Cause {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Cause {
    /// A cause described by its source error.
    pub(crate) fn of(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::described(source.to_string(), source)
    }

    /// A cause with a description of its own (more than the source's own words say).
    pub(crate) fn described(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Self {
            message,
            source: None,
        }
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// An instant as both stores keep it: Unix milliseconds.
pub(crate) fn ms(t: Timestamp) -> i64 {
    t.unix_millis()
}

/// An instant read back from a store.
pub(crate) fn from_ms(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_unix_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("time {ms} out of range").into()))
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_store_error_keeps_the_drivers_error_and_says_it_once() {
        let driver = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "disk says no");
        let error = StoreError::Database(Cause::of(driver));
        let kept = error
            .source()
            .and_then(|cause| cause.source())
            .and_then(|source| source.downcast_ref::<std::io::Error>())
            .expect("the driver's error is kept");
        assert_eq!(kept.kind(), std::io::ErrorKind::PermissionDenied);
        assert_eq!(crate::render::error_chain(&error), "database: disk says no");
    }
}

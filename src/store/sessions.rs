//! Dashboard sessions, kept where every replica sees them.

use async_trait::async_trait;

use super::*;
use crate::model::Timestamp;

/// Dashboard sessions.
#[async_trait]
pub trait Sessions: Send + Sync {
    /// Records a dashboard session (and forgets the ones that have ended).
    ///
    /// # Errors
    /// When the database fails.
    async fn open_session(&self, session: NewSession) -> Result<(), StoreError>;

    /// Extends a session that has not ended to `idle_until`; its token MAC, or `None` when
    /// there is no such session or it has ended.
    ///
    /// # Errors
    /// When the database fails.
    async fn touch_session(
        &self,
        id_hash: &str,
        now: Timestamp,
        idle_until: Timestamp,
    ) -> Result<Option<String>, StoreError>;

    /// Ends a session (logout).
    ///
    /// # Errors
    /// When the database fails.
    async fn end_session(&self, id_hash: &str) -> Result<(), StoreError>;
}

/// A dashboard session as the store keeps it; see `http::auth`.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// SHA-256 of the session id, hex.
    pub id_hash: String,
    /// HMAC of the session id under the admin token's digest, hex.
    pub token_mac: String,
    /// The login.
    pub created_at: Timestamp,
    /// The end, however busy the session.
    pub expires_at: Timestamp,
    /// The end unless a request comes first.
    pub idle_until: Timestamp,
}

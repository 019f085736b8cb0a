//! Who may use the admin API and the dashboard: the admin token, and the dashboard sessions
//! opened with it.
//!
//! A script sends the token itself (`Authorization: Bearer`). A browser sends it once, to the
//! login form, and from then on a session cookie: 256 random bits from the operating system,
//! never the token. The store keeps, per session, the id's SHA-256 (a copy of the database
//! opens nothing), when it ends (`admin.session_lifetime` after the login, or
//! `admin.session_idle_timeout` after its last request, whichever comes first) and an HMAC of
//! the id keyed by the admin token's digest. So a logout deletes the session on every
//! replica, and a new admin token ends every session opened with the old one.

use std::time::Duration;

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::model::Timestamp;
use crate::store::{NewSession, Sessions, StoreError};

/// The session cookie's name.
pub const COOKIE: &str = "chatbridge_session";

/// How a request says who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'r> {
    /// `Authorization: Bearer TOKEN`.
    Bearer(&'r str),
    /// The session cookie.
    Session(&'r str),
}

impl<'r> Credential<'r> {
    /// The bearer token if there is one, else the session cookie.
    pub fn of(headers: &'r HeaderMap) -> Option<Self> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(token) = bearer {
            return Some(Self::Bearer(token));
        }
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| Self::Session(value))
    }
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The operating system gave no randomness for the id.
    #[error("no randomness for a session id: {0}")]
    Randomness(getrandom::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SessionError> for super::error::ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Store(e) => Self::Unavailable(e),
            SessionError::Randomness(_) => Self::Internal(e.to_string()),
        }
    }
}

/// Who a request turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// It sent the admin token.
    Bearer,
    /// It sent the cookie of a live session.
    Session,
    /// Neither.
    Nobody,
}

/// The admin token (as its digest) and the session rules.
#[derive(Clone)]
pub struct AdminAccess {
    digest: [u8; 32],
    idle: Duration,
    lifetime: Duration,
}

impl std::fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAccess")
            .field("idle", &self.idle)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl AdminAccess {
    /// Access by `token`, sessions ending after `idle` without a request or `lifetime` after
    /// their login.
    pub fn new(token: &SecretString, idle: Duration, lifetime: Duration) -> Self {
        Self {
            digest: Sha256::digest(token.expose_secret().as_bytes()).into(),
            idle,
            lifetime,
        }
    }

    /// Whether `candidate` is the admin token, compared in time independent of where they
    /// differ.
    pub fn accepts(&self, candidate: &str) -> bool {
        let candidate: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        self.digest.ct_eq(&candidate).into()
    }

    /// Who sent `headers`: a session found live is extended by the idle timeout.
    ///
    /// # Errors
    /// When the store fails while looking a session up.
    pub async fn admit(
        &self,
        store: &dyn Sessions,
        headers: &HeaderMap,
    ) -> Result<Admitted, StoreError> {
        Ok(match Credential::of(headers) {
            Some(Credential::Bearer(token)) if self.accepts(token) => Admitted::Bearer,
            Some(Credential::Session(id)) if self.resume(store, id).await? => Admitted::Session,
            _ => Admitted::Nobody,
        })
    }

    /// Opens a session for someone who presented the admin token; the cookie's value.
    ///
    /// # Errors
    /// When the operating system has no randomness to give or the store fails.
    pub async fn open(&self, store: &dyn Sessions) -> Result<String, SessionError> {
        let mut id = [0u8; 32];
        getrandom::fill(&mut id).map_err(SessionError::Randomness)?;
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id);
        let now = Timestamp::now();
        store
            .open_session(NewSession {
                id_hash: id_hash(&id),
                token_mac: hex::encode(self.mac(&id).finalize().into_bytes()),
                created_at: now,
                expires_at: now.plus(self.lifetime),
                idle_until: now.plus(self.idle),
            })
            .await?;
        Ok(id)
    }

    /// Whether `id` is a live session opened with the current admin token; extends it.
    async fn resume(&self, store: &dyn Sessions, id: &str) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let Some(mac) = store
            .touch_session(&id_hash(id), now, now.plus(self.idle))
            .await?
        else {
            return Ok(false);
        };
        Ok(hex::decode(mac).is_ok_and(|mac| self.mac(id).verify_slice(&mac).is_ok()))
    }

    /// Ends session `id` (logout); an unknown id is not an error.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn end(&self, store: &dyn Sessions, id: &str) -> Result<(), StoreError> {
        store.end_session(&id_hash(id)).await
    }

    /// The cookie that carries session `id`: `HttpOnly` (no script reads it), `SameSite=Strict`
    /// (no other site's page sends it), `Secure` when the browser came over HTTPS, and no
    /// longer-lived than the session.
    pub fn cookie(&self, id: &str, secure: bool) -> String {
        format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.lifetime.as_secs(),
            if secure { "; Secure" } else { "" }
        )
    }

    /// The cookie that makes a browser forget its session.
    pub fn forget_cookie() -> String {
        format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }

    fn mac(&self, id: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.digest).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac
    }
}

fn id_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Whether the browser says the request was made by another site's page (`Sec-Fetch-Site`
/// other than `same-origin` or `none`; `same-site` is another site too: a sibling subdomain
/// may be anyone's). A request with the session cookie is refused then, on the dashboard and
/// the API alike; a bearer token is never sent by a browser on its own.
pub(crate) fn cross_site(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site != "same-origin" && site != "none")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_bearer_token_wins_over_a_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; chatbridge_session=s1"),
        );
        assert_eq!(Credential::of(&headers), Some(Credential::Session("s1")));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t0"));
        assert_eq!(Credential::of(&headers), Some(Credential::Bearer("t0")));
    }
}

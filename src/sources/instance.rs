//! The configured sources: each `[sources.NAME]` as the HTTP layer, re-ingest and the fetch
//! stage use it, its credential ready to check.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use reqwest::header::HeaderMap;
use secrecy::SecretString;

use super::auth::{SourceTokens, TokenScope};
use super::signature::{Refused, Scheme, Secrets};
use super::{Proof, Source, livechat};
use crate::model::Timestamp;

/// One configured source.
#[derive(Debug)]
pub struct Instance {
    /// The instance's name: its route (`/hooks/NAME`), the quarantine's `source`.
    pub name: String,
    /// The product.
    pub source: Source,
    /// What its requests must prove.
    pub credential: Credential,
    /// Its REST API, for the conversations it fetches.
    pub api: Option<Api>,
}

/// How an instance's requests are checked.
#[derive(Debug)]
pub enum Credential {
    /// Tokens in the URL, each with what it may post.
    Tokens(SourceTokens),
    /// An HMAC over the raw bytes, with the current and previous secret.
    Signature(Scheme, Secrets),
    /// LiveChat's `secret_key` in the body.
    BodySecret(Secrets),
    /// The product needs a secret and none is configured: every request is refused, never
    /// let through (the configuration check names the missing key first).
    Unset,
}

/// `[sources.NAME.api]`, as the fetchers use it.
#[derive(Debug, Clone)]
pub struct Api {
    /// The product's API root, without a trailing slash.
    pub base_url: String,
    /// An API token.
    pub token: Option<SecretString>,
    /// An account or client id.
    pub identifier: Option<String>,
    /// The secret paired with `identifier`.
    pub key: Option<SecretString>,
}

impl Instance {
    /// Checks a signed or secret-carrying request's body, before anything of it is parsed
    /// or stored; returns the body to keep.
    ///
    /// # Errors
    /// When the request does not prove it comes from the product (401, nothing stored).
    pub fn verify_body(
        &self,
        headers: &HeaderMap,
        body: Bytes,
        now: Timestamp,
    ) -> Result<Bytes, Refused> {
        match &self.credential {
            Credential::Signature(scheme, secrets) => {
                scheme.verify(secrets, headers, &body, now)?;
                Ok(body)
            }
            Credential::BodySecret(secrets) => livechat::authenticate(secrets, &body),
            Credential::Tokens(_) | Credential::Unset => Err(Refused::Mismatch),
        }
    }

    /// What `candidate`, a token from the URL, may post; `None` when it is not accepted or
    /// this instance takes no URL tokens.
    pub fn token_scope(&self, candidate: &str) -> Option<&TokenScope> {
        match &self.credential {
            Credential::Tokens(tokens) => tokens.scope(candidate),
            _ => None,
        }
    }

    /// Whether its requests carry a token in the URL (and their body is read only after it
    /// is checked).
    pub fn takes_url_token(&self) -> bool {
        self.source.proof() == Proof::UrlToken
    }
}

/// Every configured source by name. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Instances(Arc<BTreeMap<String, Arc<Instance>>>);

impl Instances {
    /// The sources of `instances`.
    pub fn new(instances: impl IntoIterator<Item = Instance>) -> Self {
        Self(Arc::new(
            instances
                .into_iter()
                .map(|i| (i.name.clone(), Arc::new(i)))
                .collect(),
        ))
    }

    /// The instance of that name.
    pub fn get(&self, name: &str) -> Option<&Arc<Instance>> {
        self.0.get(name)
    }

    /// Every instance, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Instance>> {
        self.0.values()
    }
}

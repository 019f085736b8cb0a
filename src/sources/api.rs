//! Reading a conversation from a product's REST API, for the events whose webhook does not
//! carry it: the calls each product's fetcher makes, and how their failures are classified.
//!
//! The classes are the connectors' ([`Failure`]), so that the fetch stage retries, throttles
//! and pauses exactly as deliveries do: no answer, 408, 425 and 5xx are retried with backoff;
//! 429 waits as told (`Retry-After`) without using up attempts; 401 and 403 mean the
//! configured credentials are wrong, and pause the source's fetches until a person fixes
//! them; other 4xx (the conversation is gone) are given up, kept dead with the answer.

use std::time::{Duration, SystemTime};

use base64::Engine;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::instance::Api;
use crate::connectors::Failure;
use crate::connectors::http::{failure_of, retry_after};
use crate::model::Conversation;

/// Longest part of an error answer kept with the failure.
const EXCERPT: usize = 300;

/// The largest answer read: a conversation's messages are a few hundred kilobytes at most,
/// and an endless answer must not take the process's memory.
const LARGEST_ANSWER: usize = 16 << 20;

/// A failed call to a product's API.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    /// How the fetch stage treats it.
    pub class: Failure,
    /// The answer's status, when there was one.
    pub status: Option<u16>,
    /// The product's requested wait.
    pub retry_after: Option<Duration>,
    /// What failed, for the job's record (never a credential or a full URL's query).
    pub message: String,
}

impl FetchError {
    /// A product answer chatbridge cannot read: given up, as a changed conversation would
    /// be answered the same way.
    pub fn unreadable(what: &str) -> Self {
        Self {
            class: Failure::Invalid,
            status: None,
            retry_after: None,
            message: format!("the product's API answered something unexpected: {what}"),
        }
    }

    /// The fetcher is not configured (`[sources.NAME.api]` lacks a key): the source pauses,
    /// as for refused credentials, until the configuration names it.
    pub fn unconfigured(key: &str) -> Self {
        Self {
            class: Failure::Unhealthy,
            status: None,
            retry_after: None,
            message: format!("`api.{key}` is not configured for this source"),
        }
    }
}

/// What a fetch read: the conversation, and the documents it was read from (offered to
/// templates as `raw`, kept with the version).
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The conversation.
    pub conversation: Conversation,
    /// `{"event": …, …}`: the event and each document the API answered, by name.
    pub documents: Value,
}

/// How a product's API takes its credentials.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer TOKEN`.
    Bearer(SecretString),
    /// `Authorization: Basic base64(USER:PASSWORD)`.
    Basic(String, SecretString),
    /// Credentials in headers of the product's own (name, value); secret values.
    Headers(Vec<(&'static str, SecretString)>),
}

/// One source's API, as a fetcher calls it.
#[derive(Debug, Clone, Copy)]
pub struct ApiClient<'a> {
    /// The shared HTTP client (timeouts, TLS, no redirects).
    pub http: &'a reqwest::Client,
    /// `[sources.NAME.api]`.
    pub api: &'a Api,
}

impl ApiClient<'_> {
    /// `token`, or the error that pauses the source until it is configured.
    ///
    /// # Errors
    /// When the key is not set.
    pub fn token(&self) -> Result<SecretString, FetchError> {
        self.api
            .token
            .clone()
            .ok_or_else(|| FetchError::unconfigured("token"))
    }

    /// `identifier`, or the error that pauses the source.
    ///
    /// # Errors
    /// When the key is not set.
    pub fn identifier(&self) -> Result<String, FetchError> {
        self.api
            .identifier
            .clone()
            .ok_or_else(|| FetchError::unconfigured("identifier"))
    }

    /// `key`, or the error that pauses the source.
    ///
    /// # Errors
    /// When the key is not set.
    pub fn key(&self) -> Result<SecretString, FetchError> {
        self.api
            .key
            .clone()
            .ok_or_else(|| FetchError::unconfigured("key"))
    }

    /// Calls `method path` (below `base_url`; path segments already encoded) with `auth`,
    /// `extra` headers and a JSON `body`; the answer as JSON.
    ///
    /// # Errors
    /// A classified [`FetchError`] for anything but a 2xx JSON answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        extra: &[(&'static str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, FetchError> {
        let url = format!("{}{path}", self.api.base_url);
        // The path only: a query may carry a cursor, never worth a log line.
        let shown = path.split('?').next().unwrap_or(path).to_owned();
        let mut request = self
            .http
            .request(method.clone(), &url)
            .header(reqwest::header::ACCEPT, "application/json");
        request = match auth {
            Auth::Bearer(token) => request.bearer_auth(token.expose_secret()),
            Auth::Basic(user, password) => {
                let pair = format!("{user}:{}", password.expose_secret());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                request.header(reqwest::header::AUTHORIZATION, format!("Basic {encoded}"))
            }
            Auth::Headers(headers) => headers.iter().fold(request, |r, (name, value)| {
                r.header(*name, value.expose_secret())
            }),
        };
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(body).unwrap_or_default());
        }
        let mut answer = request.send().await.map_err(|e| FetchError {
            class: Failure::Transient,
            status: None,
            retry_after: None,
            message: format!(
                "{method} {shown}: no answer ({})",
                crate::render::error_chain(&e.without_url())
            ),
        })?;
        let status = answer.status().as_u16();
        let wait = retry_after(answer.headers(), &[], SystemTime::now());
        let mut text = Vec::new();
        loop {
            let chunk = answer.chunk().await.map_err(|e| FetchError {
                class: Failure::Transient,
                status: Some(status),
                retry_after: None,
                message: format!(
                    "{method} {shown}: the answer broke off ({})",
                    e.without_url()
                ),
            })?;
            let Some(chunk) = chunk else { break };
            if text.len() + chunk.len() > LARGEST_ANSWER {
                return Err(FetchError::unreadable(&format!(
                    "{method} {shown}: an answer larger than {} MiB",
                    LARGEST_ANSWER >> 20
                )));
            }
            text.extend_from_slice(&chunk);
        }
        if (200..300).contains(&status) {
            return serde_json::from_slice(&text)
                .map_err(|_| FetchError::unreadable(&format!("{method} {shown}: not JSON")));
        }
        let class = failure_of(status);
        let excerpt: String = String::from_utf8_lossy(&text)
            .chars()
            .take(EXCERPT)
            .collect();
        Err(FetchError {
            class,
            status: Some(status),
            retry_after: wait,
            message: format!("{method} {shown}: HTTP {status}: {excerpt}"),
        })
    }

    /// `GET path` with `auth`.
    ///
    /// # Errors
    /// As [`ApiClient::call`].
    pub async fn get(
        &self,
        path: &str,
        auth: &Auth,
        extra: &[(&'static str, &str)],
    ) -> Result<Value, FetchError> {
        self.call(Method::GET, path, auth, extra, None).await
    }
}

/// A path segment, percent-encoded as URL templates encode values: ids come from webhook
/// bodies, and one holding `/` or `?` must stay one segment of its path.
///
/// # Errors
/// For an id of `.` or `..`, which would move along the path: no product has one.
pub fn segment(text: &str) -> Result<String, FetchError> {
    crate::render::url_segment(text)
        .ok_or_else(|| FetchError::unreadable(&format!("an id of `{text}`")))
}

//! Chat products that send us conversations: one module per product, each turning the
//! product's request body into a [`Conversation`].
//!
//! A source module owns the vendor's vocabulary and its quirks; nothing outside it knows a
//! Smartsupp field name. How each product proves a request is its own is in [`auth`] (URL
//! tokens) and [`signature`] (HMACs over the raw bytes); the HTTP layer (`http::ingest`)
//! checks them before the body is read as anything.
//!
//! Adding a source: a module with `conversation(body: &[u8]) -> Result<Conversation,
//! SourceError>` and `parse` (the same with the document as JSON), a variant in [`Source`],
//! and fixtures under `tests/fixtures/<source>/` with a test each.

pub mod auth;
pub mod lenient;
pub mod signature;
pub mod smartsupp;

use crate::model::Conversation;

/// Why a request body could not be turned into a conversation. The body is still kept
/// (quarantined) by the caller; this text is what the sender and the operator read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Not JSON at all (or not UTF-8).
    #[error("body is not valid JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    /// JSON, but not the object the product sends.
    #[error("body is JSON but not an object")]
    NotAnObject,
    /// A field without which the conversation cannot be identified.
    #[error("required field `{0}` is missing or empty")]
    MissingField(&'static str),
}

/// A parsed request: the normalized conversation and the original document, which
/// templates may read as `raw`.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The normalized conversation.
    pub conversation: Conversation,
    /// The request body as JSON.
    pub raw: serde_json::Value,
}

/// The chat products chatbridge understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Smartsupp's legacy "POST hook" (finished, missed and offline chats).
    Smartsupp,
}

impl Source {
    /// The name used in URLs (`/hooks/{name}`), config (`[sources.{name}]`) and the store.
    pub fn name(self) -> &'static str {
        match self {
            Self::Smartsupp => "smartsupp",
        }
    }

    /// The source of that name ([`Source::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Smartsupp].into_iter().find(|s| s.name() == name)
    }

    /// Parses a request body from this source, with the document as JSON.
    ///
    /// # Errors
    /// When the body is not something this source sends; see [`SourceError`].
    pub fn parse(self, body: &[u8]) -> Result<Parsed, SourceError> {
        match self {
            Self::Smartsupp => smartsupp::parse(body),
        }
    }

    /// Reads the conversation of a request body, without keeping the document: what ingest
    /// does unless a rule or a filter reads `raw`.
    ///
    /// # Errors
    /// As [`Source::parse`].
    pub fn conversation(self, body: &[u8]) -> Result<Conversation, SourceError> {
        match self {
            Self::Smartsupp => smartsupp::conversation(body),
        }
    }
}

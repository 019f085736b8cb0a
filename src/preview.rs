//! A chat as `serve` would hand it to a connector, without storing or delivering it: what
//! `chatbridge render` and `send`, the admin API's preview and the dashboard's playground
//! start from. One path for all, so none shows or sends what the service would not: the
//! chat is redacted as ingest stores it, and the instance's filters can be asked.

use axum::body::Bytes;

use crate::connectors::{DeliveryJob, Exclusion, Registry};
use crate::privacy::Redactor;
use crate::render::RenderError;
use crate::sources::{Event, Parsed, Source, SourceError};

/// Why a payload has no conversation to preview.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// Not a payload of the product.
    #[error(transparent)]
    Unreadable(#[from] SourceError),
    /// An event whose conversation the service reads from the product's API.
    #[error(
        "a {0} `{1}` event does not carry its conversation: a running chatbridge fetches it from the product's API"
    )]
    Fetched(Source, String),
    /// An event that ends no conversation.
    #[error("`{0}` ends no conversation: nothing would be sent")]
    Ignored(String),
}

/// A chat parsed and redacted as ingest stores it, for one connector instance.
#[derive(Debug)]
pub struct Prepared {
    /// The conversation and document, redacted.
    pub parsed: Parsed,
    connector: String,
}

impl Prepared {
    /// `body`, as `source` (instance `instance`) posts it, as instance `connector` would get
    /// it.
    ///
    /// # Errors
    /// When the payload does not parse, or carries no conversation.
    pub fn new(
        redactor: &Redactor,
        connector: &str,
        (source, instance): (Source, &str),
        body: &[u8],
    ) -> Result<Self, PreviewError> {
        let document = source.document(Bytes::copy_from_slice(body))?;
        let conversation = match source.read(&document, instance)? {
            Event::Conversation(conversation) => *conversation,
            Event::Fetch(fetch) => return Err(PreviewError::Fetched(source, fetch.event)),
            Event::Ignored(event) => return Err(PreviewError::Ignored(event)),
        };
        let raw = serde_json::from_slice(&document).map_err(SourceError::from)?;
        let mut parsed = Parsed { conversation, raw };
        redactor.conversation(&mut parsed.conversation, &mut parsed.raw);
        Ok(Self {
            parsed,
            connector: connector.to_owned(),
        })
    }

    /// Why the instance would not receive this chat, as `serve` decides it: `None` when it
    /// would.
    ///
    /// # Errors
    /// When the instance's `when` filter fails on it.
    pub fn excluded(&self, registry: &Registry) -> Result<Option<Exclusion>, RenderError> {
        registry.excluded(&self.connector, &self.parsed.conversation, &self.parsed.raw)
    }

    /// Its first delivery through the instance.
    pub fn job(&self) -> DeliveryJob<'_> {
        DeliveryJob::first(&self.connector, &self.parsed.conversation, &self.parsed.raw)
    }
}

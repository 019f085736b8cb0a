//! A chat as `serve` would hand it to a connector, without storing or delivering it: what
//! `chatbridge render` and `send`, the admin API's preview and the dashboard's playground
//! start from. One path for all, so none shows or sends what the service would not: the
//! chat is redacted as ingest stores it, and the instance's filters can be asked.

use crate::connectors::{DeliveryJob, Exclusion, Registry};
use crate::privacy::Redactor;
use crate::render::RenderError;
use crate::sources::{Parsed, Source, SourceError};

/// A chat parsed and redacted as ingest stores it, for one connector instance.
#[derive(Debug)]
pub struct Prepared {
    /// The conversation and document, redacted.
    pub parsed: Parsed,
    connector: String,
}

impl Prepared {
    /// `body`, a Smartsupp hook payload, as instance `connector` would get it.
    ///
    /// # Errors
    /// When the payload does not parse.
    pub fn new(redactor: &Redactor, connector: &str, body: &[u8]) -> Result<Self, SourceError> {
        let mut parsed = Source::Smartsupp.parse(body)?;
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

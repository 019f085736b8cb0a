//! What becomes of a body once it is known to come from a sender allowed to post: parsed,
//! checked against the accounts it may carry, redacted, routed to connectors and stored, or
//! refused with a reason. A hook post ([`crate::http::ingest`]) and a body brought back from
//! quarantine ([`crate::maintenance::reingest`]) go through the same steps, so a re-ingested
//! chat becomes exactly what a fresh post would have made of it.

use axum::body::Bytes;
use serde_json::Value;
use tokio::sync::Notify;

use crate::connectors::Registry;
use crate::model::{Conversation, Timestamp};
use crate::privacy::Redactor;
use crate::sources::{Source, SourceError};
use crate::store::{IngestOutcome, NewVersion, Store, StoreError};
use crate::telemetry::Escaped;

/// Bodies larger than this are parsed on the blocking pool, so a slow payload cannot hold an
/// async worker thread that health checks and other posts need. Smaller ones, nearly every
/// chat, are parsed in place: the hand-off would cost more than the parse.
const PARSE_IN_PLACE_MAX: usize = 64 * 1024;

/// Why a body was refused. It is kept in quarantine with this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a payload of this source, or one without the fields that identify a chat.
    Unparseable(String),
    /// A chat of an account the sender may not post for.
    OtherAccount(String),
}

impl Refusal {
    /// The reason, for the sender and the quarantine.
    pub fn reason(&self) -> &str {
        match self {
            Self::Unparseable(reason) | Self::OtherAccount(reason) => reason,
        }
    }

    /// A word for the kind of refusal: the `reason` label of the quarantine metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unparseable(_) => "unparseable",
            Self::OtherAccount(_) => "other_account",
        }
    }
}

/// What was stored of an admitted body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The conversation's id.
    pub conversation_id: String,
    /// Its status word (`completed`, `missed`, ...), for the metrics.
    pub status: &'static str,
    /// A new version and its deliveries, or an identical resend.
    pub outcome: IngestOutcome,
}

/// The parts of the service a body passes through, borrowed from whoever holds them.
#[derive(Debug, Clone, Copy)]
pub struct Intake<'a> {
    /// Where conversations are kept.
    pub store: &'a dyn Store,
    /// The connectors in use now, for routing.
    pub registry: &'a Registry,
    /// `[privacy] redact` rules.
    pub redactor: &'a Redactor,
    /// Told when new deliveries are stored (the worker of this process, if any).
    pub wake: Option<&'a Notify>,
}

impl Intake<'_> {
    /// Parses `body` from `source` and, unless `account_refused` names a reason to refuse
    /// its account, stores it with one delivery per matching connector. Returns after the
    /// commit.
    ///
    /// # Errors
    /// When the store fails; nothing is stored then.
    pub async fn admit(
        &self,
        source: Source,
        body: Bytes,
        account_refused: impl FnOnce(&str) -> Option<String>,
        received_at: Timestamp,
    ) -> Result<Result<Admitted, Refusal>, StoreError> {
        // The document as JSON only for a redaction rule or a filter that reads `raw`.
        let needs_raw = !self.redactor.is_empty() || self.registry.filters_read_raw();
        let (mut conversation, mut raw) = match parse(source, body.clone(), needs_raw).await {
            Ok(parsed) => parsed,
            Err(reason) => return Ok(Err(Refusal::Unparseable(reason))),
        };
        if let Some(reason) = account_refused(&conversation.account_id) {
            return Ok(Err(Refusal::OtherAccount(reason)));
        }
        let redacted = self.redactor.conversation(&mut conversation, &mut raw);
        let conversation_id = conversation.id.to_string();
        let status = conversation.status.as_str();
        let connectors = self.registry.matching(&conversation, &raw).unwrap_or_else(|e| {
            // The conversation is still stored; fixing the filter and replaying delivers it.
            tracing::error!(conversation_id = %Escaped(&conversation_id), error = %Escaped(&e.to_string()), "a connector filter failed; no deliveries created");
            Vec::new()
        });
        // The digest stays that of the body as sent, so a resend is still a duplicate.
        let kept = redacted.unwrap_or_else(|| body.to_vec());
        let version = NewVersion::new(conversation, &body, kept, connectors, received_at)?;
        let outcome = self.store.ingest(version).await?;
        if let (IngestOutcome::Stored { .. }, Some(wake)) = (outcome, self.wake) {
            wake.notify_one();
        }
        Ok(Ok(Admitted {
            conversation_id,
            status,
            outcome,
        }))
    }
}

/// The conversation of `body`, and the document as JSON when `needs_raw`; or why not.
/// A panic in a parser refuses the body like a parse error: it is kept, not lost.
async fn parse(
    source: Source,
    body: Bytes,
    needs_raw: bool,
) -> Result<(Conversation, Value), String> {
    let large = body.len() > PARSE_IN_PLACE_MAX;
    let work = move || -> Result<(Conversation, Value), SourceError> {
        if needs_raw {
            source.parse(&body).map(|p| (p.conversation, p.raw))
        } else {
            source.conversation(&body).map(|c| (c, Value::Null))
        }
    };
    let result = if large {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| "the parser failed on this body".to_owned())?
    } else {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
            .map_err(|_| "the parser failed on this body".to_owned())?
    };
    result.map_err(|e| e.to_string())
}

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
use crate::sources::instance::Instance;
use crate::sources::{Event, FetchEvent, SourceError};
use crate::store::{Enqueued, IngestOutcome, NewFetch, NewVersion, Store, StoreError};
use crate::telemetry::Escaped;
use sha2::{Digest, Sha256};

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

/// What became of an admitted body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intaken {
    /// A conversation it carried, stored.
    Stored(Admitted),
    /// An event whose conversation is fetched: its job kept (or already kept).
    Fetching {
        /// The conversation it ends.
        conversation_id: String,
        /// The job.
        enqueued: Enqueued,
    },
    /// An event that ends no conversation (its name): acknowledged, nothing stored.
    Ignored(String),
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
    /// Told when a new fetch job is kept (the fetcher of this process, if any).
    pub fetch_wake: Option<&'a Notify>,
}

impl Intake<'_> {
    /// Reads `sent` (a request body of `instance`, its credential already checked) and,
    /// unless `account_refused` names a reason to refuse its account, stores the
    /// conversation it carries with one delivery per matching connector. Returns after the
    /// commit; an event that ends nothing is answered without storing anything.
    ///
    /// # Errors
    /// When the store fails; nothing is stored then.
    pub async fn admit(
        &self,
        instance: &Instance,
        sent: Bytes,
        account_refused: impl FnOnce(&str) -> Option<String>,
        received_at: Timestamp,
    ) -> Result<Result<Intaken, Refusal>, StoreError> {
        // The document as JSON only for a redaction rule or a filter that reads `raw`.
        let read = match read(instance, sent.clone(), self.needs_raw()).await {
            Ok(read) => read,
            Err(reason) => return Ok(Err(Refusal::Unparseable(reason))),
        };
        let (conversation, raw, document) = match read {
            Read::Conversation(conversation, raw, document) => (*conversation, raw, document),
            Read::Fetch(fetch, document) => {
                if let Some(reason) = account_refused(&fetch.account_id) {
                    return Ok(Err(Refusal::OtherAccount(reason)));
                }
                let conversation_id = fetch.conversation_id.to_string();
                let enqueued = self
                    .store
                    .enqueue_fetch(NewFetch {
                        source: instance.name.clone(),
                        conversation_id: conversation_id.clone(),
                        event: fetch.event,
                        body: document.to_vec(),
                        body_sha256: hex::encode(Sha256::digest(&sent)),
                        received_at,
                    })
                    .await?;
                if let (false, Some(wake)) = (enqueued.duplicate, self.fetch_wake) {
                    wake.notify_one();
                }
                return Ok(Ok(Intaken::Fetching {
                    conversation_id,
                    enqueued,
                }));
            }
            Read::Ignored(event) => return Ok(Ok(Intaken::Ignored(event))),
        };
        if let Some(reason) = account_refused(&conversation.account_id) {
            return Ok(Err(Refusal::OtherAccount(reason)));
        }
        let admitted = self
            .keep(conversation, raw, &sent, document.to_vec(), received_at)
            .await?;
        Ok(Ok(Intaken::Stored(admitted)))
    }

    /// Stores `conversation` as a version with one delivery per matching connector, after
    /// redaction: `sent` is what its digest is taken of (the body as it came, so that a
    /// resend is a duplicate), `kept` the document stored and offered to templates as `raw`
    /// (`raw` itself only when a rule or filter reads it). What a post and a fetch both end
    /// with.
    ///
    /// # Errors
    /// When the store fails; nothing is stored then.
    pub async fn keep(
        &self,
        mut conversation: Conversation,
        mut raw: Value,
        sent: &[u8],
        kept: Vec<u8>,
        received_at: Timestamp,
    ) -> Result<Admitted, StoreError> {
        let redacted = self.redactor.conversation(&mut conversation, &mut raw);
        let conversation_id = conversation.id.to_string();
        let status = conversation.status.as_str();
        let connectors = self.registry.matching(&conversation, &raw).unwrap_or_else(|e| {
            // The conversation is still stored; fixing the filter and replaying delivers it.
            tracing::error!(conversation_id = %Escaped(&conversation_id), error = %Escaped(&e.to_string()), "a connector filter failed; no deliveries created");
            Vec::new()
        });
        let kept = redacted.unwrap_or(kept);
        let version = NewVersion::new(conversation, sent, kept, connectors, received_at)?;
        let outcome = self.store.ingest(version).await?;
        if let (IngestOutcome::Stored { .. }, Some(wake)) = (outcome, self.wake) {
            wake.notify_one();
        }
        Ok(Admitted {
            conversation_id,
            status,
            outcome,
        })
    }

    /// Whether a rule or a filter reads `raw`, so that the document is parsed for them.
    pub fn needs_raw(&self) -> bool {
        !self.redactor.is_empty() || self.registry.filters_read_raw()
    }
}

/// What a request body was read as.
enum Read {
    /// A conversation, the document as JSON when asked for, and the document to keep.
    Conversation(Box<Conversation>, Value, Bytes),
    /// An event whose conversation is fetched, and the document to keep.
    Fetch(FetchEvent, Bytes),
    /// An event that ends nothing.
    Ignored(String),
}

/// What `sent` means to `instance`, with the document as JSON when `needs_raw`; or why it
/// cannot be read. A panic in a parser refuses the body like a parse error: it is kept, not
/// lost.
async fn read(instance: &Instance, sent: Bytes, needs_raw: bool) -> Result<Read, String> {
    let large = sent.len() > PARSE_IN_PLACE_MAX;
    let (source, name) = (instance.source, instance.name.clone());
    let work = move || -> Result<Read, SourceError> {
        let document = source.document(sent)?;
        Ok(match source.read(&document, &name)? {
            Event::Conversation(conversation) => {
                let raw = if needs_raw {
                    serde_json::from_slice(&document)?
                } else {
                    Value::Null
                };
                Read::Conversation(conversation, raw, document)
            }
            Event::Fetch(fetch) => Read::Fetch(fetch, document),
            Event::Ignored(event) => Read::Ignored(event),
        })
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

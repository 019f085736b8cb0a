//! Chat products that send us conversations: one module per product, each reading the
//! product's webhook into an [`Event`], and from it (or from what its REST API answers) a
//! [`Conversation`].
//!
//! A product module owns the vendor's vocabulary and its quirks; nothing outside it knows a
//! vendor's field name. What every product shares is here: [`Source`], the products by name
//! and how each proves a request is its own ([`Proof`]: a token in the URL, [`auth`]; an HMAC
//! over the raw bytes, [`signature`]; a secret inside the body, [`livechat`]), and
//! [`Draft`], which derives what is derived the same way for every product (order of the
//! transcript, bounds, status, agents, subject). [`instance`] holds the configured
//! instances the HTTP layer routes to.
//!
//! Adding a product: a module with `read(document) -> Result<Event, SourceError>` (and, if
//! its webhook lacks the transcript, a fetcher), a variant in [`Source`], fixtures under
//! `tests/fixtures/<product>/` with a test each; `docs/sources.md` walks through it.

pub mod api;
pub mod auth;
pub mod crisp;
pub mod instance;
pub mod lenient;
pub mod livechat;
pub mod olark;
pub mod signature;
pub mod smartsupp;
pub mod smartsupp_v2;
pub mod tawk;
pub mod tidio;

use axum::body::Bytes;

use crate::model::{
    Conversation, ConversationId, Flags, Message, MessageKind, Page, Rating, Stats, Status,
    Timestamp, Visitor,
};
use signature::Scheme;

/// Why a request body could not be read. The body is still kept (quarantined) by the
/// caller; this text is what the sender and the operator read.
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
    /// A form-encoded body without the field that holds the document.
    #[error("form-encoded body has no `{0}` field")]
    MissingFormField(&'static str),
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

/// What a webhook request means.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A conversation carried whole: it is stored as a version and delivered.
    Conversation(Box<Conversation>),
    /// A conversation ended, and its transcript is at the product: the event is stored and
    /// answered, and a fetch job reads the rest from the product's REST API.
    Fetch(FetchEvent),
    /// An event the product sends that does not end a conversation (a message, a chat
    /// starting): answered 200, nothing stored. Its name, for the log and the answer.
    Ignored(String),
}

impl Event {
    /// Event `event` of `source`, ending conversation `conversation` of `account_id`, whose
    /// transcript is fetched.
    pub fn fetch(source: Source, account_id: String, conversation: &str, event: String) -> Self {
        Self::Fetch(FetchEvent {
            conversation_id: ConversationId::new(source.name(), &account_id, conversation),
            account_id,
            event,
        })
    }
}

/// An event whose conversation must be fetched: who it belongs to and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchEvent {
    /// The conversation it ends, as the fetched version will be stored.
    pub conversation_id: ConversationId,
    /// The product's account.
    pub account_id: String,
    /// The event's name (`conversation.closed`).
    pub event: String,
}

/// The chat products chatbridge understands: a source instance's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Smartsupp's legacy "POST hook" (finished, missed and offline chats).
    Smartsupp,
    /// Smartsupp's REST API v2 webhooks (`conversation.closed`, fetched).
    SmartsuppV2,
    /// tawk.to (`chat:transcript_created`, `ticket:create`).
    Tawk,
    /// Crisp plugin hooks (`session:set_state` to `resolved`, fetched).
    Crisp,
    /// LiveChat, the Text platform (`incoming_chat`; `chat_deactivated`, fetched).
    LiveChat,
    /// Tidio (`conversation.solved_*`, fetched).
    Tidio,
    /// Olark (a form-encoded transcript per finished chat or offline message).
    Olark,
}

/// How a product proves a request is its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A secret token in the URL (`/hooks/NAME/{token}`): the product can only be given a URL.
    UrlToken,
    /// An HMAC over the raw bytes, in a header.
    Signature(Scheme),
    /// The secret itself inside the body (LiveChat's `secret_key`), removed before storing.
    BodySecret,
}

impl Source {
    /// Every product.
    pub const ALL: [Self; 7] = [
        Self::Smartsupp,
        Self::SmartsuppV2,
        Self::Tawk,
        Self::Crisp,
        Self::LiveChat,
        Self::Tidio,
        Self::Olark,
    ];

    /// The product's name: a source instance's `type`, the first part of its conversation
    /// ids, and `conversation.source` in templates.
    pub fn name(self) -> &'static str {
        match self {
            Self::Smartsupp => "smartsupp",
            Self::SmartsuppV2 => "smartsupp-v2",
            Self::Tawk => "tawk",
            Self::Crisp => "crisp",
            Self::LiveChat => "livechat",
            Self::Tidio => "tidio",
            Self::Olark => "olark",
        }
    }

    /// The product of that name ([`Source::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// How its requests prove they are its own.
    pub fn proof(self) -> Proof {
        match self {
            Self::Smartsupp | Self::Olark => Proof::UrlToken,
            Self::SmartsuppV2 => Proof::Signature(Scheme::SmartsuppV2),
            Self::Tawk => Proof::Signature(Scheme::Tawk),
            Self::Crisp => Proof::Signature(Scheme::Crisp),
            Self::Tidio => Proof::Signature(Scheme::Tidio),
            Self::LiveChat => Proof::BodySecret,
        }
    }

    /// Whether some of its conversations are fetched from its REST API, so that an
    /// instance needs `[sources.NAME.api]`.
    pub fn fetches(self) -> bool {
        self.api_root().is_some()
    }

    /// The keys of `[sources.NAME.api]` its fetches need, each with what to put there.
    pub fn api_keys(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::SmartsuppV2 => &[("token", "an access token of the Smartsupp REST API")],
            Self::Crisp => &[
                (
                    "identifier",
                    "the identifier of the plugin's production token",
                ),
                ("key", "the key of the plugin's production token"),
            ],
            Self::LiveChat => &[
                (
                    "identifier",
                    "the account id the personal access token belongs to",
                ),
                (
                    "token",
                    "a personal access token with the chats--all:ro scope",
                ),
            ],
            Self::Tidio => &[
                ("identifier", "the OpenAPI client id"),
                ("key", "the OpenAPI client secret"),
            ],
            Self::Smartsupp | Self::Tawk | Self::Olark => &[],
        }
    }

    /// Its public REST API, which `[sources.NAME.api] base_url` replaces (tests, proxies).
    pub fn api_root(self) -> Option<&'static str> {
        match self {
            Self::SmartsuppV2 => Some("https://api.smartsupp.com"),
            Self::Crisp => Some("https://api.crisp.chat"),
            Self::LiveChat => Some("https://api.livechatinc.com"),
            Self::Tidio => Some("https://api.tidio.com"),
            Self::Smartsupp | Self::Tawk | Self::Olark => None,
        }
    }

    /// The JSON document of a request body as it is kept: Olark's form-encoded `data=`
    /// decoded; every other product's body as it came.
    ///
    /// # Errors
    /// When a form-encoded body lacks its document.
    pub fn document(self, body: Bytes) -> Result<Bytes, SourceError> {
        match self {
            Self::Olark => olark::document(body),
            _ => Ok(body),
        }
    }

    /// Reads a kept document ([`Source::document`]) of instance `instance`.
    ///
    /// # Errors
    /// When the document is not one this product sends, or lacks what identifies its
    /// conversation; see [`SourceError`].
    pub fn read(self, document: &[u8], instance: &str) -> Result<Event, SourceError> {
        let whole = |c: Conversation| Event::Conversation(Box::new(c));
        match self {
            Self::Smartsupp => smartsupp::conversation(document).map(whole),
            Self::SmartsuppV2 => smartsupp_v2::read(document),
            Self::Tawk => tawk::read(document),
            Self::Crisp => crisp::read(document),
            Self::LiveChat => livechat::read(document),
            Self::Tidio => tidio::read(document),
            Self::Olark => olark::conversation(document, instance).map(whole),
        }
    }

    /// Reads the conversation a kept `event` of this product ends from the product's API.
    ///
    /// # Errors
    /// A classified [`api::FetchError`]; for a product that fetches nothing, a permanent one.
    pub async fn fetch(
        self,
        client: api::ApiClient<'_>,
        event: &[u8],
    ) -> Result<api::Fetched, api::FetchError> {
        match self {
            Self::SmartsuppV2 => smartsupp_v2::fetch(client, event).await,
            Self::Crisp => crisp::fetch(client, event).await,
            Self::LiveChat => livechat::fetch(client, event).await,
            Self::Tidio => tidio::fetch(client, event).await,
            Self::Smartsupp | Self::Tawk | Self::Olark => Err(api::FetchError::unreadable(
                "this product's webhooks carry their conversations; nothing is fetched",
            )),
        }
    }

    /// Parses a Smartsupp POST hook body, with the document as JSON: what previews and
    /// `check` read their sample chats with.
    ///
    /// # Errors
    /// When the body is not something this source sends; see [`SourceError`].
    pub fn parse(self, body: &[u8]) -> Result<Parsed, SourceError> {
        match self.read(body, self.name())? {
            Event::Conversation(conversation) => Ok(Parsed {
                conversation: *conversation,
                raw: serde_json::from_slice(body)?,
            }),
            Event::Fetch(_) | Event::Ignored(_) => Err(SourceError::MissingField("transcript")),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// What a product's parser gathers; [`Draft::finish`] derives the rest the same way for
/// every product whose payload does not state it: the transcript in time order, the
/// bounds from the messages, the status from who wrote, the agents, the subject.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// The product's account.
    pub account_id: String,
    /// The conversation within the account.
    pub channel_id: String,
    /// When stated by the product.
    pub started_at: Option<Timestamp>,
    /// When stated by the product.
    pub ended_at: Option<Timestamp>,
    /// When the event that ended it was sent: the end when neither the product nor a
    /// message says.
    pub event_at: Option<Timestamp>,
    /// `Some(Offline)` for an offline message; otherwise derived.
    pub status: Option<Status>,
    /// The product's own flags, when it sends them (Smartsupp's POST hook); otherwise
    /// derived from the status and the transcript.
    pub flags: Option<Flags>,
    /// The product's own statistics, when it sends them.
    pub stats: Stats,
    /// The visitor.
    pub visitor: Visitor,
    /// The transcript, in any order.
    pub messages: Vec<Message>,
    /// Pages viewed.
    pub pages: Vec<Page>,
    /// The visitor's rating.
    pub rating: Option<Rating>,
    /// A subject the product gave (a ticket form's); otherwise the default.
    pub subject: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// The team it was routed to.
    pub department: Option<String>,
}

impl Draft {
    /// The conversation of `source`. Without a stated status, one nobody but the visitor
    /// wrote in is missed, else completed: products other than Smartsupp's POST hook carry
    /// no such flag, and "nobody answered" is what a help desk must act on (inferred, as the
    /// reference notes per product).
    pub fn finish(self, source: Source) -> Conversation {
        let mut messages = self.messages;
        // Stable: equal instants keep the product's order.
        messages.sort_by_key(|m| m.sent_at);
        for m in messages
            .iter_mut()
            .filter(|m| m.kind == MessageKind::Visitor && m.author_name.is_none())
        {
            m.author_name.clone_from(&self.visitor.name);
        }
        let wrote = |kind| messages.iter().any(|m| m.kind == kind);
        let (visitor_wrote, agent_wrote) = (wrote(MessageKind::Visitor), wrote(MessageKind::Agent));
        let status = self.status.unwrap_or(if agent_wrote {
            Status::Completed
        } else {
            Status::Missed
        });
        let started_at = self
            .started_at
            .or_else(|| messages.iter().filter_map(|m| m.sent_at).min())
            .or(self.event_at);
        let ended_at = self
            .ended_at
            .or_else(|| messages.iter().filter_map(|m| m.sent_at).max())
            .or(self.event_at)
            .or(started_at);
        let flags = self.flags.unwrap_or_else(|| Flags {
            chat: visitor_wrote && agent_wrote,
            missed: status == Status::Missed,
            triggered: messages.iter().any(|m| m.triggered_by.is_some()),
            offline: status == Status::Offline,
            completed: status == Status::Completed,
            dropped: status == Status::Dropped,
        });
        let subject = self
            .subject
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| Conversation::default_subject(status, &self.visitor, &messages));
        Conversation {
            id: ConversationId::new(source.name(), &self.account_id, &self.channel_id),
            source: source.name().to_owned(),
            account_id: self.account_id,
            channel_id: self.channel_id,
            started_at,
            ended_at,
            status,
            flags,
            stats: self.stats,
            rating: self.rating,
            visitor: self.visitor,
            pages: self.pages,
            agents: agents(&messages),
            messages,
            subject,
            tags: self.tags,
            department: self.department,
        }
    }
}

/// Distinct names of the human agents who took part, in order of appearance: authors of
/// agent messages other than automatic ones, and agents named by `agent.*` system events
/// (one who joined and said nothing still took part).
pub(crate) fn agents(messages: &[Message]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    messages
        .iter()
        .filter(|m| match m.kind {
            MessageKind::Agent => m.triggered_by.is_none(),
            MessageKind::System => m.event.as_deref().is_some_and(|e| e.starts_with("agent.")),
            MessageKind::Visitor => false,
        })
        .filter_map(|m| m.author_name.as_deref())
        .filter(|name| seen.insert(*name))
        .map(str::to_owned)
        .collect()
}

/// A product's event document and the event's name, read from `key` (`event`, `topic`,
/// `action`): what every webhook reader starts with.
///
/// # Errors
/// When the body is not a JSON object, or names no event.
pub(crate) fn envelope<'a>(
    body: &'a [u8],
    key: &'static str,
) -> Result<(lenient::Node<'a>, String), SourceError> {
    let root = lenient::Node::parse(body)?;
    if root.entries().is_none() {
        return Err(SourceError::NotAnObject);
    }
    let event = lenient::text(root.get(key)).ok_or(SourceError::MissingField(key))?;
    Ok((root, event))
}

/// An object's entries as variables labelled with their keys, values as sent: custom fields
/// and session fields, which products key by name and label no further.
pub(crate) fn keyed_variables<'n, 'a: 'n>(
    entries: impl IntoIterator<Item = &'n (std::borrow::Cow<'a, str>, lenient::Node<'a>)>,
) -> std::collections::BTreeMap<String, crate::model::Variable> {
    entries
        .into_iter()
        .map(|(key, value)| {
            (
                key.to_string(),
                crate::model::Variable {
                    label: key.to_string(),
                    value: value.to_value(),
                },
            )
        })
        .collect()
}

/// A two-letter country code as the model keeps it (upper case), or `None` for anything
/// else: products put a code or a name in the same field.
pub(crate) fn country_code(text: &str) -> Option<String> {
    (text.len() == 2 && text.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| text.to_ascii_uppercase())
}

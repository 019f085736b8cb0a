//! The normalized conversation: chatbridge's own vocabulary for one chat, whatever product
//! it came from.
//!
//! Every source module turns its vendor payload into a [`Conversation`]; every connector and
//! template reads only this (plus the untouched original payload, offered to templates as
//! `raw`). Field names are part of the template contract documented in `DESIGN.md`, so they
//! change only with a migration note.
//!
//! Values are parsed at the edge: an [`Email`] is an address, a [`Timestamp`] is an instant,
//! and a conversation without an id cannot be built. Everything else a chat product may leave
//! out is an `Option` or an empty collection, never a placeholder string.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The idempotency key of a conversation's deliveries to one connector instance: the same
/// for every attempt and version, so a target that dedupes by it makes one object. The
/// store keeps it with each delivery; connectors send it.
pub fn delivery_key(connector: &str, conversation_id: &str) -> String {
    format!("cb:{connector}:{conversation_id}")
}

/// Values a completed step picked out of its answer (`ticket_id`), by output name: what the
/// store keeps between attempts and connectors read in later steps and versions.
pub type StepOutputs = BTreeMap<String, serde_json::Value>;

/// Stable identity of a conversation across versions: `{source}:{account}:{conversation}`,
/// for example `smartsupp:208:55039`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConversationId(String);

impl ConversationId {
    /// Joins the parts that identify a conversation within its source.
    pub fn new(source: &str, account_id: &str, channel_id: &str) -> Self {
        Self(format!("{source}:{account_id}:{channel_id}"))
    }

    /// Wraps an id read back from the store, where it was built by [`ConversationId::new`].
    pub fn from_stored(id: String) -> Self {
        Self(id)
    }

    /// The id as text, for keys, URLs and logs.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An instant, serialized as RFC 3339 in UTC with millisecond precision
/// (`2015-03-27T15:33:59.703Z`), which every target API and template filter understands.
///
/// Kept as a `time` date-time, not a `jiff` timestamp (jiff serves time zones, HTTP dates
/// and durations): jiff's instants end at 9999-12-30T22:00Z, so that any offset can be
/// applied, and a chat's times up to the end of 9999 are kept as they came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The current instant.
    pub fn now() -> Self {
        Self(OffsetDateTime::now_utc())
    }

    /// Milliseconds since the Unix epoch; `None` when out of the representable range.
    pub fn from_unix_millis(ms: i64) -> Option<Self> {
        let nanos = i128::from(ms) * 1_000_000;
        OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .map(Self)
    }

    /// Milliseconds since the Unix epoch, the store's representation.
    pub fn unix_millis(self) -> i64 {
        // An OffsetDateTime spans years ±9999, i.e. about 3e17 ms: within i64.
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// Parses RFC 3339 text.
    ///
    /// # Errors
    /// When the text is not an RFC 3339 date-time, or is one whose UTC time falls outside
    /// years ±9999 (`9999-12-31T23:30:00-01:00`).
    pub fn parse(text: &str) -> Result<Self, InvalidTimestamp> {
        let parsed =
            OffsetDateTime::parse(text, &Rfc3339).map_err(|e| InvalidTimestamp(e.to_string()))?;
        parsed
            .checked_to_offset(time::UtcOffset::UTC)
            .map(Self)
            .ok_or_else(|| InvalidTimestamp("its UTC time is out of range".into()))
    }

    /// The underlying date-time, for the time zone arithmetic of templates.
    pub fn as_datetime(self) -> OffsetDateTime {
        self.0
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn since(self, earlier: Self) -> std::time::Duration {
        (self.0 - earlier.0)
            .try_into()
            .unwrap_or(std::time::Duration::ZERO)
    }

    /// This instant moved by `by` (saturating at the representable range).
    pub fn plus(self, by: std::time::Duration) -> Self {
        Self(
            self.0
                .saturating_add(time::Duration::try_from(by).unwrap_or(time::Duration::MAX)),
        )
    }

    /// This instant moved back by `by` (saturating at the representable range).
    pub fn minus(self, by: std::time::Duration) -> Self {
        Self(
            self.0
                .saturating_sub(time::Duration::try_from(by).unwrap_or(time::Duration::MAX)),
        )
    }

    /// The RFC 3339 text of a year 0–9999 instant, written digit by digit: every message of
    /// every conversation carries one, and it is serialized at ingest and again for each
    /// delivery, where the formatting machinery was a measurable share of the time.
    fn rfc3339(self) -> Option<[u8; 24]> {
        let t = self.0.to_offset(time::UtcOffset::UTC);
        let year = u32::try_from(t.year()).ok().filter(|&y| y <= 9999)?;
        let mut text = *b"0000-00-00T00:00:00.000Z";
        let fields = [
            (0, 4, year),
            (5, 2, u32::from(u8::from(t.month()))),
            (8, 2, u32::from(t.day())),
            (11, 2, u32::from(t.hour())),
            (14, 2, u32::from(t.minute())),
            (17, 2, u32::from(t.second())),
            (20, 3, u32::from(t.millisecond())),
        ];
        for (at, width, mut value) in fields {
            for digit in text[at..at + width].iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        Some(text)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(text) = self.rfc3339() {
            return f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?);
        }
        let t = self.0.to_offset(time::UtcOffset::UTC);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339() {
            Some(text) => serializer
                .serialize_str(std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?),
            None => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A syntactically plausible e-mail address: one `@`, something on each side, at most 254
/// characters, no white space, control characters or the characters that quote, group or
/// separate addresses (`" ( ) , : ; < > [ \ ]`).
///
/// Deliberately loose: help desks do their own validation, and rejecting a real if unusual
/// address would lose a contact. What it keeps out is text that would break a header or turn
/// one requester into several (`eve@example.com\r\nBcc: victim@example.org`,
/// `a,victim@example.org`); those characters are legal only in quoted local parts and
/// address literals, which chat visitors do not type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

/// The characters that quote, comment, group or separate addresses in a list of them
/// (RFC 5322 `specials` but `@` and `.`): no [`Email`] holds one, and a display name put
/// before an address loses them ([`crate::render::display_name`]).
pub const ADDRESS_SPECIALS: &[char] = &['"', '(', ')', ',', ':', ';', '<', '>', '[', '\\', ']'];

/// Why a text is not accepted as a [`Timestamp`].
#[derive(Debug, thiserror::Error)]
#[error("not an RFC 3339 time: {0}")]
pub struct InvalidTimestamp(String);

/// Why a text is not accepted as an [`Email`].
#[derive(Debug, thiserror::Error)]
#[error("not an e-mail address")]
pub struct InvalidEmail;

impl Email {
    /// # Errors
    /// When the text is not an address by the rule above.
    pub fn parse(text: &str) -> Result<Self, InvalidEmail> {
        let text = text.trim();
        let (local, domain) = text.split_once('@').ok_or(InvalidEmail)?;
        let plausible = !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && text.len() <= 254
            && !text
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || ADDRESS_SPECIALS.contains(&c));
        if plausible {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidEmail)
        }
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = InvalidEmail;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

/// How a conversation ended, derived with the precedence offline > missed > dropped >
/// completed (a chat can carry several flags; the status is the one a help desk should act on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A chat that ended normally.
    Completed,
    /// The visitor wrote and nobody answered.
    Missed,
    /// The visitor left a message while no agent was online.
    Offline,
    /// The chat ended without a regular close.
    Dropped,
}

impl Status {
    /// The status as used in templates, tags and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Missed => "missed",
            Self::Offline => "offline",
            Self::Dropped => "dropped",
        }
    }
}

/// The source's own flags, kept all together because they are not exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    /// Both visitor and agent wrote.
    pub chat: bool,
    /// The agent did not answer the visitor's last message.
    pub missed: bool,
    /// At least one automatic (trigger) message was sent.
    pub triggered: bool,
    /// An offline message.
    pub offline: bool,
    /// Closed with every message answered.
    pub completed: bool,
    /// Ended without a regular close.
    pub dropped: bool,
}

/// The source's own statistics, carried as given (never recomputed: the source counts
/// differently than a recount of the transcript would).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Conversation length in seconds.
    pub duration_s: Option<u64>,
    /// Average agent response time in seconds.
    pub avg_response_s: Option<u64>,
    /// Time to the first human agent reply in seconds.
    pub first_response_s: Option<u64>,
    /// Messages, as the source counts them.
    pub messages_count: Option<u64>,
    /// Words, as the source counts them.
    pub words_count: Option<u64>,
}

/// The visitor's rating of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    /// The score on the source's scale (Smartsupp: 1 to 5); `None` when only a comment came.
    pub score: Option<i64>,
    /// The visitor's comment, when one was written.
    pub comment: Option<String>,
}

/// One custom value the website attached to the visitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variable {
    /// Human label; the key when the source gave none.
    pub label: String,
    /// The value as sent: a string, number, boolean or null.
    pub value: serde_json::Value,
}

/// The website visitor. Every field is optional: anonymous visitors are the norm.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Visitor {
    /// The source's visitor or contact id.
    pub id: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// E-mail address, when one was given and looks like an address.
    pub email: Option<Email>,
    /// Phone number, as typed.
    pub phone: Option<String>,
    /// The agents' note about the visitor.
    pub note: Option<String>,
    /// Routing group key.
    pub group: Option<String>,
    /// IP address (v4 or v6).
    pub ip: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Country name.
    pub country: Option<String>,
    /// ISO 3166-1 alpha-2 code, upper case.
    pub country_code: Option<String>,
    /// Browser user agent.
    pub user_agent: Option<String>,
    /// Browser platform (`navigator.platform`).
    pub platform: Option<String>,
    /// Referrer of the visit.
    pub referer: Option<String>,
    /// Custom values by key, sorted by key.
    pub variables: BTreeMap<String, Variable>,
}

/// A page the visitor viewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Page URL.
    pub url: Option<String>,
    /// Page title.
    pub title: Option<String>,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    /// The website visitor.
    Visitor,
    /// An agent, human or automatic (see [`Message::triggered_by`]).
    Agent,
    /// An event of the chat itself (an agent joined, the chat was closed).
    System,
}

/// One line of the transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub kind: MessageKind,
    /// The source's author id (`visitor:…`, `agent:3`, `system`).
    pub author_id: Option<String>,
    /// The author's display name.
    pub author_name: Option<String>,
    /// The text; for system messages a readable sentence made from [`Message::event`].
    pub text: String,
    /// When it was sent.
    pub sent_at: Option<Timestamp>,
    /// For automatic messages, the name of the rule that sent it.
    pub triggered_by: Option<String>,
    /// For system messages, the source's event code (`agent.join`), kept verbatim even when
    /// unknown to us.
    pub event: Option<String>,
    /// Files sent with the message, as links to where the product keeps them.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// A file sent in the chat, kept by the product: the ticket gets the link, not the file, so
/// nothing a visitor uploads passes through chatbridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Where the product serves it.
    pub url: String,
    /// The file's name, when the product gives one.
    pub name: Option<String>,
}

/// One conversation, normalized. Built by a source module; read by connectors and templates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Stable id across versions.
    pub id: ConversationId,
    /// The chat product: a [`crate::sources::Source`] name (`smartsupp`, `tawk`, ...).
    pub source: String,
    /// The product's account (one company).
    pub account_id: String,
    /// The conversation's id within the account.
    pub channel_id: String,
    /// When the conversation began.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// The one status a help desk acts on.
    pub status: Status,
    /// All the source's flags.
    pub flags: Flags,
    /// The source's statistics.
    pub stats: Stats,
    /// The visitor's rating, when given.
    pub rating: Option<Rating>,
    /// The visitor.
    pub visitor: Visitor,
    /// Pages viewed, in the source's order.
    pub pages: Vec<Page>,
    /// The transcript, oldest first.
    pub messages: Vec<Message>,
    /// Distinct names of the human agents who took part, in order of appearance.
    pub agents: Vec<String>,
    /// A one-line summary for ticket subjects.
    pub subject: String,
    /// Labels the product or its agents put on the conversation (Olark, LiveChat and
    /// Smartsupp v2 tags), in the product's order.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The team the conversation was routed to, by name, when the product names one
    /// (Olark's group).
    #[serde(default)]
    pub department: Option<String>,
}

/// Longest subject taken from a visitor's first line, in characters.
const SUBJECT_MAX_CHARS: usize = 80;

impl Conversation {
    /// A subject for a ticket: the visitor's first non-empty line (shortened), else
    /// "Chat with NAME", else a neutral phrase for the status.
    pub fn default_subject(status: Status, visitor: &Visitor, messages: &[Message]) -> String {
        let first_line = messages
            .iter()
            .filter(|m| m.kind == MessageKind::Visitor)
            .flat_map(|m| m.text.lines())
            .map(str::trim)
            .find(|line| !line.is_empty());
        if let Some(line) = first_line {
            return shorten(line, SUBJECT_MAX_CHARS);
        }
        let who = visitor
            .name
            .as_deref()
            .or(visitor.email.as_ref().map(Email::as_str));
        match (status, who) {
            (Status::Offline, Some(who)) => format!("Offline message from {who}"),
            (Status::Offline, None) => "Offline message".to_owned(),
            (_, Some(who)) => format!("Chat with {who}"),
            (Status::Missed, None) => "Missed chat".to_owned(),
            (_, None) => "Chat with a visitor".to_owned(),
        }
    }
}

/// Cuts `text` to at most `max` characters on a character boundary, marking the cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", text[..cut].trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339_utc_with_milliseconds() {
        let t = Timestamp::from_unix_millis(1_427_470_439_703).unwrap();
        assert_eq!(t.to_string(), "2015-03-27T15:33:59.703Z");
        assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
        assert_eq!(t.unix_millis(), 1_427_470_439_703);
    }

    #[test]
    fn timestamps_serialize_as_they_print_in_every_year_range() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
            (-62_167_219_200_000, "0000-01-01T00:00:00.000Z"),
            (-62_167_219_200_001, "-001-12-31T23:59:59.999Z"),
        ] {
            let t = Timestamp::from_unix_millis(ms).unwrap();
            assert_eq!(t.to_string(), text);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{text}\""));
        }
    }

    #[test]
    fn email_refuses_header_injection_and_accepts_plain_addresses() {
        assert!(Email::parse("eve@example.com\r\nBcc: victim@example.org").is_err());
        assert!(Email::parse("no-at-sign").is_err());
        assert!(Email::parse("a@b@c").is_err());
        for separated in [
            "a,victim@example.org",
            "a@b.example>, <c@d.example",
            "\"a b\"@c.example",
        ] {
            assert!(Email::parse(separated).is_err(), "{separated}");
        }
        assert_eq!(
            Email::parse("o'neil+chat*=x@example.com").unwrap().as_str(),
            "o'neil+chat*=x@example.com"
        );
        assert_eq!(
            Email::parse(" jane@example.com ").unwrap().as_str(),
            "jane@example.com"
        );
    }

    #[test]
    fn subject_is_the_first_visitor_line_shortened_on_a_char_boundary() {
        let message = |text: &str| Message {
            kind: MessageKind::Visitor,
            author_id: None,
            author_name: None,
            text: text.to_owned(),
            sent_at: None,
            triggered_by: None,
            event: None,
            attachments: Vec::new(),
        };
        let long = "ž".repeat(100);
        let subject = Conversation::default_subject(
            Status::Completed,
            &Visitor::default(),
            &[message(&long)],
        );
        assert_eq!(subject.chars().count(), SUBJECT_MAX_CHARS + 1);
        let subject = Conversation::default_subject(
            Status::Completed,
            &Visitor::default(),
            &[message("  \n  Where is my order?\nsecond")],
        );
        assert_eq!(subject, "Where is my order?");
    }

    #[test]
    fn subject_falls_back_to_the_visitor_then_the_status() {
        let named = Visitor {
            name: Some("Jane".into()),
            ..Visitor::default()
        };
        assert_eq!(
            Conversation::default_subject(Status::Completed, &named, &[]),
            "Chat with Jane"
        );
        assert_eq!(
            Conversation::default_subject(Status::Offline, &Visitor::default(), &[]),
            "Offline message"
        );
    }
}

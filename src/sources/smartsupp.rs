//! Smartsupp's legacy "POST hook": one JSON document per finished, missed or offline chat.
//!
//! Field reference: `reference/smartsupp-post-hook.md` in the project's shared material.
//! What this module relies on, and why:
//!
//! - `accountId` and `channel.id` identify the conversation; they are the only required
//!   fields. Everything else may be `null`, `""`, absent or of another type (read through
//!   [`lenient`]), because Smartsupp documents no retries: a 4xx for an odd payload would
//!   lose the chat.
//! - Instants are epoch milliseconds, durations whole seconds. A value below 10^11 in an
//!   instant field is taken as seconds (other products send seconds; no Smartsupp evidence).
//! - The transcript is sorted by `sentAt`, array order breaking ties; missing `beginAt` /
//!   `endAt` are derived from the messages ([`Draft::finish`], as for every product).
//! - The author kind comes from `type`; `from` (`visitor:…`, `agent:3`, `system`) decides
//!   only when `type` is unknown. The pre-2018 shape (`groupKey`, integer or `null` `from`,
//!   `email` on each message) is accepted as well.
//! - System messages carry an event code (`agent.join`) in `content`; it is kept verbatim
//!   in `event`, and `text` is a readable sentence (the code itself when unknown).

use std::collections::BTreeMap;

use serde_json::Value;

use super::lenient::{self, Node};
use super::{Draft, Source, SourceError};
use crate::model::{
    Conversation, Email, Flags, Message, MessageKind, Page, Rating, Stats, Status, Variable,
    Visitor,
};

/// Reads the conversation of a POST hook body.
///
/// # Errors
/// When the body is not JSON, not an object, or lacks `accountId` or `channel.id`.
pub fn conversation(body: &[u8]) -> Result<Conversation, SourceError> {
    normalize(&Node::parse(body)?)
}

fn normalize(root: &Node<'_>) -> Result<Conversation, SourceError> {
    if root.entries().is_none() {
        return Err(SourceError::NotAnObject);
    }
    let empty = Node::Object(Vec::new());
    let channel = lenient::object(root.get("channel")).unwrap_or(&empty);
    let visitor_obj = lenient::object(root.get("visitor")).unwrap_or(&empty);

    let account_id =
        lenient::text(root.get("accountId")).ok_or(SourceError::MissingField("accountId"))?;
    let channel_id =
        lenient::text(channel.get("id")).ok_or(SourceError::MissingField("channel.id"))?;

    let flags = Flags {
        chat: lenient::flag(channel.get("isChat")),
        missed: lenient::flag(channel.get("isMissed")),
        triggered: lenient::flag(channel.get("isTriggered")),
        offline: lenient::flag(channel.get("isOffline")),
        completed: lenient::flag(channel.get("isCompleted")),
        dropped: lenient::flag(channel.get("isDropped")),
    };
    let status = if flags.offline {
        Status::Offline
    } else if flags.missed {
        Status::Missed
    } else if flags.dropped {
        Status::Dropped
    } else {
        Status::Completed
    };

    Ok(Draft {
        account_id,
        channel_id,
        started_at: lenient::instant(root.get("beginAt")),
        ended_at: lenient::instant(root.get("endAt")),
        status: Some(status),
        flags: Some(flags),
        stats: Stats {
            duration_s: lenient::unsigned(channel.get("duration")),
            avg_response_s: lenient::unsigned(channel.get("avgResponse")),
            first_response_s: lenient::unsigned(channel.get("firstResponse")),
            messages_count: lenient::unsigned(channel.get("messagesCount")),
            words_count: lenient::unsigned(channel.get("wordsCount")),
        },
        rating: rating(channel),
        // Smartsupp leaves `name` out of some visitor messages; `finish` gives them the
        // visitor's.
        visitor: visitor(visitor_obj),
        pages: lenient::array(root.get("paths"))
            .iter()
            .filter(|p| p.entries().is_some())
            .map(|p| Page {
                url: lenient::text(p.get("url")),
                title: lenient::text(p.get("title")),
            })
            .filter(|p| p.url.is_some() || p.title.is_some())
            .collect(),
        messages: lenient::array(root.get("messages"))
            .iter()
            .filter(|m| m.entries().is_some())
            .map(message)
            .collect(),
        ..Draft::default()
    }
    .finish(Source::Smartsupp))
}

/// `rating` null means "not rated"; `ratingDesc` is `""` when rated without a comment.
fn rating(channel: &Node<'_>) -> Option<Rating> {
    let score = lenient::integer(channel.get("rating"));
    let comment = lenient::text(channel.get("ratingDesc"));
    (score.is_some() || comment.is_some()).then_some(Rating { score, comment })
}

fn visitor(v: &Node<'_>) -> Visitor {
    let variables = lenient::object(v.get("variables"))
        .and_then(Node::entries)
        .unwrap_or_default()
        .iter()
        .map(|(key, entry)| {
            // The documented form is {label, value}; the newer JS API sends flat values.
            let documented = entry.get("value").is_some() || entry.get("label").is_some();
            let (label, value) = if documented {
                (
                    lenient::text(entry.get("label")),
                    entry.get("value").map_or(Value::Null, Node::to_value),
                )
            } else {
                (None, entry.to_value())
            };
            let label = label.unwrap_or_else(|| key.as_ref().to_owned());
            (key.as_ref().to_owned(), Variable { label, value })
        })
        .collect::<BTreeMap<_, _>>();
    Visitor {
        id: lenient::text(v.get("id")),
        name: lenient::text(v.get("name")),
        email: lenient::text(v.get("email")).and_then(|e| Email::parse(&e).ok()),
        phone: lenient::text(v.get("phone")),
        note: lenient::text(v.get("note")),
        group: lenient::text(v.get("group")).or_else(|| lenient::text(v.get("groupKey"))),
        ip: lenient::text(v.get("ipAddress")),
        city: lenient::text(v.get("city")),
        country: lenient::text(v.get("country")),
        country_code: lenient::text(v.get("countryCode")).map(|c| c.to_uppercase()),
        user_agent: lenient::text(v.get("userAgent")),
        platform: lenient::text(v.get("platform")),
        referer: lenient::text(v.get("referer")),
        variables,
    }
}

fn message(m: &Node<'_>) -> Message {
    let kind_name = lenient::text(m.get("type")).map(|t| t.to_lowercase());
    let author_id = lenient::text(m.get("from"));
    let author_prefix = author_id
        .as_deref()
        .and_then(|from| from.split_once(':'))
        .map(|(p, _)| p);
    let kind = match kind_name.as_deref() {
        Some("system") => MessageKind::System,
        Some("visitor" | "contact") => MessageKind::Visitor,
        Some("agent" | "bot" | "trigger") => MessageKind::Agent,
        _ => match author_prefix {
            Some("visitor") => MessageKind::Visitor,
            Some("agent") => MessageKind::Agent,
            _ => MessageKind::System,
        },
    };
    let author_name = lenient::text(m.get("name"));
    let content = lenient::raw_text(m.get("content")).unwrap_or_default();
    let (text, event) = if kind == MessageKind::System {
        let code = content.trim().to_owned();
        (
            describe_event(&code, author_name.as_deref()),
            Some(code).filter(|c| !c.is_empty()),
        )
    } else {
        (content, None)
    };
    Message {
        kind,
        author_id,
        author_name,
        text,
        sent_at: lenient::instant(m.get("sentAt")),
        triggered_by: lenient::text(m.get("triggeredBy")),
        event,
        attachments: Vec::new(),
    }
}

/// A readable sentence for a system event code; unknown codes are shown as they are,
/// so nothing is hidden and nothing is guessed.
fn describe_event(code: &str, who: Option<&str>) -> String {
    match (code, who) {
        ("agent.join", Some(who)) => format!("{who} joined the chat"),
        ("agent.join", None) => "An agent joined the chat".to_owned(),
        ("agent.leave", Some(who)) => format!("{who} left the chat"),
        ("close.visitorClose", Some(who)) => format!("{who} closed the chat"),
        ("close.visitorClose", None) => "The visitor closed the chat".to_owned(),
        ("", _) => "(system event)".to_owned(),
        (code, _) => code.to_owned(),
    }
}

/// Human agents in order of appearance: authors of agent messages and agents named by
/// `agent.*` events. Automatic messages (`triggered_by`, empty names) are not people.
/// Linear in the messages: a payload may name tens of thousands of distinct authors.
#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The conversation of `doc` sent as a hook body.
    fn read(doc: &Value) -> Result<Conversation, SourceError> {
        conversation(doc.to_string().as_bytes())
    }

    #[test]
    fn status_precedence_is_offline_missed_dropped_completed() {
        let with = |flags: Value| {
            let doc = json!({"accountId": 1, "channel": flags});
            read(&doc).unwrap().status
        };
        assert_eq!(
            with(json!({"id": 1, "isOffline": true, "isMissed": true})),
            Status::Offline
        );
        assert_eq!(
            with(json!({"id": 1, "isMissed": true, "isDropped": true})),
            Status::Missed
        );
        assert_eq!(with(json!({"id": 1, "isDropped": true})), Status::Dropped);
        assert_eq!(with(json!({"id": 1})), Status::Completed);
    }

    #[test]
    fn ids_are_required_and_may_be_strings() {
        let doc = json!({"accountId": "208", "channel": {"id": "55039"}});
        assert_eq!(read(&doc).unwrap().id.as_str(), "smartsupp:208:55039");
        let err = read(&json!({"channel": {"id": 1}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "required field `accountId` is missing or empty"
        );
        let err = read(&json!({"accountId": 1, "channel": {"id": ""}})).unwrap_err();
        assert!(err.to_string().contains("channel.id"));
        assert!(matches!(read(&json!([1])), Err(SourceError::NotAnObject)));
    }

    #[test]
    fn instants_in_seconds_are_recognized() {
        let doc = json!({"accountId": 1, "channel": {"id": 1}, "beginAt": 1_718_271_000});
        let started = read(&doc).unwrap().started_at.unwrap();
        assert_eq!(started.to_string(), "2024-06-13T09:30:00.000Z");
    }

    #[test]
    fn missing_bounds_come_from_the_messages_and_messages_are_sorted() {
        let doc = json!({"accountId": 1, "channel": {"id": 1}, "messages": [
            {"type": "agent", "name": "Sam", "from": "agent:3", "content": "second", "sentAt": 2_000_000_000_000_i64},
            {"type": "visitor", "from": "visitor:x", "content": "first", "sentAt": 1_999_999_999_000_i64},
        ]});
        let c = read(&doc).unwrap();
        assert_eq!(c.messages[0].text, "first");
        assert_eq!(c.started_at, c.messages[0].sent_at);
        assert_eq!(c.ended_at, c.messages[1].sent_at);
        assert_eq!(c.agents, vec!["Sam".to_owned()]);
    }

    #[test]
    fn unknown_types_fall_back_to_the_author_prefix() {
        let doc = json!({"accountId": 1, "channel": {"id": 1}, "messages": [
            {"type": "file", "from": "visitor:abc", "content": "x.pdf"},
            {"type": "bot", "from": "system", "content": "hi"},
            {"type": "weird", "from": null, "content": "code.x"},
        ]});
        let kinds: Vec<_> = read(&doc)
            .unwrap()
            .messages
            .iter()
            .map(|m| m.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                MessageKind::Visitor,
                MessageKind::Agent,
                MessageKind::System
            ]
        );
    }

    #[test]
    fn flat_variables_get_their_key_as_label() {
        let doc = json!({"accountId": 1, "channel": {"id": 1},
            "visitor": {"variables": {"plan": "pro", "n": {"value": 3}}}});
        let vars = read(&doc).unwrap().visitor.variables;
        assert_eq!(vars["plan"].label, "plan");
        assert_eq!(vars["plan"].value, json!("pro"));
        assert_eq!(vars["n"].label, "n");
    }
}

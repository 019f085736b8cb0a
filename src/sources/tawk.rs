//! tawk.to webhooks (<https://developer.tawk.to/webhooks>): `chat:transcript_created`
//! carries a finished chat's transcript, `ticket:create` an offline message; `chat:start`
//! and `chat:end` (no messages) are acknowledged and ignored.
//!
//! Requests are signed (`X-Tawk-Signature`, [`super::signature::Scheme::Tawk`]) and carry an
//! `X-Hook-Event-Id` that stays the same across tawk.to's retries (for up to 12 hours after
//! a non-2xx or a 30 s timeout). A retry resends the same bytes, so the stored body's digest
//! already recognises it: the event id adds nothing the digest does not catch.
//!
//! Field meanings: the envelope (`event`, `time`, `property {id, name}`) is documented;
//! the transcript's shape (`chat.messages[] {sender {t, n}, type, msg, time}`, `t` being
//! `v`isitor, `a`gent or `s`ystem) is inferred from several integrations that agree. tawk.to
//! sends no rating, pages or IP in these events.

use super::lenient::{self, Node};
use super::{Draft, Event, Source, SourceError, country_code, envelope};
use crate::model::{Attachment, Email, Message, MessageKind, Status, Visitor};

/// Reads a tawk.to webhook.
///
/// # Errors
/// When the body is not a JSON object, lacks `event`, or an event that carries a
/// conversation lacks `property.id` or the chat's or ticket's id.
pub fn read(body: &[u8]) -> Result<Event, SourceError> {
    let (root, event) = envelope(body, "event")?;
    let draft = match event.as_str() {
        "chat:transcript_created" => transcript(&root)?,
        "ticket:create" => ticket(&root)?,
        _ => return Ok(Event::Ignored(event)),
    };
    Ok(Event::Conversation(Box::new(draft.finish(Source::Tawk))))
}

fn property(root: &Node<'_>) -> Result<String, SourceError> {
    lenient::text(root.at(&["property", "id"])).ok_or(SourceError::MissingField("property.id"))
}

/// A finished chat: `chat {id, visitor, messages}`.
fn transcript(root: &Node<'_>) -> Result<Draft, SourceError> {
    let chat = root.get("chat");
    let channel_id = lenient::text(chat.and_then(|c| c.get("id")))
        .ok_or(SourceError::MissingField("chat.id"))?;
    let messages = lenient::array(chat.and_then(|c| c.get("messages")))
        .iter()
        .filter(|m| m.entries().is_some())
        .map(message)
        .collect();
    Ok(Draft {
        account_id: property(root)?,
        channel_id,
        event_at: lenient::instant(root.get("time")),
        visitor: visitor(chat.and_then(|c| c.get("visitor"))),
        messages,
        ..Draft::default()
    })
}

/// An offline form: `requester {name, email}`, `ticket {id, humanId, subject, message}`.
/// Its id is the ticket's, apart from chat ids: `tawk:{property}:ticket:{id}`.
fn ticket(root: &Node<'_>) -> Result<Draft, SourceError> {
    let ticket = root.get("ticket");
    let id = lenient::text(ticket.and_then(|t| t.get("id")))
        .ok_or(SourceError::MissingField("ticket.id"))?;
    let sent_at = lenient::instant(root.get("time"));
    let visitor = visitor(root.get("requester"));
    let text = lenient::raw_text(ticket.and_then(|t| t.get("message"))).unwrap_or_default();
    Ok(Draft {
        account_id: property(root)?,
        channel_id: format!("ticket:{id}"),
        event_at: sent_at,
        status: Some(Status::Offline),
        messages: vec![Message {
            kind: MessageKind::Visitor,
            author_id: None,
            author_name: visitor.name.clone(),
            text,
            sent_at,
            triggered_by: None,
            event: None,
            attachments: Vec::new(),
        }],
        visitor,
        subject: lenient::text(ticket.and_then(|t| t.get("subject"))),
        ..Draft::default()
    })
}

/// `{name, email, city, country}`; `country` is a two-letter code in every sample seen, and
/// is kept as the code when it is one.
fn visitor(v: Option<&Node<'_>>) -> Visitor {
    let field = |key| lenient::text(v.and_then(|v| v.get(key)));
    let country = field("country");
    Visitor {
        name: field("name"),
        email: field("email").and_then(|e| Email::parse(&e).ok()),
        city: field("city"),
        country_code: country.as_deref().and_then(country_code),
        country: country.filter(|c| country_code(c).is_none()),
        ..Visitor::default()
    }
}

/// `{sender {t, n}, type, msg, time}`. A `file` message's `msg` is taken as the file's link
/// when it is one (inferred: the integrations seen print it as the text).
fn message(m: &Node<'_>) -> Message {
    let kind = match lenient::text(m.at(&["sender", "t"])).as_deref() {
        Some("a") => MessageKind::Agent,
        Some("s") => MessageKind::System,
        _ => MessageKind::Visitor,
    };
    let text = lenient::raw_text(m.get("msg")).unwrap_or_default();
    let is_file = lenient::text(m.get("type")).as_deref() == Some("file");
    let attachments = if is_file && text.trim_start().starts_with("http") {
        vec![Attachment {
            url: text.trim().to_owned(),
            name: None,
        }]
    } else {
        Vec::new()
    };
    Message {
        kind,
        author_id: None,
        author_name: lenient::text(m.at(&["sender", "n"])),
        text,
        sent_at: lenient::instant(m.get("time")),
        triggered_by: None,
        event: None,
        attachments,
    }
}

//! Smartsupp's REST API v2 webhooks (<https://docs.smartsupp.com/rest-api/webhooks>): an
//! envelope `{type: "event_callback", event, timestamp, account_id, app_id, data}` per event,
//! signed with `X-Smartsupp-Hmac` ([`super::signature::Scheme::SmartsuppV2`]).
//!
//! `conversation.closed` (closed by an agent) and `conversation.closed_by_contact` end a
//! conversation; `conversation.rated` changes one already ended. None carries the
//! transcript or the contact's name and e-mail (the conversation names only `contact_id`),
//! so each is fetched, and a rating after closing becomes a later version of the same
//! conversation. Every other event (replies, visitors, contacts) is acknowledged and
//! ignored. Smartsupp re-delivers on anything but 200, so none of them is refused.
//!
//! `closed_by_contact`, and the data's shape beyond the envelope, are known from third-party
//! integrations rather than the documentation; a rated event's conversation id is read from
//! `data.conversation.id` or, failing that, `data.conversation_id` (inferred).

use serde_json::{Value, json};

use super::api::{ApiClient, Auth, FetchError, Fetched, segment};
use super::lenient::{self, Node};
use super::{Draft, Event, Source, SourceError, country_code, envelope};
use crate::model::{
    Attachment, Conversation, Email, Message, MessageKind, Rating, Status, Variable, Visitor,
};

/// The events that end or change a conversation: each fetches it.
const FETCHED: [&str; 3] = [
    "conversation.closed",
    "conversation.closed_by_contact",
    "conversation.rated",
];

/// Reads a Smartsupp v2 webhook.
///
/// # Errors
/// When the body is not a JSON object, lacks `event`, or a conversation event lacks
/// `account_id` or the conversation's id.
pub fn read(body: &[u8]) -> Result<Event, SourceError> {
    let (root, event) = envelope(body, "event")?;
    if !FETCHED.contains(&event.as_str()) {
        return Ok(Event::Ignored(event));
    }
    let account_id =
        lenient::text(root.get("account_id")).ok_or(SourceError::MissingField("account_id"))?;
    let conversation = lenient::text(root.at(&["data", "conversation", "id"]))
        .or_else(|| lenient::text(root.at(&["data", "conversation_id"])))
        .ok_or(SourceError::MissingField("data.conversation.id"))?;
    Ok(Event::fetch(
        Source::SmartsuppV2,
        account_id,
        &conversation,
        event,
    ))
}

/// Reads a closed or rated conversation with the REST API v2 (`Authorization: Bearer`):
/// the conversation, its messages, and its contact (names and e-mails are only there).
///
/// The answers' shapes are those third-party integrations report (the reference notes them):
/// a list may come bare or as `items`/`data`; a message's author is its `sub_type`
/// (`contact`, `agent`, `bot`, `trigger`, `system`) and its text `content`, a string or
/// `{text}`; the rating is the conversation's `rating` (`{value, text}` or a number), or the
/// rated event's `data.rating`. All inferred.
///
/// # Errors
/// A classified [`FetchError`].
pub async fn fetch(client: ApiClient<'_>, event: &[u8]) -> Result<Fetched, FetchError> {
    let root = Node::parse(event).map_err(|_| FetchError::unreadable("the kept event"))?;
    let account_id = lenient::text(root.get("account_id"))
        .ok_or_else(|| FetchError::unreadable("account_id"))?;
    let id = lenient::text(root.at(&["data", "conversation", "id"]))
        .or_else(|| lenient::text(root.at(&["data", "conversation_id"])))
        .ok_or_else(|| FetchError::unreadable("data.conversation.id"))?;
    let auth = Auth::Bearer(client.token()?);
    let path = format!("/v2/conversations/{}", segment(&id)?);
    let conversation = unwrapped(client.get(&path, &auth, &[]).await?);
    let messages = client.get(&format!("{path}/messages"), &auth, &[]).await?;
    let contact_id = conversation.get("contact_id").and_then(|c| {
        c.as_str()
            .map(str::to_owned)
            .or_else(|| c.as_i64().map(|n| n.to_string()))
    });
    let contact = match contact_id {
        Some(contact) => Some(unwrapped(
            client
                .get(&format!("/v2/contacts/{}", segment(&contact)?), &auth, &[])
                .await?,
        )),
        None => None,
    };
    let documents = json!({
        "event": root.to_value(),
        "conversation": conversation,
        "messages": list(messages),
        "contact": contact,
    });
    Ok(Fetched {
        conversation: fetched(&Node::from_value(&documents), account_id, id),
        documents,
    })
}

/// An answer's object, inside `data` when the API wraps it.
fn unwrapped(answer: Value) -> Value {
    match answer {
        Value::Object(mut o) if o.get("data").is_some_and(Value::is_object) => {
            o.remove("data").unwrap_or_default()
        }
        other => other,
    }
}

/// An answer's list: bare, or as `items` or `data`.
fn list(answer: Value) -> Value {
    match answer {
        Value::Array(_) => answer,
        Value::Object(mut o) => ["items", "data"]
            .into_iter()
            .find_map(|k| o.remove(k).filter(Value::is_array))
            .unwrap_or_else(|| Value::Array(Vec::new())),
        _ => Value::Array(Vec::new()),
    }
}

fn fetched(read: &Node<'_>, account_id: String, id: String) -> Conversation {
    let conversation = read.get("conversation");
    let field = |key: &str| lenient::text(conversation.and_then(|c| c.get(key)));
    let contact = |key: &str| lenient::text(read.at(&["contact", key]));
    let email = contact("email")
        .or_else(|| field("contact_email"))
        .and_then(|e| Email::parse(&e).ok());
    let country = field("location_country").or_else(|| field("location_code"));
    let variables = lenient::object(conversation.and_then(|c| c.get("variables")))
        .and_then(Node::entries)
        .unwrap_or_default()
        .iter()
        .map(|(key, value)| {
            let label = lenient::text(value.get("label")).unwrap_or_else(|| key.to_string());
            let value = lenient::object(Some(value))
                .and_then(|v| v.get("value"))
                .unwrap_or(value)
                .to_value();
            (key.to_string(), Variable { label, value })
        })
        .collect();
    let visitor = Visitor {
        id: contact("id").or_else(|| field("contact_id")),
        name: contact("name").or_else(|| field("contact_name")),
        email,
        phone: contact("phone"),
        ip: field("location_ip"),
        city: field("location_city"),
        country_code: country.as_deref().and_then(country_code),
        country: country.filter(|c| country_code(c).is_none()),
        referer: field("referer"),
        variables,
        ..Visitor::default()
    };
    let messages = lenient::array(read.get("messages"))
        .iter()
        .filter(|m| m.entries().is_some())
        .map(message)
        .collect();
    let offline = lenient::flag(conversation.and_then(|c| c.get("is_offline")));
    Draft {
        account_id,
        channel_id: id,
        started_at: lenient::instant(conversation.and_then(|c| c.get("created_at"))),
        ended_at: lenient::instant(conversation.and_then(|c| c.get("finished_at"))),
        event_at: lenient::instant(read.at(&["event", "timestamp"])),
        status: offline.then_some(Status::Offline),
        visitor,
        messages,
        rating: rating(conversation.and_then(|c| c.get("rating")))
            .or_else(|| rating(read.at(&["event", "data", "rating"]))),
        tags: lenient::array(conversation.and_then(|c| c.get("tags")))
            .iter()
            .filter_map(|t| lenient::text(Some(t)).or_else(|| lenient::text(t.get("name"))))
            .collect(),
        ..Draft::default()
    }
    .finish(Source::SmartsuppV2)
}

/// `{value, text}` or a bare score.
fn rating(value: Option<&Node<'_>>) -> Option<Rating> {
    let value = value?;
    let (score, comment) = match lenient::object(Some(value)) {
        Some(r) => (
            lenient::integer(r.get("value").or_else(|| r.get("score"))),
            lenient::text(r.get("text").or_else(|| r.get("comment"))),
        ),
        None => (lenient::integer(Some(value)), None),
    };
    (score.is_some() || comment.is_some()).then_some(Rating { score, comment })
}

fn message(m: &Node<'_>) -> Message {
    let sub_type = lenient::text(m.get("sub_type"))
        .or_else(|| lenient::text(m.get("type")))
        .unwrap_or_default();
    let kind = match sub_type.as_str() {
        "contact" | "visitor" => MessageKind::Visitor,
        "agent" | "bot" | "trigger" => MessageKind::Agent,
        _ => MessageKind::System,
    };
    let content = m.get("content");
    let text = lenient::raw_text(content)
        .or_else(|| lenient::raw_text(content.and_then(|c| c.get("text"))))
        .unwrap_or_default();
    let attachments = lenient::array(m.get("attachments"))
        .iter()
        .filter_map(|a| {
            Some(Attachment {
                url: lenient::text(a.get("url"))?,
                name: lenient::text(a.get("name")),
            })
        })
        .collect();
    Message {
        kind,
        author_id: lenient::text(m.get("agent_id")).map(|a| format!("agent:{a}")),
        author_name: lenient::text(m.get("author_name")),
        text,
        sent_at: lenient::instant(m.get("created_at")),
        triggered_by: (sub_type == "trigger" || sub_type == "bot").then_some(sub_type.clone()),
        event: (kind == MessageKind::System).then_some(sub_type),
        attachments,
    }
}

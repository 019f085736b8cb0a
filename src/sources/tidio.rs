//! Tidio webhooks (<https://developers.tidio.com/docs/webhooks-structure>): an envelope
//! `{created_at, project_public_key, topic, version, webhook_id, content}`, signed with
//! `X-Tidio-Signature` ([`super::signature::Scheme::Tidio`]).
//!
//! `conversation.solved_by_operator` (documented) and `conversation.solved_automatically`
//! (seen in integrations) end a conversation; neither carries the transcript, so each is
//! fetched. Every other topic is acknowledged and ignored.
//!
//! What `content` holds for conversation topics is not documented where we looked: the
//! conversation is read from `content.conversation_id` when present, else from
//! `content.contact_id` (Tidio keeps one conversation per contact, so the contact's id names
//! it). Both are inferred.

use serde_json::{Value, json};

use super::api::{ApiClient, Auth, FetchError, Fetched, segment};
use super::lenient::{self, Node};
use super::{Draft, Event, Source, SourceError, envelope};
use crate::model::{Email, Message, MessageKind, Variable, Visitor};

/// The topics that end a conversation.
const SOLVED: [&str; 2] = [
    "conversation.solved_by_operator",
    "conversation.solved_automatically",
];

/// Reads a Tidio webhook.
///
/// # Errors
/// When the body is not a JSON object, lacks `topic`, or a solved conversation lacks
/// `project_public_key` or its id.
pub fn read(body: &[u8]) -> Result<Event, SourceError> {
    let (root, topic) = envelope(body, "topic")?;
    if !SOLVED.contains(&topic.as_str()) {
        return Ok(Event::Ignored(topic));
    }
    let project = lenient::text(root.get("project_public_key"))
        .ok_or(SourceError::MissingField("project_public_key"))?;
    let conversation = lenient::text(root.at(&["content", "conversation_id"]))
        .or_else(|| lenient::text(root.at(&["content", "contact_id"])))
        .ok_or(SourceError::MissingField("content.contact_id"))?;
    Ok(Event::fetch(Source::Tidio, project, &conversation, topic))
}

/// Reads a solved conversation from the Tidio OpenAPI (`X-Tidio-Openapi-Client-Id` and
/// `-Secret`, `Accept: application/json; version=1`): the contact, and the contact's
/// messages (`GET /contacts/{id}`, `GET /contacts/{id}/messages`).
///
/// The contact's fields (`first_name`, `last_name`, `email`, `phone`, `distinct_id`,
/// `properties [{name, value}]`) are documented for the contact webhooks; the messages'
/// shape is inferred: a list bare or as `messages`/`data`, each with its text in `message`,
/// `content` or `text`, its author's kind in `sender` or `author.type` (`visitor`,
/// `operator`, `bot`).
///
/// # Errors
/// A classified [`FetchError`].
pub async fn fetch(client: ApiClient<'_>, event: &[u8]) -> Result<Fetched, FetchError> {
    let root = Node::parse(event).map_err(|_| FetchError::unreadable("the kept event"))?;
    let project = lenient::text(root.get("project_public_key"))
        .ok_or_else(|| FetchError::unreadable("project_public_key"))?;
    let contact_id = lenient::text(root.at(&["content", "contact_id"]))
        .ok_or_else(|| FetchError::unreadable("content.contact_id"))?;
    let conversation_id = lenient::text(root.at(&["content", "conversation_id"]))
        .unwrap_or_else(|| contact_id.clone());
    let auth = Auth::Headers(vec![
        ("x-tidio-openapi-client-id", client.identifier()?.into()),
        ("x-tidio-openapi-client-secret", client.key()?),
    ]);
    let version = [("accept", "application/json; version=1")];
    let path = format!("/contacts/{}", segment(&contact_id)?);
    let contact = client.get(&path, &auth, &version).await?;
    let messages = client
        .get(&format!("{path}/messages"), &auth, &version)
        .await?;
    let pick = |v: Value, keys: &[&str]| match v {
        Value::Object(mut o) => keys
            .iter()
            .find_map(|k| o.remove(*k))
            .unwrap_or(Value::Object(o)),
        other => other,
    };
    let documents = json!({
        "event": root.to_value(),
        "contact": pick(contact, &["contact", "data"]),
        "messages": pick(messages, &["messages", "data"]),
    });
    let read = Node::from_value(&documents);
    let contact = read.get("contact");
    let field = |key: &str| lenient::text(contact.and_then(|c| c.get(key)));
    let name = match (field("first_name"), field("last_name")) {
        (Some(first), Some(last)) => Some(format!("{first} {last}")),
        (first, last) => first.or(last),
    };
    let variables = lenient::array(contact.and_then(|c| c.get("properties")))
        .iter()
        .filter_map(|p| {
            let key = lenient::text(p.get("name"))?;
            let value = p.get("value").map(Node::to_value).unwrap_or_default();
            Some((key.clone(), Variable { label: key, value }))
        })
        .collect();
    let visitor = Visitor {
        id: field("distinct_id").or(Some(contact_id)),
        name,
        email: field("email").and_then(|e| Email::parse(&e).ok()),
        phone: field("phone"),
        variables,
        ..Visitor::default()
    };
    let messages = lenient::array(read.get("messages"))
        .iter()
        .filter(|m| m.entries().is_some())
        .map(message)
        .collect();
    let conversation = Draft {
        account_id: project,
        channel_id: conversation_id,
        event_at: lenient::instant(read.at(&["event", "created_at"])),
        visitor,
        messages,
        ..Draft::default()
    }
    .finish(Source::Tidio);
    Ok(Fetched {
        conversation,
        documents,
    })
}

fn message(m: &Node<'_>) -> Message {
    let author = lenient::text(m.get("sender"))
        .or_else(|| lenient::text(m.at(&["author", "type"])))
        .unwrap_or_default();
    let kind = match author.as_str() {
        "visitor" | "contact" => MessageKind::Visitor,
        "operator" | "bot" | "lyro" => MessageKind::Agent,
        _ => MessageKind::System,
    };
    let text = ["message", "content", "text"]
        .iter()
        .find_map(|k| lenient::raw_text(m.get(k)))
        .unwrap_or_default();
    Message {
        kind,
        author_id: lenient::text(m.at(&["author", "id"])),
        author_name: lenient::text(m.at(&["author", "name"])),
        text,
        sent_at: lenient::instant(m.get("created_at")),
        triggered_by: matches!(author.as_str(), "bot" | "lyro").then_some(author.clone()),
        event: (kind == MessageKind::System).then_some(author),
        attachments: Vec::new(),
    }
}

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

use super::lenient;
use super::{Event, FetchEvent, Source, SourceError, envelope};
use crate::model::ConversationId;

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
    Ok(Event::Fetch(FetchEvent {
        conversation_id: ConversationId::new(Source::Tidio.name(), &project, &conversation),
        account_id: project,
        event: topic,
    }))
}

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

use super::lenient;
use super::{Event, FetchEvent, Source, SourceError, envelope};
use crate::model::ConversationId;

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
    Ok(Event::Fetch(FetchEvent {
        conversation_id: ConversationId::new(
            Source::SmartsuppV2.name(),
            &account_id,
            &conversation,
        ),
        account_id,
        event,
    }))
}

//! Crisp plugin hooks (<https://docs.crisp.chat/references/web-hooks/v1/>): an envelope
//! `{website_id, event, data, timestamp}` per RTM event, signed with `X-Crisp-Signature` over
//! `[timestamp;body]` ([`super::signature::Scheme::Crisp`]).
//!
//! No event carries a transcript: messages arrive one by one (`message:send`,
//! `message:received`), and a conversation ends when its session's state becomes
//! `resolved` (`session:set_state`, data `{website_id, session_id, state}`). That event is
//! fetched (the conversation's meta and messages); every other event, and every other
//! state, is acknowledged and ignored. The event name and data shape follow Crisp's RTM
//! reference; that `resolved` is the end is inferred from the states it lists.
//!
//! A session can be resolved, reopened and resolved again: each resolution fetches the
//! session anew, and a transcript that grew is a later version of the same conversation.

use super::lenient;
use super::{Event, FetchEvent, Source, SourceError, envelope};
use crate::model::ConversationId;

/// Reads a Crisp web hook.
///
/// # Errors
/// When the body is not a JSON object, lacks `event`, or a resolution lacks
/// `website_id` or `data.session_id`.
pub fn read(body: &[u8]) -> Result<Event, SourceError> {
    let (root, event) = envelope(body, "event")?;
    let state = lenient::text(root.at(&["data", "state"]));
    if event != "session:set_state" || state.as_deref() != Some("resolved") {
        return Ok(Event::Ignored(match state {
            Some(state) if event == "session:set_state" => format!("{event} {state}"),
            _ => event,
        }));
    }
    let website_id = lenient::text(root.get("website_id"))
        .or_else(|| lenient::text(root.at(&["data", "website_id"])))
        .ok_or(SourceError::MissingField("website_id"))?;
    let session_id = lenient::text(root.at(&["data", "session_id"]))
        .ok_or(SourceError::MissingField("data.session_id"))?;
    Ok(Event::Fetch(FetchEvent {
        conversation_id: ConversationId::new(Source::Crisp.name(), &website_id, &session_id),
        account_id: website_id,
        event,
    }))
}

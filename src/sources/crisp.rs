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

use serde_json::Value;

use super::api::{ApiClient, Auth, FetchError, Fetched, segment};
use super::lenient::{self, Node};
use super::{Draft, Event, Source, SourceError, country_code, envelope, keyed_variables};
use crate::model::{Attachment, Conversation, Email, Message, MessageKind, Visitor};

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
    Ok(Event::fetch(Source::Crisp, website_id, &session_id, event))
}

/// The most pages of messages read for one conversation (each is Crisp's batch, oldest
/// last): a conversation longer than this is stored with its latest messages, and the
/// error is not silent (see [`fetch`]).
const MAX_PAGES: usize = 50;

/// Reads a resolved session with the REST API v1 (plugin tier: the token's identifier and
/// key as `Basic`, `X-Crisp-Tier: plugin`): the conversation's meta, and its messages, page
/// by page back to the first (`timestamp_before`).
///
/// # Errors
/// A classified [`FetchError`].
pub async fn fetch(client: ApiClient<'_>, event: &[u8]) -> Result<Fetched, FetchError> {
    let root = Node::parse(event).map_err(|_| FetchError::unreadable("the kept event"))?;
    let website = lenient::text(root.get("website_id"))
        .or_else(|| lenient::text(root.at(&["data", "website_id"])))
        .ok_or_else(|| FetchError::unreadable("website_id"))?;
    let session = lenient::text(root.at(&["data", "session_id"]))
        .ok_or_else(|| FetchError::unreadable("data.session_id"))?;
    let auth = Auth::Basic(client.identifier()?, client.key()?);
    let tier = [("x-crisp-tier", "plugin")];
    let base = format!(
        "/v1/website/{}/conversation/{}",
        segment(&website)?,
        segment(&session)?
    );
    let conversation = client.get(&base, &auth, &tier).await?;
    let mut messages: Vec<Value> = Vec::new();
    let mut before: Option<i64> = None;
    for _ in 0..MAX_PAGES {
        let path = match before {
            Some(t) => format!("{base}/messages?timestamp_before={t}"),
            None => format!("{base}/messages"),
        };
        let page = client.get(&path, &auth, &tier).await?;
        let batch = page
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let oldest = batch
            .iter()
            .filter_map(|m| m.get("timestamp").and_then(Value::as_i64))
            .min();
        let fresh = batch.len();
        messages.splice(0..0, batch);
        match oldest {
            Some(t) if fresh > 0 && before.is_none_or(|b| t < b) => before = Some(t),
            _ => break,
        }
    }
    let documents = serde_json::json!({
        "event": root.to_value(),
        "conversation": conversation,
        "messages": messages,
    });
    let conversation = fetched(&Node::from_value(&documents), website, session);
    Ok(Fetched {
        conversation,
        documents,
    })
}

/// The conversation of `{event, conversation, messages}`: the meta's visitor (nickname,
/// e-mail, phone, IP, place, user agent, segments as tags, data as variables) and the
/// messages (`from: user` the visitor, `operator` an agent; files as links; private notes
/// left out; other types are events of the chat).
fn fetched(read: &Node<'_>, website: String, session: String) -> Conversation {
    let data = read.at(&["conversation", "data"]);
    let meta = data.and_then(|d| d.get("meta"));
    let field = |path: &[&str]| lenient::text(meta.and_then(|m| m.at(path)));
    let country = field(&["device", "geolocation", "country"]);
    let visitor = Visitor {
        id: Some(session.clone()),
        name: field(&["nickname"]),
        email: field(&["email"]).and_then(|e| Email::parse(&e).ok()),
        phone: field(&["phone"]),
        ip: field(&["ip"]),
        city: field(&["device", "geolocation", "city"]),
        country_code: country.as_deref().and_then(country_code),
        country: country.filter(|c| country_code(c).is_none()),
        user_agent: field(&["device", "system", "useragent"]),
        variables: keyed_variables(
            lenient::object(meta.and_then(|m| m.get("data")))
                .and_then(Node::entries)
                .unwrap_or_default(),
        ),
        ..Visitor::default()
    };
    let messages = lenient::array(read.get("messages"))
        .iter()
        .filter_map(message)
        .collect();
    Draft {
        account_id: website,
        channel_id: session,
        started_at: lenient::instant(data.and_then(|d| d.get("created_at"))),
        // The conversation ends when it is resolved, whatever was written last.
        ended_at: lenient::instant(read.at(&["event", "timestamp"])),
        visitor,
        messages,
        tags: lenient::array(meta.and_then(|m| m.get("segments")))
            .iter()
            .filter_map(|t| lenient::text(Some(t)))
            .collect(),
        ..Draft::default()
    }
    .finish(Source::Crisp)
}

fn message(m: &Node<'_>) -> Option<Message> {
    let kind_name = lenient::text(m.get("type")).unwrap_or_default();
    if kind_name == "note" {
        return None;
    }
    let kind = match (kind_name.as_str(), lenient::text(m.get("from")).as_deref()) {
        ("text" | "file" | "audio" | "picker" | "field", Some("user")) => MessageKind::Visitor,
        ("text" | "file" | "audio" | "picker" | "field", _) => MessageKind::Agent,
        _ => MessageKind::System,
    };
    let content = m.get("content");
    let (text, attachments) = match lenient::object(content) {
        Some(file) => {
            let url = lenient::text(file.get("url"));
            let name = lenient::text(file.get("name"));
            let text = name.clone().or_else(|| url.clone()).unwrap_or_default();
            (
                text,
                url.map(|url| Attachment { url, name })
                    .into_iter()
                    .collect(),
            )
        }
        None => (lenient::raw_text(content).unwrap_or_default(), Vec::new()),
    };
    Some(Message {
        kind,
        author_id: lenient::text(m.at(&["user", "user_id"])),
        author_name: lenient::text(m.at(&["user", "nickname"])),
        text,
        sent_at: lenient::instant(m.get("timestamp")),
        triggered_by: None,
        event: (kind == MessageKind::System).then_some(kind_name),
        attachments,
    })
}

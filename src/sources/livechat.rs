//! LiveChat (the Text platform) webhooks v3.x
//! (<https://platform.text.com/docs/management/webhooks>): `chat_deactivated` ends a
//! thread and carries only its ids, so the thread is fetched (`get_chat`); `incoming_chat`
//! carries the whole chat structure and is read as it comes (a first version, at the chat's
//! start, when the webhook is registered for it). Other actions are acknowledged and ignored.
//!
//! LiveChat does not sign: the secret chosen at registration comes back inside the body as
//! `secret_key`. [`authenticate`] compares it in constant time and removes it, so the
//! secret is never stored, shown to templates or logged.
//!
//! A LiveChat chat is a customer's long-lived list of threads; a thread is one conversation,
//! so the id is `livechat:{organization}:{chat}:{thread}`. Field meanings follow the
//! documented chat structure; the rating's place (`thread.properties.rating`) is inferred.

use std::collections::BTreeMap;

use axum::body::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::api::{ApiClient, Auth, FetchError, Fetched};
use super::lenient::{self, Node};
use super::signature::{Refused, Secrets};
use super::{Draft, Event, Source, SourceError, country_code, envelope, keyed_variables};
use crate::model::{
    Attachment, Conversation, Email, Message, MessageKind, Page, Rating, Variable, Visitor,
};

/// The body field holding the webhook's secret.
const SECRET_FIELD: &str = "secret_key";

/// Checks the body's `secret_key` against `secrets` and returns the body without it.
///
/// # Errors
/// When the body is not a JSON object with a `secret_key` string, or the secret is not one
/// of `secrets`.
pub fn authenticate(secrets: &Secrets, body: &[u8]) -> Result<Bytes, Refused> {
    let Ok(Value::Object(mut document)) = serde_json::from_slice::<Value>(body) else {
        return Err(Refused::MissingField(SECRET_FIELD));
    };
    let Some(Value::String(given)) = document.remove(SECRET_FIELD) else {
        return Err(Refused::MissingField(SECRET_FIELD));
    };
    // Compared as digests, so neither the secret's length nor where it differs shows.
    let given = Sha256::digest(given.as_bytes());
    let matched = secrets
        .each()
        .fold(subtle::Choice::from(0), |found, secret| {
            found | Sha256::digest(secret).ct_eq(&given)
        });
    if !bool::from(matched) {
        return Err(Refused::Mismatch);
    }
    let kept = serde_json::to_vec(&Value::Object(document)).map_err(|_| Refused::Mismatch)?;
    Ok(Bytes::from(kept))
}

/// Reads a LiveChat webhook (already [`authenticate`]d).
///
/// # Errors
/// When the body is not a JSON object, lacks `action` or the account, or an event that
/// names a conversation lacks its ids.
pub fn read(body: &[u8]) -> Result<Event, SourceError> {
    let (root, action) = envelope(body, "action")?;
    match action.as_str() {
        "incoming_chat" => {
            let chat = root
                .at(&["payload", "chat"])
                .ok_or(SourceError::MissingField("payload.chat"))?;
            chat_conversation(&account(&root)?, chat).map(|c| Event::Conversation(Box::new(c)))
        }
        "chat_deactivated" => {
            let id = |key: &'static str| {
                lenient::text(root.at(&["payload", key])).ok_or(SourceError::MissingField(key))
            };
            let account_id = account(&root)?;
            let thread = channel(&id("chat_id")?, &id("thread_id")?);
            Ok(Event::fetch(Source::LiveChat, account_id, &thread, action))
        }
        _ => Ok(Event::Ignored(action)),
    }
}

/// `organization_id` (v3.3 and later), or `license_id` (v3.2).
fn account(root: &Node<'_>) -> Result<String, SourceError> {
    lenient::text(root.get("organization_id"))
        .or_else(|| lenient::text(root.get("license_id")))
        .ok_or(SourceError::MissingField("organization_id"))
}

fn channel(chat: &str, thread: &str) -> String {
    format!("{chat}:{thread}")
}

/// The conversation of a chat structure with one `thread`: what `incoming_chat` carries and
/// `get_chat` answers.
///
/// # Errors
/// When the chat or its thread has no id.
pub fn chat_conversation(account_id: &str, chat: &Node<'_>) -> Result<Conversation, SourceError> {
    let chat_id = lenient::text(chat.get("id")).ok_or(SourceError::MissingField("chat.id"))?;
    let thread = lenient::object(chat.get("thread"));
    let thread_id = lenient::text(thread.and_then(|t| t.get("id")))
        .ok_or(SourceError::MissingField("chat.thread.id"))?;
    let users = lenient::array(chat.get("users"));
    let customer = users
        .iter()
        .find(|u| lenient::text(u.get("type")).as_deref() == Some("customer"));
    let mut visitor = customer.map(visitor).unwrap_or_default();
    let names: BTreeMap<String, (MessageKind, Option<String>)> = users
        .iter()
        .filter_map(|u| {
            let kind = match lenient::text(u.get("type")).as_deref() {
                Some("customer") => MessageKind::Visitor,
                _ => MessageKind::Agent,
            };
            Some((
                lenient::text(u.get("id"))?,
                (kind, lenient::text(u.get("name"))),
            ))
        })
        .collect();
    let events = lenient::array(thread.and_then(|t| t.get("events")));
    for form in events
        .iter()
        .filter(|e| lenient::text(e.get("type")).as_deref() == Some("filled_form"))
    {
        answers(form, &mut visitor);
    }
    let messages = events.iter().filter_map(|e| message(e, &names)).collect();
    let pages = lenient::array(customer.and_then(|c| c.at(&["last_visit", "last_pages"])))
        .iter()
        .map(|p| Page {
            url: lenient::text(p.get("url")),
            title: lenient::text(p.get("title")),
        })
        .filter(|p| p.url.is_some() || p.title.is_some())
        .collect();
    let tags = lenient::array(thread.and_then(|t| t.get("tags")))
        .iter()
        .filter_map(|t| lenient::text(Some(t)))
        .collect();
    Ok(Draft {
        account_id: account_id.to_owned(),
        channel_id: channel(&chat_id, &thread_id),
        started_at: lenient::instant(thread.and_then(|t| t.get("created_at"))),
        visitor,
        messages,
        pages,
        rating: rating(thread.and_then(|t| t.at(&["properties", "rating"]))),
        tags,
        ..Draft::default()
    }
    .finish(Source::LiveChat))
}

/// `{score, comment}`, each a value or `{value}` (as LiveChat's properties are kept).
fn rating(value: Option<&Node<'_>>) -> Option<Rating> {
    let rating = lenient::object(value)?;
    let read = |key| {
        let field = rating.get(key)?;
        Some(
            lenient::object(Some(field))
                .and_then(|f| f.get("value"))
                .unwrap_or(field),
        )
    };
    let score = lenient::integer(read("score"));
    let comment = lenient::text(read("comment"));
    (score.is_some() || comment.is_some()).then_some(Rating { score, comment })
}

/// The customer: `name`, `email`, `session_fields` (one key per entry) as variables, and
/// the `last_visit`'s address, browser, referrer and place.
fn visitor(user: &Node<'_>) -> Visitor {
    let field = |path: &[&str]| lenient::text(user.at(path));
    let variables = keyed_variables(
        lenient::array(user.get("session_fields"))
            .iter()
            .filter_map(Node::entries)
            .flatten(),
    );
    Visitor {
        id: field(&["id"]),
        name: field(&["name"]),
        email: field(&["email"]).and_then(|e| Email::parse(&e).ok()),
        ip: field(&["last_visit", "ip"]),
        city: field(&["last_visit", "geolocation", "city"]),
        country: field(&["last_visit", "geolocation", "country"]),
        country_code: field(&["last_visit", "geolocation", "country_code"])
            .as_deref()
            .and_then(country_code),
        user_agent: field(&["last_visit", "user_agent"]),
        referer: field(&["last_visit", "referrer"]),
        variables,
        ..Visitor::default()
    }
}

/// A pre-chat form's answers: the name and e-mail fill the visitor's when the customer
/// record lacks them; other answers become variables by field id.
fn answers(form: &Node<'_>, visitor: &mut Visitor) {
    for field in lenient::array(form.get("fields")) {
        let Some(answer) = lenient::text(field.get("answer")) else {
            continue;
        };
        match lenient::text(field.get("type")).as_deref() {
            Some("name") if visitor.name.is_none() => visitor.name = Some(answer),
            Some("email") if visitor.email.is_none() => visitor.email = Email::parse(&answer).ok(),
            Some("name" | "email") => {}
            _ => {
                let id = lenient::text(field.get("id")).unwrap_or_else(|| answer.clone());
                let label = lenient::text(field.get("label")).unwrap_or_else(|| id.clone());
                visitor.variables.entry(id).or_insert(Variable {
                    label,
                    value: answer.into(),
                });
            }
        }
    }
}

/// A thread event as a transcript line: `message`, `file` and `system_message`; events
/// only agents see (`visibility: agents`, internal notes) and forms are not lines.
fn message(
    event: &Node<'_>,
    names: &BTreeMap<String, (MessageKind, Option<String>)>,
) -> Option<Message> {
    if lenient::text(event.get("visibility")).as_deref() == Some("agents") {
        return None;
    }
    let author_id = lenient::text(event.get("author_id"));
    let (kind, author_name) = author_id
        .as_ref()
        .and_then(|id| names.get(id).cloned())
        .unwrap_or((MessageKind::Agent, None));
    let sent_at = lenient::instant(event.get("created_at"));
    let line = |kind, text: String, event_code, attachments| Message {
        kind,
        author_id: author_id.clone(),
        author_name: author_name.clone(),
        text,
        sent_at,
        triggered_by: None,
        event: event_code,
        attachments,
    };
    match lenient::text(event.get("type")).as_deref()? {
        "message" => Some(line(
            kind,
            lenient::raw_text(event.get("text")).unwrap_or_default(),
            None,
            Vec::new(),
        )),
        "file" => {
            let url = lenient::text(event.get("url"))?;
            let name = lenient::text(event.get("name"));
            Some(line(
                kind,
                name.clone().unwrap_or_else(|| url.clone()),
                None,
                vec![Attachment { url, name }],
            ))
        }
        "system_message" => Some(Message {
            author_name: None,
            ..line(
                MessageKind::System,
                lenient::raw_text(event.get("text")).unwrap_or_default(),
                lenient::text(event.get("system_message_type")),
                Vec::new(),
            )
        }),
        _ => None,
    }
}

/// Reads a deactivated thread with the Agent Chat API's `get_chat` (v3.5), authenticated
/// with the account id and a personal access token (`Basic`), and makes it the
/// conversation as `incoming_chat` would.
///
/// # Errors
/// A classified [`FetchError`]: the API's failures as the fetch stage treats them, or an
/// answer that is not a chat with that thread.
pub async fn fetch(client: ApiClient<'_>, event: &[u8]) -> Result<Fetched, FetchError> {
    let root = Node::parse(event).map_err(|_| FetchError::unreadable("the kept event"))?;
    let id = |key: &str| {
        lenient::text(root.at(&["payload", key])).ok_or_else(|| FetchError::unreadable(key))
    };
    let account_id = account(&root).map_err(|e| FetchError::unreadable(&e.to_string()))?;
    let request = serde_json::json!({ "chat_id": id("chat_id")?, "thread_id": id("thread_id")? });
    let auth = Auth::Basic(client.identifier()?, client.token()?);
    let chat = client
        .call(
            reqwest::Method::POST,
            "/v3.5/agent/action/get_chat",
            &auth,
            &[],
            Some(&request),
        )
        .await?;
    let conversation = chat_conversation(&account_id, &Node::from_value(&chat))
        .map_err(|e| FetchError::unreadable(&format!("get_chat: {e}")))?;
    Ok(Fetched {
        conversation,
        documents: serde_json::json!({ "event": root.to_value(), "chat": chat }),
    })
}

//! Olark's webhook (<https://www.olark.com/help/webhooks>): one form-encoded POST per
//! finished chat or offline message, its only field `data` holding the transcript as JSON.
//!
//! Olark signs nothing and sends no account: the secret is a token in the URL
//! (`/hooks/NAME/{token}`), and the instance's name stands for the account, so the id is
//! `olark:{instance}:{id}`. The decoded document is what is kept (templates read it as
//! `raw`); a body already JSON is read as it is, which is how a quarantined body comes back.
//!
//! Field meanings (documented): `items[]` of `kind` `MessageToOperator` (the visitor wrote),
//! `MessageToVisitor` (an operator wrote; `operatorId` keys `operators`), `OfflineMessage`;
//! `timestamp` is a string of epoch seconds with a fraction. `groups[].name` is taken as the
//! department; `visitor.chat_feedback` (a rating, per third parties) has no documented shape
//! and is left in `raw`.

use std::collections::BTreeMap;

use axum::body::Bytes;

use super::lenient::{self, Node};
use super::{Draft, SourceError, keyed_variables};
use crate::model::{Conversation, Email, Message, MessageKind, Page, Status, Variable, Visitor};

/// The JSON document of a request body: the `data` field of a form-encoded body, or the
/// body itself when it is already JSON.
///
/// # Errors
/// When a form-encoded body has no `data` field.
pub fn document(body: Bytes) -> Result<Bytes, SourceError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{' | b'[') | None) {
        return Ok(body);
    }
    form_urlencoded::parse(&body)
        .find(|(key, _)| key == "data")
        .map(|(_, value)| Bytes::from(value.into_owned()))
        .ok_or(SourceError::MissingFormField("data"))
}

/// Reads an Olark transcript posted to instance `instance`.
///
/// # Errors
/// When the document is not a JSON object or has no `id`.
pub fn conversation(document: &[u8], instance: &str) -> Result<Conversation, SourceError> {
    let root = Node::parse(document)?;
    if root.entries().is_none() {
        return Err(SourceError::NotAnObject);
    }
    let channel_id = lenient::text(root.get("id")).ok_or(SourceError::MissingField("id"))?;
    let operators = operators(root.get("operators"));
    let items = lenient::array(root.get("items"));
    let kind_of = |m: &Node<'_>| lenient::text(m.get("kind")).unwrap_or_default();
    let offline = items.iter().any(|m| kind_of(m) == "OfflineMessage");
    let messages = items
        .iter()
        .filter(|m| m.entries().is_some())
        .map(|m| message(m, &operators))
        .collect();
    let visitor = visitor(root.get("visitor"));
    let pages = lenient::text(root.at(&["visitor", "conversationBeginPage"]))
        .map(|url| Page {
            url: Some(url),
            title: None,
        })
        .into_iter()
        .collect();
    Ok(Draft {
        account_id: instance.to_owned(),
        channel_id,
        status: offline.then_some(Status::Offline),
        visitor,
        messages,
        pages,
        tags: lenient::array(root.get("tags"))
            .iter()
            .filter_map(|t| lenient::text(Some(t)))
            .collect(),
        department: lenient::array(root.get("groups"))
            .iter()
            .find_map(|g| lenient::text(g.get("name"))),
        ..Draft::default()
    }
    .finish(super::Source::Olark))
}

/// Operator names by id: `nickname`, else `username`.
fn operators(value: Option<&Node<'_>>) -> BTreeMap<String, String> {
    lenient::object(value)
        .and_then(Node::entries)
        .unwrap_or_default()
        .iter()
        .filter_map(|(id, o)| {
            let name =
                lenient::text(o.get("nickname")).or_else(|| lenient::text(o.get("username")))?;
            Some((id.to_string(), name))
        })
        .collect()
}

fn message(m: &Node<'_>, operators: &BTreeMap<String, String>) -> Message {
    let kind_name = lenient::text(m.get("kind")).unwrap_or_default();
    let operator = lenient::text(m.get("operatorId"));
    let kind = match kind_name.as_str() {
        "MessageToOperator" | "OfflineMessage" => MessageKind::Visitor,
        "MessageToVisitor" => MessageKind::Agent,
        _ => MessageKind::System,
    };
    let author_name = lenient::text(m.get("nickname"))
        .or_else(|| operator.as_ref().and_then(|id| operators.get(id).cloned()));
    Message {
        kind,
        author_id: operator.map(|id| format!("operator:{id}")),
        author_name,
        text: lenient::raw_text(m.get("body")).unwrap_or_default(),
        sent_at: lenient::instant(m.get("timestamp")),
        triggered_by: None,
        // Kinds other than the three messages are events of the chat; their kind is the code.
        event: (kind == MessageKind::System).then_some(kind_name),
        attachments: Vec::new(),
    }
}

/// `visitor {id, fullName, emailAddress, phoneNumber, ip, city, region, country,
/// countryCode, organization, browser, operatingSystem, referrer, customFields}`. Olark
/// sends the browser and system as words, not a user agent; they become variables, as do
/// the organization and the custom fields.
fn visitor(v: Option<&Node<'_>>) -> Visitor {
    let field = |key| lenient::text(v.and_then(|v| v.get(key)));
    let mut variables = keyed_variables(
        lenient::object(v.and_then(|v| v.get("customFields")))
            .and_then(Node::entries)
            .unwrap_or_default(),
    );
    for (key, label) in [
        ("organization", "Organization"),
        ("browser", "Browser"),
        ("operatingSystem", "Operating system"),
        ("region", "Region"),
    ] {
        if let Some(value) = field(key) {
            variables.entry(key.to_owned()).or_insert(Variable {
                label: label.to_owned(),
                value: value.into(),
            });
        }
    }
    Visitor {
        id: field("id"),
        name: field("fullName"),
        email: field("emailAddress").and_then(|e| Email::parse(&e).ok()),
        phone: field("phoneNumber"),
        ip: field("ip"),
        city: field("city"),
        country: field("country"),
        country_code: field("countryCode").map(|c| c.to_uppercase()),
        referer: field("referrer"),
        variables,
        ..Visitor::default()
    }
}

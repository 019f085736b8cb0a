//! Chat text that looks like markup stays text. The markup fixture (a visitor name, note and
//! variables, messages and a rating comment full of tags, attributes, quotes, ampersands and
//! line breaks) goes through every connector type, the catalog's and `examples/`, and every
//! HTML it yields is parsed with html5ever: only the elements and attributes the templates
//! write may be in it, and each chat text must read exactly as the visitor wrote it, its line
//! breaks as `<br>`. Bodies that are not HTML carry the chat text verbatim.

use std::collections::BTreeSet;

use chatbridge::config::Config;
use chatbridge::connectors::{PlannedRequest, Registry};
use chatbridge::model::MessageKind;
use chatbridge::sources::{Parsed, Source};
use chatbridge::store::DeliveryState;
use serde_json::Value;

use crate::fake_smtp::FakeSmtp;
use crate::helpers::{Options, every_version, fixture, fixture_path, spawn_app_with};
use crate::html;

const MARKUP: &str = "smartsupp/markup.json";

/// What the templates themselves write into HTML; anything else would have come from a chat.
const ELEMENTS: &[&str] = &[
    "html", "head", "body", "div", "p", "time", "strong", "em", "b", "br", "pre", "small",
];
const ATTRIBUTES: &[&str] = &["class"];

fn markup() -> Parsed {
    Source::Smartsupp.parse(&fixture(MARKUP)).unwrap()
}

/// The chat texts every transcript shows: each message that is not an event, and its
/// author's name.
fn transcript_texts(parsed: &Parsed) -> Vec<String> {
    let c = &parsed.conversation;
    let mut texts: Vec<String> = c
        .messages
        .iter()
        .filter(|m| m.kind != MessageKind::System)
        .map(|m| html::lines(&m.text))
        .collect();
    texts.extend(c.visitor.name.clone());
    texts
}

/// The catalog's connectors and the example type of `examples/`.
fn every_type() -> Registry {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let catalog = std::fs::read_to_string(fixture_path("catalog.toml")).unwrap();
    let text = format!(
        "connectors_dir = \"{examples}/connectors\"\ntemplates_dir = \"{examples}/templates\"\n\
         {catalog}\n[connectors.osticket]\ntype = \"osticket\"\n\
         settings = {{ url = \"https://help.acme.example\", api_key = \"os-secret\" }}\n"
    );
    chatbridge::app::registry(&Config::from_toml(&text).unwrap()).unwrap()
}

/// Every string a request carries: each string of a JSON body, or the whole body otherwise.
fn strings(request: &PlannedRequest) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            Value::Object(fields) => fields.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let Some(body) = &request.body else {
        return Vec::new();
    };
    let mut out = Vec::new();
    match serde_json::from_str::<Value>(body) {
        Ok(json) => walk(&json, &mut out),
        Err(_) => out.push(body.clone()),
    }
    out
}

/// The HTML in a string, when the templates made it one: a transcript, a note or a
/// `data:text/html` URL. Chat text alone never starts like these (the fixture sees to it).
fn as_html(text: &str) -> Option<String> {
    if let Some(encoded) = text.strip_prefix("data:text/html;charset=utf-8,") {
        return Some(
            percent_encoding::percent_decode_str(encoded)
                .decode_utf8()
                .unwrap()
                .into_owned(),
        );
    }
    ["<p>", "<p ", "<div", "<!DOCTYPE"]
        .iter()
        .any(|start| text.starts_with(start))
        .then(|| text.to_owned())
}

/// Checks one HTML text; what a reader sees in it.
fn check_html(where_: &str, text: &str, expected: &[String]) -> String {
    let document = html::parse(text);
    let foreign = html::foreign(document.root_element(), ELEMENTS, ATTRIBUTES);
    assert!(
        foreign.is_empty(),
        "{where_}: chat text became markup {foreign:?} in\n{text}"
    );
    let read = html::readable(document.root_element());
    for chat in expected {
        assert!(
            read.contains(chat.as_str()),
            "{where_}: {chat:?} does not read as written in\n{read}\n(from {text})"
        );
    }
    read
}

#[test]
fn html_bodies_of_every_connector_type_hold_chat_text_as_text() {
    let registry = every_type();
    let parsed = markup();
    let expected = transcript_texts(&parsed);
    let mut with_html = BTreeSet::new();
    let mut kinds = 0;
    for connector in registry.connectors() {
        let kind = connector.kind();
        let mut seen = Vec::new();
        for (version, plan) in every_version(&registry, connector.as_ref(), &parsed) {
            for request in &plan {
                let where_ = format!("{kind} v{version} {}", request.step);
                for text in strings(request) {
                    match as_html(&text) {
                        Some(markup) => {
                            seen.push(check_html(&where_, &markup, &expected));
                            with_html.insert(kind.to_owned());
                        }
                        // Slack's mrkdwn escapes `<`, `>` and `&` itself.
                        None if kind == "slack" => seen.push(
                            text.replace("&lt;", "<")
                                .replace("&gt;", ">")
                                .replace("&amp;", "&"),
                        ),
                        None => seen.push(html::lines(&text)),
                    }
                }
            }
        }
        // Slack's message is a summary: the visitor and the first line.
        let wanted = if kind == "slack" {
            vec![
                parsed.conversation.visitor.name.clone().unwrap(),
                parsed.conversation.subject.clone(),
            ]
        } else {
            expected.clone()
        };
        for chat in &wanted {
            assert!(
                seen.iter().any(|s| s.contains(chat.as_str())),
                "{kind}: {chat:?} arrives nowhere as written:\n{seen:#?}"
            );
        }
        kinds += 1;
    }
    assert_eq!(kinds, 14, "the 13 catalog types and the example");
    let html_kinds = [
        "freshdesk",
        "helpscout",
        "hubspot",
        "intercom",
        "osticket",
        "pipedrive",
        "zammad",
    ];
    assert_eq!(
        with_html,
        html_kinds.iter().map(|k| (*k).to_owned()).collect(),
        "the types whose bodies carry HTML"
    );
}

/// The e-mail's HTML part is not in `render`'s plan, which prints the text part: it is read
/// from the message a local SMTP server received.
#[tokio::test]
async fn the_html_part_of_an_email_holds_chat_text_as_text() {
    let smtp = FakeSmtp::start("bridge", "smtp-password-4d5e-s3cr3t").await;
    let settings = format!(
        "smtp_host = \"127.0.0.1\"\nsmtp_port = \"{}\"\ntls = \"none\"\n\
         username = \"bridge\"\npassword = \"smtp-password-4d5e-s3cr3t\"\n\
         from = \"Chat bridge <chats@acme.example>\"\nto = \"support@acme.example\"\n",
        smtp.port
    );
    let app = spawn_app_with(Options::only("mail", "email", &settings)).await;
    app.post_smartsupp(fixture(MARKUP)).await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let raw = smtp.messages().pop().unwrap();
    let message = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .unwrap();
    let parsed = markup();
    let expected = transcript_texts(&parsed);
    let html_part = message.body_html(0).unwrap();
    assert!(html_part.starts_with("<!DOCTYPE html>"), "{html_part}");
    let read = check_html("email html", &html_part, &expected);
    assert!(read.contains(&parsed.conversation.subject), "{read}");
    let text_part = html::lines(&message.body_text(0).unwrap());
    for chat in &expected {
        assert!(
            text_part.contains(chat.as_str()),
            "{chat:?} in\n{text_part}"
        );
    }
}

//! Every Smartsupp fixture parses to the conversation it describes. The expectations were
//! read off the payloads, not off the parser; a fixture without an entry fails the test.

use chatbridge::model::{MessageKind, Status};
use chatbridge::sources::Source;

use crate::helpers::{fixture, smartsupp_payloads};

/// file, status, visitor e-mail, visitor name, messages, agents, rating (score, comment),
/// pages, variables, start of the subject.
type Row = (
    &'static str,
    Status,
    Option<&'static str>,
    Option<&'static str>,
    usize,
    &'static [&'static str],
    Option<(Option<i64>, Option<&'static str>)>,
    usize,
    usize,
    &'static str,
);

use Status::{Completed, Dropped, Missed, Offline};

const EXPECTED: &[Row] = &[
    (
        "completed-rated-with-comment.json",
        Completed,
        Some("petra.novakova@example.com"),
        Some("Petra Nováková"),
        8,
        &["Martin Horák"],
        Some((Some(4), Some("Quick answer, thanks!"))),
        3,
        2,
        "Yes, does it support multipoint bluetooth?",
    ),
    (
        "doc-example.json",
        Completed,
        Some("dusan@domain.com"),
        Some("Dusan Kmet"),
        6,
        &["John Doe"],
        Some((Some(5), None)),
        2,
        3,
        "Hello",
    ),
    (
        "dropped-chat.json",
        Dropped,
        Some("jakub.svoboda@example.com"),
        Some("Jakub Svoboda"),
        3,
        &["Eva Marková"],
        None,
        1,
        2,
        "Hi, my package tracking",
    ),
    (
        "empty-messages.json",
        Completed,
        None,
        Some("Visitor 99120"),
        0,
        &[],
        None,
        1,
        2,
        "Chat with Visitor 99120",
    ),
    (
        "empty-strings.json",
        Completed,
        None,
        None,
        4,
        &["Eva Marková"],
        None,
        1,
        0,
        "hi",
    ),
    (
        "group-set.json",
        Completed,
        Some("pavel.marek@corp.example"),
        Some("Pavel Marek"),
        5,
        &["Renata Šťastná"],
        None,
        1,
        2,
        "Yes, we need 120 seats",
    ),
    (
        "injection-attempts.json",
        Completed,
        None,
        Some("Eve \"}, \"role\": \"admin"),
        9,
        &["Martin Horák"],
        Some((Some(1), Some("\"}, \"rating\": 5, \"x\": \""))),
        1,
        2,
        "ok\"}, \"admin\": true",
    ),
    (
        "markup.json",
        Completed,
        Some("mallory@example.com"),
        Some("Mallory <img src=x onerror=alert(1)> \"O'Hara\" & Co"),
        4,
        &["Agent <b>Smith</b>"],
        Some((
            Some(2),
            Some("<b onmouseover=\"alert(4)\">slow</b> & \"rude\"\nsecond <i>line</i>"),
        )),
        1,
        1,
        "<b>Hello</b> & welcome <img src=x onerror=alert(6)>",
    ),
    (
        "legacy-2017-groupkey.json",
        Completed,
        Some("petra@example.cz"),
        Some("Petra Nováková"),
        5,
        &["Jan Novák"],
        None,
        1,
        0,
        "Dobrý den, kdy dorazí",
    ),
    (
        "long-conversation-300-messages.json",
        Completed,
        Some("ondrej.pokorny@example.com"),
        Some("Ondřej Pokorný"),
        300,
        &["Eva Marková"],
        Some((Some(5), Some("Very patient agent"))),
        1,
        2,
        "Hi, I need help configuring",
    ),
    (
        "many-variables-and-paths.json",
        Completed,
        Some("roman.benes@example.com"),
        Some("Roman Beneš"),
        4,
        &["Martin Horák"],
        None,
        40,
        28,
        "Which of these is best",
    ),
    (
        "missed-chat.json",
        Missed,
        Some("lucie.b@example.org"),
        Some("Lucie Benešová"),
        4,
        &[],
        None,
        2,
        2,
        "Is the 30% discount code",
    ),
    (
        "no-rating.json",
        Completed,
        Some("marek.kucera@example.sk"),
        Some("Marek Kučera"),
        5,
        &["Martin Horák"],
        None,
        1,
        2,
        "Do you ship to Slovakia?",
    ),
    (
        "offline-message.json",
        Offline,
        Some("tomas.kral@example.net"),
        Some("Tomáš Král"),
        1,
        &[],
        None,
        1,
        1,
        "Hello, I returned order",
    ),
    (
        "paths-empty.json",
        Completed,
        Some("klara.cerna@example.com"),
        Some("Klára Černá"),
        4,
        &["Martin Horák"],
        Some((Some(3), Some("ok"))),
        0,
        2,
        "Hello, where can I download",
    ),
    (
        "seed-example.json",
        Completed,
        Some("dusan@domain.com"),
        Some("Dusan Kmet"),
        6,
        &["John Doe"],
        Some((Some(5), None)),
        1,
        3,
        "Hello",
    ),
    (
        "two-agents-transfer.json",
        Completed,
        Some("alena.horakova@example.com"),
        Some("Alena Horáková"),
        7,
        &["Eva Marková", "Renata Šťastná"],
        Some((Some(5), Some("Solved in minutes"))),
        1,
        2,
        "I was charged twice",
    ),
    (
        "unicode-emoji-rtl.json",
        Completed,
        Some("sara.alali@example.ae"),
        Some("سارة العلي"),
        8,
        &["Zoë Ångström-Łukasiewicz"],
        Some((Some(5), Some("ممتاز 👏"))),
        2,
        2,
        "مرحبا، هل يمكنني الدفع عند الاستلام؟ 🙏",
    ),
    (
        "unknown-extra-fields.json",
        Completed,
        Some("hana.vesela@example.cz"),
        Some("Hana Veselá"),
        4,
        &["Martin Horák"],
        Some((Some(5), None)),
        2,
        2,
        "Do you have a B2B price list?",
    ),
    (
        "variables-empty.json",
        Completed,
        Some("filip.dvorak@example.com"),
        Some("Filip Dvořák"),
        4,
        &["Eva Marková"],
        None,
        1,
        0,
        "Are you open on Saturday?",
    ),
    (
        "visitor-without-email.json",
        Completed,
        None,
        Some("Visitor 52614"),
        4,
        &["Eva Marková"],
        None,
        1,
        1,
        "How long is the warranty",
    ),
    (
        "visitor-without-name.json",
        Completed,
        Some("orders+buyer@example.com"),
        None,
        6,
        &["Martin Horák"],
        Some((Some(5), None)),
        3,
        2,
        "Can I change the delivery address",
    ),
];

#[test]
fn every_smartsupp_fixture_parses_to_the_conversation_it_describes() {
    for &(at, status, email, name, messages, agents, rating, pages, variables, subject) in EXPECTED
    {
        let parsed = Source::Smartsupp
            .parse(&fixture(&format!("smartsupp/{at}")))
            .unwrap_or_else(|err| panic!("{at}: {err}"));
        let c = &parsed.conversation;
        assert_eq!(c.status, status, "{at}");
        assert_eq!(c.visitor.email.as_ref().map(|m| m.as_str()), email, "{at}");
        assert_eq!(c.visitor.name.as_deref(), name, "{at}");
        assert_eq!(c.messages.len(), messages, "{at}");
        assert_eq!(c.agents, agents, "{at}");
        assert_eq!(
            c.rating.as_ref().map(|r| (r.score, r.comment.as_deref())),
            rating,
            "{at}"
        );
        assert_eq!(c.pages.len(), pages, "{at}");
        assert_eq!(c.visitor.variables.len(), variables, "{at}");
        assert!(
            c.subject.starts_with(subject),
            "{at}: subject {:?}",
            c.subject
        );
        assert!(c.id.as_str().starts_with("smartsupp:"), "{at}");
        assert!(
            c.messages.windows(2).all(|w| w[0].sent_at <= w[1].sent_at),
            "{at}: messages out of order"
        );
        assert!(c.started_at.is_some() && c.ended_at.is_some(), "{at}");
    }
}

#[test]
fn every_payload_in_the_folders_has_an_expectation() {
    for path in smartsupp_payloads() {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            EXPECTED.iter().any(|row| row.0 == name),
            "{name} has no expectation in tests/api/fixtures.rs"
        );
    }
}

#[test]
fn system_events_keep_their_code_and_read_as_sentences() {
    let parsed = Source::Smartsupp
        .parse(&fixture("smartsupp/visitor-without-name.json"))
        .unwrap();
    let events: Vec<(&str, &str)> = parsed
        .conversation
        .messages
        .iter()
        .filter(|m| m.kind == MessageKind::System)
        .map(|m| (m.event.as_deref().unwrap(), m.text.as_str()))
        .collect();
    assert!(
        events.contains(&("agent.join", "Martin Horák joined the chat")),
        "{events:?}"
    );
    // An undocumented code is kept and shown as it is, never dropped.
    assert!(
        events
            .iter()
            .any(|(code, text)| *code == "close.agentClose" && *text == "close.agentClose"),
        "{events:?}"
    );
}

#[test]
fn the_pre_2018_shape_is_understood() {
    let c = Source::Smartsupp
        .parse(&fixture("smartsupp/legacy-2017-groupkey.json"))
        .unwrap()
        .conversation;
    assert_eq!(c.visitor.group.as_deref(), Some("eshop"));
    assert_eq!(c.visitor.country_code.as_deref(), Some("CZ"));
    let kinds: Vec<MessageKind> = c.messages.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            MessageKind::Visitor,
            MessageKind::Agent,
            MessageKind::System,
            MessageKind::Agent,
            MessageKind::System
        ]
    );
    assert_eq!(c.messages[1].triggered_by.as_deref(), Some("Welcome"));
    assert_eq!(c.messages[3].author_id.as_deref(), Some("3"));
}

#[test]
fn odd_values_are_normalized_rather_than_refused() {
    let c = Source::Smartsupp
        .parse(&fixture("smartsupp/empty-strings.json"))
        .unwrap()
        .conversation;
    assert_eq!(
        (
            c.visitor.ip.as_ref(),
            c.visitor.city.as_ref(),
            c.visitor.user_agent.as_ref()
        ),
        (None, None, None)
    );
    assert_eq!(
        c.rating, None,
        "rating null with an empty comment is no rating"
    );
    let c = Source::Smartsupp
        .parse(&fixture("smartsupp/unknown-extra-fields.json"))
        .unwrap()
        .conversation;
    assert_eq!(c.visitor.phone.as_deref(), Some("+420 601 123 456"));
    let c = Source::Smartsupp
        .parse(&fixture("smartsupp/many-variables-and-paths.json"))
        .unwrap()
        .conversation;
    assert!(
        c.visitor.variables.iter().any(|(key, v)| v.label == *key),
        "a variable without a label takes its key"
    );
    let c = Source::Smartsupp
        .parse(&fixture("smartsupp/unicode-emoji-rtl.json"))
        .unwrap()
        .conversation;
    let raw: serde_json::Value =
        serde_json::from_slice(&fixture("smartsupp/unicode-emoji-rtl.json")).unwrap();
    let texts: Vec<&str> = raw["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] != "system")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    for text in texts {
        assert!(
            c.messages.iter().any(|m| m.text == text),
            "text changed: {text:?}"
        );
    }
}

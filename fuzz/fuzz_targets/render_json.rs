//! Rendering a JSON body from an arbitrary conversation, through every connector of the
//! catalog (one instance of each shipped type) whose requests carry one: the body always parses as JSON, and chat text never changes its shape.
//! Each run renders the seed chat with its texts replaced by the fuzzer's, and again with
//! each of those texts replaced by a plain placeholder of the same emptiness; the two bodies
//! must have the same keys, array lengths and value types.

#![no_main]

use std::sync::OnceLock;

use chatbridge::connectors::{DeliveryJob, Registry};
use chatbridge::model::Conversation;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        chatbridge::tls::install_provider();
        let config = chatbridge::config::Config::from_toml(include_str!(
            "../../tests/fixtures/catalog.toml"
        ))
        .expect("the catalog config loads");
        chatbridge::app::registry(&config).expect("the catalog builds")
    })
}

fn seed() -> &'static Conversation {
    static SEED: OnceLock<Conversation> = OnceLock::new();
    SEED.get_or_init(|| {
        let body = include_bytes!("../../src/samples/smartsupp/seed-example.json");
        chatbridge::sources::smartsupp::conversation(body).expect("the seed parses")
    })
}

/// The seed with its free texts taken from `texts`, in turn.
fn with_texts(texts: &[&str]) -> Conversation {
    let mut conversation = seed().clone();
    let mut next = texts.iter().cycle().map(|t| (*t).to_owned());
    let mut take = || next.next().unwrap_or_default();
    conversation.visitor.name = Some(take());
    conversation.visitor.note = Some(take());
    conversation.visitor.city = Some(take());
    conversation.subject = take();
    for page in &mut conversation.pages {
        page.title = Some(take());
        page.url = Some(take());
    }
    for message in &mut conversation.messages {
        message.text = take();
        message.author_name = Some(take());
    }
    conversation
}

/// Keys, array lengths and value types, with every string the same.
fn shape(value: &Value) -> Value {
    match value {
        Value::String(_) => Value::String(String::new()),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        Value::Number(_) => Value::from(0),
        other => other.clone(),
    }
}

fn bodies(conversation: &Conversation) -> Vec<(String, Value)> {
    let raw = Value::Null;
    let mut out = Vec::new();
    for connector in registry().connectors() {
        let name = connector.name();
        let job = DeliveryJob::first(connector.name(), conversation, &raw);
        let plan = connector
            .dry_run(&job)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for request in plan {
            let Some(body) = request.body else { continue };
            if !request
                .headers
                .iter()
                .any(|(k, v)| k == "content-type" && v.contains("json"))
            {
                continue;
            }
            let parsed = serde_json::from_str::<Value>(&body)
                .unwrap_or_else(|e| panic!("{name} {}: not JSON ({e}): {body}", request.step));
            out.push((format!("{name} {}", request.step), shape(&parsed)));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let texts: Vec<&str> = text.split('\u{1f}').collect();
    let placeholders: Vec<&str> = texts
        .iter()
        .map(|t| if t.is_empty() { "" } else { "x" })
        .collect();
    let fuzzed = bodies(&with_texts(&texts));
    let plain = bodies(&with_texts(&placeholders));
    assert_eq!(fuzzed, plain, "chat text changed a body's shape");
});

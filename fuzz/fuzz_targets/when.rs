//! The `when` filter language: any expression either compiles and evaluates to true or
//! false against a conversation, or is refused, never a panic.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use chatbridge::config::TranscriptConfig;
use chatbridge::model::Conversation;
use chatbridge::render::{Renderer, condition_source, conversation_context};
use libfuzzer_sys::fuzz_target;

fn seed() -> &'static (Conversation, serde_json::Value) {
    static SEED: OnceLock<(Conversation, serde_json::Value)> = OnceLock::new();
    SEED.get_or_init(|| {
        let body = include_bytes!("../../src/samples/smartsupp/seed-example.json");
        let parsed = chatbridge::sources::Source::Smartsupp.parse(body).expect("the seed parses");
        (parsed.conversation, parsed.raw)
    })
}

fuzz_target!(|expression: &str| {
    let (conversation, raw) = seed();
    let snippets = [("when".to_owned(), condition_source(expression))];
    let Ok(renderer) = Renderer::build_with(
        None,
        &BTreeMap::new(),
        &snippets,
        &TranscriptConfig::default(),
        Some(&BTreeSet::new()),
    ) else {
        return;
    };
    let context = conversation_context(conversation, raw).expect("a context");
    let _ = renderer.condition("when", &context);
});

//! The connector definition loader: any TOML text is a definition or a list of problems,
//! and a definition's snippets (URLs, headers, conditions) either compile or are refused.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use chatbridge::config::TranscriptConfig;
use chatbridge::connectors::definition::Definition;
use chatbridge::render::Renderer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(definition) = Definition::from_toml(text, "fuzz.toml") else {
        return;
    };
    let snippets = definition.snippets("fuzz");
    let _ = Renderer::build_with(
        None,
        &BTreeMap::new(),
        &snippets,
        &TranscriptConfig::default(),
        Some(&BTreeSet::new()),
    );
});

//! Picking a step's outputs out of its answer, by JSON pointer or header, for later steps.

use reqwest::header::HeaderMap;

use crate::connectors::StepOutputs;
use crate::connectors::definition::{OutputSource, OutputSpec, Step};

/// Picks each output out of the answer; one that finds nothing (or a non-JSON answer) gives
/// null, so a later `when` can test it. With a search, pointers read the first listed item
/// the search finds by its rendered text.
pub(super) fn outputs(
    step: &Step,
    headers: &HeaderMap,
    answer: &[u8],
    search: Option<&str>,
) -> StepOutputs {
    use serde_json::Value;
    if step.outputs.is_empty() {
        return StepOutputs::new();
    }
    let mut document: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
    if let (Some(list), Some(text)) = (&step.search, search) {
        document = document
            .pointer(&list.items)
            .and_then(Value::as_array)
            .and_then(|items| items.iter().find(|item| list.finds(item, text)))
            .cloned()
            .unwrap_or(Value::Null);
    }
    step.outputs
        .iter()
        .map(|(name, spec)| (name.clone(), pick(spec, &document, headers)))
        .collect()
}

pub(super) fn pick(
    spec: &OutputSpec,
    document: &serde_json::Value,
    headers: &HeaderMap,
) -> serde_json::Value {
    use serde_json::Value;
    spec.alternatives()
        .iter()
        .find_map(|alternative| match alternative {
            OutputSource::Header(name) => headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .map(|v| Value::String(v.to_owned())),
            OutputSource::Pointer(pointer, None) => {
                document.pointer(pointer).filter(|v| !v.is_null()).cloned()
            }
            OutputSource::Pointer(pointer, Some(pattern)) => document
                .pointer(pointer)
                .and_then(Value::as_str)
                .and_then(|text| pattern.captures(text))
                .and_then(|found| found.get(1).or_else(|| found.get(0)))
                .map(|m| Value::String(m.as_str().to_owned())),
        })
        .unwrap_or(Value::Null)
}

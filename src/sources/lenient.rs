//! Reading fields from a vendor's JSON the way chat products actually send them.
//!
//! Chat payloads are loosely typed: ids arrive as numbers in one API version and strings in
//! another, optional strings are `null`, `""` or absent, flags may be `"true"`. A payload
//! that is merely odd must still become a conversation (the sender may not retry, so a 4xx
//! loses the chat), which is why sources read through these accessors instead of strict serde
//! structs: a field of an unexpected type reads as absent, never as an error.

use serde_json::Value;

/// A field as text: strings trimmed (empty means absent), numbers and booleans printed.
pub fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => {
            let trimmed = s.trim();
            (!trimmed.is_empty()).then(|| trimmed.to_owned())
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A field as text without trimming, for message bodies where white space is content.
/// Empty strings are kept: a visitor can send an empty line.
pub fn raw_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A field as a signed integer: numbers (fractions truncated) or numeric strings.
pub fn integer(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f as i64)
            })
        }
        _ => None,
    }
}

/// A field as a non-negative integer.
pub fn unsigned(value: Option<&Value>) -> Option<u64> {
    integer(value).and_then(|n| u64::try_from(n).ok())
}

/// A field as a flag: `true`, `"true"`, `1` and `"1"` are set; anything else is not.
pub fn flag(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        Some(Value::String(s)) => matches!(s.trim(), "true" | "1"),
        _ => false,
    }
}

/// A field as an array; anything else reads as empty.
pub fn array(value: Option<&Value>) -> &[Value] {
    match value {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_treats_empty_and_wrong_types_as_absent() {
        assert_eq!(text(Some(&json!("  x "))), Some("x".into()));
        assert_eq!(text(Some(&json!(""))), None);
        assert_eq!(text(Some(&json!(208))), Some("208".into()));
        assert_eq!(text(Some(&json!({"a": 1}))), None);
        assert_eq!(text(None), None);
    }

    #[test]
    fn numbers_may_arrive_as_strings() {
        assert_eq!(
            integer(Some(&json!("1427470439703"))),
            Some(1_427_470_439_703)
        );
        assert_eq!(integer(Some(&json!(36.9))), Some(36));
        assert_eq!(integer(Some(&json!("n/a"))), None);
        assert_eq!(unsigned(Some(&json!(-1))), None);
    }

    #[test]
    fn flags_accept_the_usual_spellings() {
        assert!(flag(Some(&json!(true))));
        assert!(flag(Some(&json!("true"))));
        assert!(flag(Some(&json!(1))));
        assert!(!flag(Some(&json!(null))));
        assert!(!flag(None));
    }
}

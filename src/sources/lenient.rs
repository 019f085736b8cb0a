//! Reading fields from a vendor's JSON the way chat products actually send them.
//!
//! Chat payloads are loosely typed: ids arrive as numbers in one API version and strings in
//! another, optional strings are `null`, `""` or absent, flags may be `"true"`. A payload
//! that is merely odd must still become a conversation (the sender may not retry, so a 4xx
//! loses the chat), which is why sources read through these accessors instead of strict serde
//! structs: a field of an unexpected type reads as absent, never as an error.
//!
//! The document is read into a [`Node`] tree rather than a `serde_json::Value`: its strings
//! borrow from the request body wherever they need no unescaping and its objects are flat
//! lists, so reading a chat allocates a few vectors instead of a string and a map node for
//! every key and value. Ingest reads every chat this way; the `Value` (templates' `raw`) is
//! made only for the connectors and rules that read it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use crate::model::Timestamp;

/// A JSON value whose strings borrow from the document they were read from.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as `serde_json` reads it.
    Number(Number),
    /// A string.
    Text(Cow<'a, str>),
    /// An array.
    Array(Vec<Node<'a>>),
    /// An object, its entries in document order.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// Reads a JSON document.
    ///
    /// # Errors
    /// When `body` is not JSON, with `serde_json`'s description of where it broke.
    pub fn parse(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The value of `key` when this is an object. Of duplicate keys the last one counts, as
    /// in `serde_json::Value`.
    pub fn get(&self, key: &str) -> Option<&Self> {
        self.entries()?
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The entries when this is an object, in document order.
    pub fn entries(&self) -> Option<&[(Cow<'a, str>, Self)]> {
        match self {
            Self::Object(entries) => Some(entries),
            _ => None,
        }
    }

    /// The same document as an owned `serde_json::Value`.
    pub fn to_value(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Number(n) => Value::Number(n.clone()),
            Self::Text(s) => Value::String(s.as_ref().to_owned()),
            Self::Array(items) => Value::Array(items.iter().map(Self::to_value).collect()),
            Self::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_ref().to_owned(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Node<'de>, E> {
        Ok(Number::from_f64(n).map_or(Node::Null, Node::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Text(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::Text(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
        Ok(Node::Text(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key::<Node<'de>>()? {
            let key = match key {
                Node::Text(key) => key,
                // JSON keys are strings; another deserializer's keys are kept as printed.
                other => Cow::Owned(other.to_value().to_string()),
            };
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Object(entries))
    }
}

/// A field as text: strings trimmed (empty means absent), numbers and booleans printed.
pub fn text(value: Option<&Node<'_>>) -> Option<String> {
    match value? {
        Node::Text(s) => {
            let trimmed = s.trim();
            (!trimmed.is_empty()).then(|| trimmed.to_owned())
        }
        Node::Number(n) => Some(n.to_string()),
        Node::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A field as text without trimming, for message bodies where white space is content.
/// Empty strings are kept: a visitor can send an empty line.
pub fn raw_text(value: Option<&Node<'_>>) -> Option<String> {
    match value? {
        Node::Text(s) => Some(s.as_ref().to_owned()),
        Node::Number(n) => Some(n.to_string()),
        Node::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A field as a signed integer: numbers (fractions truncated) or numeric strings.
pub fn integer(value: Option<&Node<'_>>) -> Option<i64> {
    match value? {
        Node::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Node::Text(s) => {
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
pub fn unsigned(value: Option<&Node<'_>>) -> Option<u64> {
    integer(value).and_then(|n| u64::try_from(n).ok())
}

/// A field as a flag: `true`, `"true"`, `1` and `"1"` are set; anything else is not.
pub fn flag(value: Option<&Node<'_>>) -> bool {
    match value {
        Some(Node::Bool(b)) => *b,
        Some(Node::Number(n)) => n.as_i64() == Some(1),
        Some(Node::Text(s)) => matches!(s.trim(), "true" | "1"),
        _ => false,
    }
}

/// A field as an array; anything else reads as empty.
pub fn array<'v, 'a>(value: Option<&'v Node<'a>>) -> &'v [Node<'a>] {
    match value {
        Some(Node::Array(items)) => items,
        _ => &[],
    }
}

/// A field as an object; anything else reads as absent.
pub fn object<'v, 'a>(value: Option<&'v Node<'a>>) -> Option<&'v Node<'a>> {
    value.filter(|v| matches!(v, Node::Object(_)))
}

/// Below this, an epoch number is taken as seconds rather than milliseconds (10^11 ms is
/// 1973; 10^11 s is the year 5138): products send either, some with a fraction.
const MILLIS_THRESHOLD: f64 = 1e11;

/// A field as an instant: RFC 3339 text (any fraction of a second), or an epoch number or
/// numeric string, in seconds (with or without a fraction) below 10^11, milliseconds from
/// there on. Zero and negative epochs read as absent: products send `0` for "not yet".
pub fn instant(value: Option<&Node<'_>>) -> Option<Timestamp> {
    let epoch = match value? {
        Node::Number(n) => n.as_f64()?,
        Node::Text(s) => {
            let s = s.trim();
            if let Ok(t) = Timestamp::parse(s) {
                return Some(t);
            }
            s.parse::<f64>().ok()?
        }
        _ => return None,
    };
    if !epoch.is_finite() || epoch <= 0.0 {
        return None;
    }
    let ms = if epoch < MILLIS_THRESHOLD {
        (epoch * 1000.0).round()
    } else {
        epoch.trunc()
    };
    // Beyond i64 milliseconds is beyond any year a Timestamp holds.
    (ms < 9.2e18).then(|| Timestamp::from_unix_millis(ms as i64))?
}

impl<'a> Node<'a> {
    /// The same document as a `serde_json::Value` holds it, its strings borrowed: how a
    /// fetcher reads the answers of a product's API.
    pub fn from_value(value: &'a Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => Self::Number(n.clone()),
            Value::String(s) => Self::Text(Cow::Borrowed(s)),
            Value::Array(items) => Self::Array(items.iter().map(Self::from_value).collect()),
            Value::Object(entries) => Self::Object(
                entries
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Self::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// The value at `path` of nested objects (`["chat", "visitor", "email"]`).
    pub fn at(&self, path: &[&str]) -> Option<&Self> {
        path.iter().try_fold(self, |node, key| node.get(key))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `read` applied to `value` as a lenient reader sees it.
    fn read<T>(value: Value, read: impl Fn(Option<&Node<'_>>) -> T) -> T {
        let node = Node::deserialize(&value).expect("any value reads");
        read(Some(&node))
    }

    #[test]
    fn text_treats_empty_and_wrong_types_as_absent() {
        assert_eq!(read(json!("  x "), text), Some("x".into()));
        assert_eq!(read(json!(""), text), None);
        assert_eq!(read(json!(208), text), Some("208".into()));
        assert_eq!(read(json!({"a": 1}), text), None);
        assert_eq!(text(None), None);
    }

    #[test]
    fn numbers_may_arrive_as_strings() {
        assert_eq!(
            read(json!("1427470439703"), integer),
            Some(1_427_470_439_703)
        );
        assert_eq!(read(json!(36.9), integer), Some(36));
        assert_eq!(read(json!("n/a"), integer), None);
        assert_eq!(read(json!(-1), unsigned), None);
    }

    #[test]
    fn flags_accept_the_usual_spellings() {
        assert!(read(json!(true), flag));
        assert!(read(json!("true"), flag));
        assert!(read(json!(1), flag));
        assert!(!read(json!(null), flag));
        assert!(!flag(None));
    }

    #[test]
    fn strings_borrow_from_the_body_unless_escaped_and_the_last_duplicate_key_counts() {
        let body = br#"{"a": "plain", "b": "tab\there", "a": "again"}"#;
        let node = Node::parse(body).unwrap();
        assert!(matches!(
            node.get("a"),
            Some(Node::Text(Cow::Borrowed("again")))
        ));
        assert!(matches!(node.get("b"), Some(Node::Text(Cow::Owned(s))) if s == "tab\there"));
        let value: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(node.to_value(), value);
    }
}

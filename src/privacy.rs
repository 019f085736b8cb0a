//! Redaction of message text (`[privacy] redact`), applied at ingest before anything is
//! stored, so neither the store, the templates nor the targets ever see what it removes.
//!
//! A rule rewrites the normalized messages, and the same texts wherever they occur as string
//! values in the raw document (templates may read `raw`). The body's digest is taken before
//! redaction, so an identical resend is still recognised as a duplicate.

use regex::Regex;
use serde_json::Value;

use crate::config::RedactRule;
use crate::model::Conversation;

/// The compiled `[privacy] redact` rules.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    rules: Vec<(Regex, String)>,
}

impl Redactor {
    /// The configured rules, in order.
    pub fn new(rules: &[RedactRule]) -> Self {
        Self {
            rules: rules
                .iter()
                .map(|r| (r.pattern.clone(), r.replacement.clone()))
                .collect(),
        }
    }

    /// Whether any rule is configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// `text` with every rule applied, or `None` when no rule matched.
    pub fn text(&self, text: &str) -> Option<String> {
        let mut changed = None::<String>;
        for (regex, replacement) in &self.rules {
            let current = changed.as_deref().unwrap_or(text);
            if let std::borrow::Cow::Owned(next) = regex.replace_all(current, replacement.as_str())
            {
                changed = Some(next);
            }
        }
        changed
    }

    /// Redacts the conversation's messages and, when any changed, returns the raw document
    /// with the same texts redacted. `None`: nothing matched, keep the body as received.
    pub fn conversation(
        &self,
        conversation: &mut Conversation,
        raw: &mut Value,
    ) -> Option<Vec<u8>> {
        if self.is_empty() {
            return None;
        }
        let mut any = false;
        // The subject is made from the first message, and the rating comment is the
        // visitor's own words: both are message text.
        let texts = conversation
            .messages
            .iter_mut()
            .map(|m| &mut m.text)
            .chain(std::iter::once(&mut conversation.subject))
            .chain(
                conversation
                    .rating
                    .as_mut()
                    .and_then(|r| r.comment.as_mut()),
            );
        for text in texts {
            if let Some(redacted) = self.text(text) {
                *text = redacted;
                any = true;
            }
        }
        if !any {
            return None;
        }
        self.strings(raw);
        serde_json::to_vec(raw).ok()
    }

    /// Applies the rules to every string in `value`.
    fn strings(&self, value: &mut Value) {
        match value {
            Value::String(text) => {
                if let Some(redacted) = self.text(text) {
                    *text = redacted;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.strings(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.strings(v)),
            _ => {}
        }
    }

    /// A body that did not parse, redacted as text where it is text.
    pub fn body(&self, body: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(body).ok()?;
        self.text(text).map(String::into_bytes)
    }
}

/// Whether `bytes` mention the e-mail address `needle` (given in lower case), however they
/// spell it: one of [`addresses`].
pub fn mentions(bytes: &[u8], needle: &str) -> bool {
    !needle.is_empty() && addresses(bytes).contains(needle)
}

/// Every e-mail address `bytes` mention, in lower case, however they spell it: in any letter
/// case, with JSON string escapes (`zoe\u0040example.com`, a `\/`), or percent-encoded
/// (`zoe%40example.com`, a form body). What the store indexes each body and attempt excerpt
/// by, so that erasing a visitor finds what mentions them without reading every body.
///
/// An address is the run of characters an address may hold on each side of an `@`. Its
/// local part may begin after one of the rarer characters an address may also hold (`=`,
/// `&`, `'`, `/`...), since text around an address uses them too (`email=zoe@example.com`):
/// each such ending is an address as well. So `o'brien@example.com` is found as itself and
/// as `brien@example.com`; an erasure of either finds the body, as a substring search would.
pub fn addresses(bytes: &[u8]) -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    let text = String::from_utf8_lossy(bytes).to_lowercase();
    collect_addresses(&text, &mut found);
    if text.contains('\\') {
        let unescaped = unescape_json(&text).to_lowercase();
        collect_addresses(&unescaped, &mut found);
        if unescaped.contains('%') {
            collect_addresses(&percent_decoded(&unescaped).to_lowercase(), &mut found);
        }
    } else if text.contains('%') {
        collect_addresses(&percent_decoded(&text).to_lowercase(), &mut found);
    }
    found
}

/// Every address any of `texts` mentions ([`addresses`]), each once, in order: what the
/// store indexes a version (its body and normalized form) or an attempt (its error and the
/// target's answer) by.
pub fn addresses_in<'a>(texts: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    let mut found = std::collections::BTreeSet::new();
    for text in texts {
        found.extend(addresses(text));
    }
    found.into_iter().collect()
}

/// Adds the addresses written plainly in `text` (lower case) to `found`.
fn collect_addresses(text: &str, found: &mut std::collections::BTreeSet<String>) {
    // Letters, digits and the dot-atom characters of RFC 5322; of them, those that rarely
    // begin a local part but often stand before one in other text end a candidate's start.
    let plain = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '+' | '-');
    let local = |c: char| plain(c) || "!#$%&'*/=?^`{|}~".contains(c);
    let domain = |c: char| c.is_alphanumeric() || matches!(c, '.' | '-');
    for (at, _) in text.match_indices('@') {
        let right = &text[at + 1..];
        let end = right.find(|c: char| !domain(c)).unwrap_or(right.len());
        let host = right[..end].trim_end_matches(['.', '-']);
        if host.is_empty() {
            continue;
        }
        let left = &text[..at];
        let start = left
            .char_indices()
            .rev()
            .take_while(|&(_, c)| local(c))
            .last()
            .map_or(at, |(i, _)| i);
        let run = &left[start..];
        let starts = std::iter::once(0).chain(
            run.char_indices()
                .filter(|&(_, c)| !plain(c))
                .map(|(i, c)| i + c.len_utf8()),
        );
        for from in starts {
            let name = run[from..].trim_start_matches('.');
            if !name.is_empty() {
                found.insert(format!("{name}@{host}"));
            }
        }
    }
}

/// `text` with JSON string escapes replaced by what they stand for, wherever they occur; a
/// broken escape is kept as it is.
fn unescape_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escape = &rest[at + 1..];
        let mut chars = escape.chars();
        match chars.next() {
            Some('u') => {
                let unit = |s: &str| s.get(..4).and_then(|h| u16::from_str_radix(h, 16).ok());
                let high = unit(&escape[1..]);
                let low = escape
                    .get(5..7)
                    .filter(|s| *s == "\\u")
                    .and_then(|_| unit(&escape[7..]));
                match (high, low) {
                    (Some(h), Some(l)) if (0xD800..0xDC00).contains(&h) => {
                        match char::decode_utf16([h, l]).next() {
                            Some(Ok(c)) => out.push(c),
                            _ => out.push(char::REPLACEMENT_CHARACTER),
                        }
                        rest = &escape[11..];
                    }
                    (Some(h), _) => {
                        out.push(
                            char::from_u32(u32::from(h)).unwrap_or(char::REPLACEMENT_CHARACTER),
                        );
                        rest = &escape[5..];
                    }
                    (None, _) => {
                        out.push('\\');
                        rest = escape;
                    }
                }
            }
            Some(c) => {
                out.push(match c {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'b' | 'f' => ' ',
                    other => other,
                });
                rest = &escape[c.len_utf8()..];
            }
            None => {
                out.push('\\');
                rest = escape;
            }
        }
    }
    out.push_str(rest);
    out
}

fn percent_decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_found_however_the_body_spells_it() {
        let needle = "zoe.forgetme@example.com";
        for body in [
            r#"{"email":"Zoe.ForgetMe@Example.com"}"#,
            r#"{"email":"zoe.forgetme\u0040example.com""#,
            r#"{"email":"zoe.forgetme\u0040EXAMPLE\u002ecom"}"#,
            "email=zoe.forgetme%40example.com&name=Zoe",
            r#"{"note":"see \"zoe.forgetme@example.com\""}"#,
            "mailto:zoe.forgetme@example.com.",
            "<a href='mailto:Zoe.ForgetMe@example.com'>",
        ] {
            assert!(mentions(body.as_bytes(), needle), "{body}");
        }
        for body in [
            r#"{"email":"zoe.forget@example.com"}"#,
            r#"{"email":"xzoe.forgetme@example.com"}"#,
            r#"{"email":"zoe.forgetme@example.community"}"#,
            r#"{"broken":"\u00"}"#,
            "\\",
            r#"\ud83d\ude00 \ud83d"#,
        ] {
            assert!(!mentions(body.as_bytes(), needle), "{body}");
        }
        assert_eq!(unescape_json(r#"\ud83d\ude00"#), "\u{1F600}");
    }

    #[test]
    fn every_address_is_listed_once_with_the_endings_text_may_put_before_it() {
        let listed = |body: &str| addresses(body.as_bytes()).into_iter().collect::<Vec<_>>();
        assert_eq!(
            listed("email=O'Brien@Example.COM&cc=orders+buyer@example.com, @here, a@b."),
            [
                "a@b",
                "brien@example.com",
                "cc=orders+buyer@example.com",
                "email=o'brien@example.com",
                "example.com&cc=orders+buyer@example.com",
                "o'brien@example.com",
                "orders+buyer@example.com"
            ]
        );
        assert_eq!(
            listed(r#"{"to":"ana\u0040example.org"}"#),
            ["ana@example.org"]
        );
        assert!(listed("no address @ all, @@, x@").is_empty());
    }

    #[test]
    fn matching_text_is_replaced_and_other_text_left_alone() {
        let redactor = Redactor::new(&[RedactRule {
            pattern: regex::Regex::new(r"\b(?:\d[ -]?){13,16}\b").unwrap(),
            replacement: "[card]".into(),
        }]);
        assert_eq!(
            redactor
                .text("my card is 4111 1111 1111 1111, thanks")
                .as_deref(),
            Some("my card is [card], thanks")
        );
        assert_eq!(redactor.text("order 1234"), None);
    }

    #[test]
    fn a_bad_pattern_is_a_config_error_naming_the_rule() {
        let err =
            crate::config::Config::from_toml("[[privacy.redact]]\npattern = \"(\"\n").unwrap_err();
        assert!(err.to_string().contains("privacy.redact"), "{err}");
    }
}

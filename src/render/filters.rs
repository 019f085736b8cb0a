//! The escapers and filters templates use: each destination's escaping (JSON string content,
//! percent-encoding) and the filters that shape chat text for a target (one line, HTML lines,
//! Slack mrkdwn, TicketSQL quoting, names and dates).

use std::io::Write;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use tera::{Kwargs, State, Value};

use super::DOCUMENT_CAPACITY;
use crate::model::Timestamp;

/// Escapes text for the inside of a JSON string literal (the quotes come from the template).
pub(super) fn escape_json(input: &str, out: &mut dyn Write) -> std::io::Result<()> {
    let quoted = serde_json::to_string(input).map_err(std::io::Error::other)?;
    out.write_all(&quoted.as_bytes()[1..quoted.len() - 1])
}

/// Everything but RFC 3986 unreserved characters is encoded, so a value cannot add a path
/// segment, a query parameter or a fragment.
pub(super) const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(super) fn escape_url(input: &str, out: &mut dyn Write) -> std::io::Result<()> {
    let segment = url_segment(input).ok_or_else(|| {
        std::io::Error::other(format!(
            "a value of `{input}` cannot be put in a URL: it would move along the path"
        ))
    })?;
    out.write_all(segment.as_bytes())
}

/// `{{ value | json }}`: the value as a JSON document (strings quoted), not escaped again.
pub(super) fn json_filter(value: Value, _: Kwargs, _: &State) -> tera::TeraResult<Value> {
    let error = |e: &dyn std::error::Error| tera::Error::message(e.to_string());
    // Sized for its usual argument, a whole conversation, as in `render`.
    let mut out = Vec::with_capacity(DOCUMENT_CAPACITY);
    serde_json::to_writer(&mut out, &value).map_err(|e| error(&e))?;
    let text = String::from_utf8(out).map_err(|e| error(&e))?;
    Ok(Value::safe_string(&text))
}

/// `{{ text | newlines_to_br }}` in a template whose output is HTML: the text escaped and its
/// line breaks made `<br>`, marked safe so the autoescaping does not escape the `<br>` again.
/// Tera's own filter inserts `<br>` into the raw text, which autoescaping then turns into a
/// literal `&lt;br&gt;`, and which without autoescaping leaves the chat's markup live.
pub fn html_lines(text: &str, _: Kwargs, _: &State) -> Value {
    Value::safe_string(&html_lines_text(text))
}

/// The HTML of [`html_lines`], for templates whose output is not HTML itself (a JSON body
/// carrying an HTML field): their own escaping still applies to it.
pub(super) fn html_lines_text(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let mut out = Vec::with_capacity(text.len() + text.len() / 8);
    for (n, line) in text.split(['\n', '\r']).enumerate() {
        if n > 0 {
            out.extend_from_slice(b"<br>");
        }
        // Writing into a Vec cannot fail.
        let _ = tera::escape_html(line, &mut out);
    }
    // Escaping valid UTF-8 yields valid UTF-8.
    String::from_utf8_lossy(&out).into_owned()
}

/// `{{ value | urlencode }}`: percent-encodes a value where autoescaping is off.
pub(super) fn urlencode_filter(value: &str, _: Kwargs, _: &State) -> String {
    url_encode(value)
}

/// Text made fit for one header line (an e-mail subject or display name, an HTTP header):
/// control characters, CR and LF among them, become spaces, and runs of white space one
/// space. Chat text written into a header can then neither start a header of its own nor
/// reach a library that refuses, or panics on, what a header cannot carry.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text
        .split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn url_encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, URL_VALUE).to_string()
}

/// `value` as one path segment, percent-encoded; `None` for `.` and `..`, which URL parsers
/// take as "here" and "up" however they are encoded (WHATWG counts `%2e%2e` as `..`), so
/// that `/tickets/{{ id }}` with an id of `..` would call `/`.
pub fn url_segment(value: &str) -> Option<String> {
    let encoded = url_encode(value);
    let dots = encoded.replace("%2E", ".").replace("%2e", ".");
    (dots != "." && dots != "..").then_some(encoded)
}

/// `{{ delivery.key | marker }}`: a short word derived from a key (`cb` and 16 hex digits),
/// for targets that can only find what chatbridge made by a tag, a label or a word in the
/// text. Letters and digits only, so every tag syntax and search tokenizer keeps it whole.
pub fn marker(key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    format!("cb{}", hex::encode(&digest[..8]))
}

pub(super) fn marker_filter(value: &str, _: Kwargs, _: &State) -> String {
    marker(value)
}

/// `{{ text | mrkdwn }}`: escapes the three characters Slack's mrkdwn reads as markup
/// (`<@U123>` would mention someone, `<http://x|y>` would link), as Slack asks.
pub(super) fn mrkdwn_filter(value: &str, _: Kwargs, _: &State) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `{{ value | quoted }}`: a string literal of a search language that quotes with `'` and
/// escapes with a backslash, as Request Tracker's TicketSQL and Jira's JQL do. Chat text put
/// in a query this way stays one value: `x' OR id > '0` cannot add a condition that matches
/// every ticket.
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if matches!(c, '\'' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// `{{ conversation.visitor.name | display_name }}`: a name fit for the phrase before an
/// address (`Name <a@b.example>`) in a field that takes a list of them, such as Request
/// Tracker's requestors. The characters that quote, comment, group or separate addresses are
/// dropped and the rest made one line, so `attacker@evil.example, Bob` cannot become a second
/// requestor.
pub fn display_name(text: &str) -> String {
    let kept: String = text
        .chars()
        .filter(|c| *c != '@' && !crate::model::ADDRESS_SPECIALS.contains(c))
        .collect();
    one_line(&kept)
}

/// `{{ conversation.visitor.name | first_name }}`: the first word of a full name, for CRMs
/// that keep first and last names apart ("Jane" of "Jane van Doe").
pub(super) fn first_name_filter(value: &str, _: Kwargs, _: &State) -> String {
    split_name(value).0.to_owned()
}

/// `{{ conversation.visitor.name | last_name }}`: the rest of a full name after its first
/// word ("van Doe"); empty for a single word.
pub(super) fn last_name_filter(value: &str, _: Kwargs, _: &State) -> String {
    split_name(value).1.to_owned()
}

pub(super) fn split_name(name: &str) -> (&str, &str) {
    let name = name.trim();
    match name.split_once(char::is_whitespace) {
        Some((first, rest)) => (first, rest.trim()),
        None => (name, ""),
    }
}

/// `{{ message.sent_at | datetime(format="[hour]:[minute]") }}`: formats an RFC 3339
/// instant in the `[transcript]` time zone with a `time` format description; the default
/// reads `2024-06-13 11:30 Europe/Prague`.
pub(super) fn datetime(
    value: Value,
    kwargs: Kwargs,
    zone: &jiff::tz::TimeZone,
) -> tera::TeraResult<String> {
    let fail = |e: &dyn std::fmt::Display| tera::Error::message(format!("datetime: {e}"));
    let Some(text) = value.as_str() else {
        return Ok(String::new());
    };
    let instant = Timestamp::parse(text).map_err(|e| fail(&e))?.as_datetime();
    let at = jiff::Timestamp::from_second(instant.unix_timestamp()).map_err(|e| fail(&e))?;
    let offset =
        time::UtcOffset::from_whole_seconds(zone.to_offset(at).seconds()).map_err(|e| fail(&e))?;
    // Checked: the last hours of year 9999, which a payload may carry, have no local time
    // east of UTC, and the unchecked conversion panics.
    let local = instant
        .checked_to_offset(offset)
        .ok_or_else(|| fail(&"the time is out of range in this time zone"))?;
    let (format, named) = match kwargs.get::<&str>("format")? {
        Some(format) => (format, false),
        None => ("[year]-[month]-[day] [hour]:[minute]", true),
    };
    let description =
        time::format_description::parse_borrowed::<2>(format).map_err(|e| fail(&e))?;
    let shown = local.format(&description).map_err(|e| fail(&e))?;
    Ok(if named {
        format!("{shown} {}", zone.iana_name().unwrap_or("UTC"))
    } else {
        shown
    })
}

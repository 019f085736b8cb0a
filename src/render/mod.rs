//! Tera templates: loading, escaping by destination, and the context templates see.
//!
//! Three Tera instances share the template files but escape differently, because the
//! escaping must match the place a value lands (Tera has one escape function per instance):
//!
//! | instance | what | escaping |
//! |---|---|---|
//! | `bodies` | `*.json.tera` request bodies | JSON string content: a chat line such as `"}, "admin": true` stays inside its string |
//! | `documents` | `_partials/*`, `*.txt.tera`, `*.html.tera` | HTML for `.html.tera`, none otherwise |
//! | `snippets` | the short templates inside connector definitions (URLs, headers, auth, conditions) | percent-encoding for URL templates, none otherwise |
//!
//! Literal text of an included partial is never escaped by Tera, so a JSON body must not
//! `include` a text partial. Instead the transcripts and the visitor summary are rendered
//! first and handed to bodies as values (`transcript.text`, `transcript.html`,
//! `visitor_summary`), which the JSON escaping then covers.
//!
//! Every template a configured connector uses, and every file of `templates_dir`, is parsed at
//! startup (a syntax error is a startup error); the shipped templates of types no instance
//! uses are not, since parsed templates stay in memory for the life of the process (three
//! Tera instances of every shipped type were 0.6 MiB). Every rendered JSON body is parsed
//! before it is sent (a failure is a permanent error naming the template).

mod filters;

pub use filters::{display_name, html_lines, marker, one_line, quoted, url_encode, url_segment};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use include_dir::{Dir, include_dir};
use serde::Serialize;
use tera::{Context, Kwargs, State, Tera, Value};

use self::filters::{
    datetime, escape_json, escape_url, first_name_filter, html_lines_text, json_filter,
    last_name_filter, marker_filter, mrkdwn_filter, urlencode_filter,
};
use crate::config::TranscriptConfig;
use crate::model::Conversation;

/// The templates shipped in the binary; a `templates_dir` overrides them file by file.
static BUILTIN_TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// Suffix of templates whose output must be a JSON document.
pub const JSON_SUFFIX: &str = ".json.tera";

/// Suffix of snippet names whose values are percent-encoded.
pub const URL_SUFFIX: &str = ".url";

/// What can go wrong loading or rendering a template.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template or a templates folder could not be read.
    #[error("cannot read templates from {path}: {source}")]
    Read {
        /// The folder or file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Templates that do not parse.
    #[error("template syntax: {0}")]
    Syntax(String),
    /// The transcript's time zone is not one the time zone database knows.
    #[error("time zone `{zone}`: {reason}")]
    TimeZone {
        /// As configured.
        zone: String,
        /// Why it is refused.
        reason: String,
    },
    /// A template that does not exist.
    #[error("no template named `{0}`")]
    Missing(String),
    /// Rendering failed (an undefined variable, a filter error).
    #[error("template `{template}` failed to render: {message}")]
    Render {
        /// The template's name.
        template: String,
        /// Tera's explanation.
        message: String,
    },
    /// A JSON body template produced something that is not JSON.
    #[error("template `{template}` did not produce valid JSON: {error}")]
    InvalidJson {
        /// The template's name.
        template: String,
        /// Where the document broke.
        error: String,
    },
}

/// The transcripts and summaries rendered from `_partials/` before the body.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Transcript {
    /// Plain-text transcript (`_partials/transcript.txt.tera`).
    pub text: String,
    /// HTML transcript (`_partials/transcript.html.tera`).
    pub html: String,
    /// Markdown transcript (`_partials/transcript.md.tera`), for Slack, Jira and Markdown
    /// fields.
    pub markdown: String,
}

/// What a connector's templates read of the values that cost a pass over the conversation
/// to make: the transcripts and visitor summary rendered from `_partials/`, and the original
/// request body parsed. An attempt makes only those its connector reads; the others are
/// empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    /// `transcript.text`.
    pub text: bool,
    /// `transcript.html`.
    pub html: bool,
    /// `transcript.markdown`.
    pub markdown: bool,
    /// `visitor_summary`.
    pub summary: bool,
    /// `raw`.
    pub raw: bool,
}

impl Reads {
    /// Every one of them.
    pub const ALL: Self = Self {
        text: true,
        html: true,
        markdown: true,
        summary: true,
        raw: true,
    };
    const NONE: Self = Self {
        text: false,
        html: false,
        markdown: false,
        summary: false,
        raw: false,
    };

    /// What `source` reads, erring towards reading more: a template that includes, imports
    /// or extends another, dumps the context, or uses `transcript` other than by one of its
    /// fields, reads them all.
    pub fn read_by(source: &str) -> Self {
        if [
            "{% include",
            "{% import",
            "{% extends",
            "{%- include",
            "{%- import",
            "{%- extends",
            "__tera_context",
        ]
        .iter()
        .any(|tag| source.contains(tag))
        {
            return Self::ALL;
        }
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let whole = |at: usize, name: &str| {
            !source[..at].ends_with(word) && !source[at + name.len()..].starts_with(word)
        };
        let mut read = Self::NONE;
        read.summary = source.contains("visitor_summary");
        read.raw = source.match_indices("raw").any(|(at, _)| whole(at, "raw"));
        for (at, _) in source.match_indices("transcript") {
            if !whole(at, "transcript") {
                continue; // another name, such as `transcript_settings`
            }
            let after = &source[at + "transcript".len()..];
            let field: String = after
                .strip_prefix('.')
                .map(|rest| rest.chars().take_while(|&c| word(c)).collect())
                .unwrap_or_default();
            match field.as_str() {
                "text" => read.text = true,
                "html" => read.html = true,
                "markdown" => read.markdown = true,
                _ => return Self::ALL,
            }
        }
        read
    }

    fn and(self, other: Self) -> Self {
        Self {
            text: self.text || other.text,
            html: self.html || other.html,
            markdown: self.markdown || other.markdown,
            summary: self.summary || other.summary,
            raw: self.raw || other.raw,
        }
    }
}

/// Everything a template may use. Rendered from this one struct, so this is the reference
/// for template authors.
#[derive(Debug, Serialize)]
pub struct RenderContext<'a> {
    /// The normalized conversation (`DESIGN.md` documents every field).
    pub conversation: &'a Conversation,
    /// The original request body, for anything the model does not carry.
    pub raw: &'a serde_json::Value,
    /// This delivery: `key` (stable idempotency key), `id`, `version`, `attempt`.
    pub delivery: &'a DeliveryInfo,
    /// The connector instance: `name` and `type`.
    pub connector: ConnectorInfo<'a>,
    /// The instance's settings, secrets included (auth and signatures need them; the dry run
    /// masks them in what it prints).
    pub settings: &'a BTreeMap<String, String>,
    /// The base URL requests go to.
    pub base_url: &'a str,
}

/// The delivery being rendered.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryInfo {
    /// Store id of the delivery (0 in a dry run).
    pub id: i64,
    /// Idempotency key, stable across retries and versions of one conversation for one
    /// connector instance.
    pub key: String,
    /// Version of the conversation being delivered (1 for the first copy received).
    pub version: i64,
    /// Attempt number, starting at 1.
    pub attempt: u32,
}

/// The connector instance a template renders for.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ConnectorInfo<'a> {
    /// Instance name from config.
    pub name: &'a str,
    /// Connector type (definition name).
    #[serde(rename = "type")]
    pub kind: &'a str,
}

/// Holds every template, parsed once.
pub struct Renderer {
    bodies: Tera,
    documents: Tera,
    snippets: Tera,
    /// Template sources by name, to tell what a template reads.
    sources: BTreeMap<String, String>,
    /// The connector definitions' snippets by name, likewise.
    snippet_sources: BTreeMap<String, String>,
    transcript: TranscriptConfig,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer").finish_non_exhaustive()
    }
}

impl Renderer {
    /// Loads the built-in templates, then the files of `templates_dir` over them (same
    /// relative name wins), and the connector definitions' snippets; parses them all.
    ///
    /// # Errors
    /// When a folder cannot be read or any template does not parse.
    pub fn build(
        templates_dir: Option<&Path>,
        snippets: &[(String, String)],
        transcript: &TranscriptConfig,
    ) -> Result<Self, RenderError> {
        Self::build_with(templates_dir, &BTreeMap::new(), snippets, transcript, None)
    }

    /// As [`Renderer::build`], with `overrides` (name → text) over every file (the template
    /// playground renders edits without saving them), parsing of the built-in templates
    /// only the partials, those named in `used` (all when `None`) and what they include.
    ///
    /// # Errors
    /// As [`Renderer::build`].
    pub fn build_with(
        templates_dir: Option<&Path>,
        overrides: &BTreeMap<String, String>,
        snippets: &[(String, String)],
        transcript: &TranscriptConfig,
        used: Option<&BTreeSet<&str>>,
    ) -> Result<Self, RenderError> {
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        collect_builtin(&BUILTIN_TEMPLATES, &mut files);
        let mut own = BTreeSet::new();
        if let Some(dir) = templates_dir {
            let mut found = BTreeMap::new();
            collect_dir(dir, dir, &mut found)?;
            own.extend(found.keys().cloned());
            files.extend(found);
        }
        own.extend(overrides.keys().cloned());
        files.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        let zone =
            jiff::tz::TimeZone::get(&transcript.time_zone).map_err(|e| RenderError::TimeZone {
                zone: transcript.time_zone.clone(),
                reason: e.to_string(),
            })?;

        let parsed = to_parse(&files, &own, used);
        let parsed = || parsed.iter().map(|&name| (name, files[name].as_str()));
        let mut bodies = new_tera(escape_json, [JSON_SUFFIX], &zone);
        bodies.add_raw_templates(parsed()).map_err(syntax)?;
        let mut documents = new_tera(tera::escape_html, [".html.tera"], &zone);
        documents.register_filter("newlines_to_br", html_lines);
        documents.add_raw_templates(parsed()).map_err(syntax)?;
        let mut snippet_tera = new_tera(escape_url, [URL_SUFFIX], &zone);
        snippet_tera
            .add_raw_templates(snippets.iter().map(|(n, s)| (n.as_str(), s.as_str())))
            .map_err(syntax)?;
        Ok(Self {
            bodies,
            documents,
            snippets: snippet_tera,
            sources: files,
            snippet_sources: snippets.iter().cloned().collect(),
            transcript: transcript.clone(),
        })
    }

    /// Whether the template `name` (not what it includes) contains `text`; `render` uses it
    /// to mark steps whose bodies read earlier answers.
    pub fn template_mentions(&self, name: &str, text: &str) -> bool {
        self.sources.get(name).is_some_and(|s| s.contains(text))
    }

    /// The text of template `name`, as loaded.
    pub fn source(&self, name: &str) -> Option<&str> {
        self.sources.get(name).map(String::as_str)
    }

    /// Whether a template file of this name exists, parsed or not.
    pub fn has_template(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }

    /// What the templates `templates` and the snippets named `{snippets}/…` read; a template
    /// that is not loaded is taken to read everything.
    pub fn reads<'n>(&self, templates: impl IntoIterator<Item = &'n str>, snippets: &str) -> Reads {
        let prefix = format!("{snippets}/");
        let templates = templates.into_iter().map(|name| {
            self.sources
                .get(name)
                .map_or(Reads::ALL, |s| Reads::read_by(s))
        });
        let snippets = self
            .snippet_sources
            .range(prefix.clone()..)
            .take_while(|(name, _)| name.starts_with(&prefix))
            .map(|(_, source)| Reads::read_by(source));
        templates.chain(snippets).fold(Reads::NONE, Reads::and)
    }

    /// Builds the Tera context for one delivery, with the partials `reads` names already
    /// rendered.
    ///
    /// # Errors
    /// When a partial fails to render.
    pub fn context(&self, cx: &RenderContext<'_>, reads: Reads) -> Result<Context, RenderError> {
        let mut context = Context::from_serialize(cx).map_err(|e| RenderError::Render {
            template: "(context)".into(),
            message: error_chain(&e),
        })?;
        context.insert("transcript_settings", &self.transcript);
        let render = |wanted: bool, name: &str| -> Result<String, RenderError> {
            if wanted {
                self.document(name, &context)
            } else {
                Ok(String::new())
            }
        };
        let transcript = Transcript {
            text: render(reads.text, "_partials/transcript.txt.tera")?,
            html: render(reads.html, "_partials/transcript.html.tera")?,
            markdown: render(reads.markdown, "_partials/transcript.md.tera")?,
        };
        let summary = render(reads.summary, "_partials/visitor.txt.tera")?;
        context.insert("transcript", &transcript);
        context.insert("visitor_summary", &summary);
        Ok(context)
    }

    /// Renders a body template; a `.json.tera` result must parse as JSON.
    ///
    /// # Errors
    /// When rendering fails or the JSON does not parse.
    pub fn body(&self, name: &str, context: &Context) -> Result<String, RenderError> {
        let out = render(&self.bodies, name, context, DOCUMENT_CAPACITY)?;
        if name.ends_with(JSON_SUFFIX)
            && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&out)
        {
            return Err(RenderError::InvalidJson {
                template: name.to_owned(),
                error: e.to_string(),
            });
        }
        Ok(out)
    }

    /// Renders a partial or plain document template.
    ///
    /// # Errors
    /// When rendering fails.
    pub fn document(&self, name: &str, context: &Context) -> Result<String, RenderError> {
        render(&self.documents, name, context, DOCUMENT_CAPACITY)
    }

    /// Renders a definition snippet (URL, header, auth value).
    ///
    /// # Errors
    /// When rendering fails.
    pub fn snippet(&self, name: &str, context: &Context) -> Result<String, RenderError> {
        render(&self.snippets, name, context, SNIPPET_CAPACITY)
    }

    /// Evaluates a condition snippet registered with [`condition_source`].
    ///
    /// # Errors
    /// When the expression fails to evaluate.
    pub fn condition(&self, name: &str, context: &Context) -> Result<bool, RenderError> {
        Ok(self.snippet(name, context)?.trim() == "true")
    }
}

/// Wraps a Tera expression (`conversation.visitor.email`) into a template that prints
/// `true` when it holds, for [`Renderer::condition`].
pub fn condition_source(expression: &str) -> String {
    format!("{{% if {expression} %}}true{{% endif %}}")
}

/// Builds the context of a condition that only looks at the conversation (instance
/// `when` filters run at ingest, before any delivery exists).
///
/// # Errors
/// When the conversation cannot be converted (it always can; kept fallible for Tera's sake).
pub fn conversation_context(
    conversation: &Conversation,
    raw: &serde_json::Value,
) -> Result<Context, RenderError> {
    let mut context = Context::new();
    context.insert("conversation", conversation);
    context.insert("raw", raw);
    Ok(context)
}

/// The templates to parse: the user's own files (`own`), the partials, the built-ins `used`
/// names (every one when `None`), and what any of those includes, imports or extends.
fn to_parse<'f>(
    files: &'f BTreeMap<String, String>,
    own: &BTreeSet<String>,
    used: Option<&BTreeSet<&str>>,
) -> BTreeSet<&'f str> {
    let Some(used) = used else {
        return files.keys().map(String::as_str).collect();
    };
    let mut wanted: Vec<&str> = files
        .keys()
        .map(String::as_str)
        .filter(|name| own.contains(*name) || name.starts_with("_partials/") || used.contains(name))
        .collect();
    let mut parsed = BTreeSet::new();
    while let Some(name) = wanted.pop() {
        let Some((name, source)) = files.get_key_value(name) else {
            continue; // a missing template is reported where it is named
        };
        if parsed.insert(name.as_str()) {
            wanted.extend(referenced(source));
        }
    }
    parsed
}

/// The names `source` includes, imports or extends (`{% include "name" %}`); a mention in a
/// comment counts too, which only parses one template more.
fn referenced(source: &str) -> Vec<&str> {
    let mut names = Vec::new();
    for tag in ["include", "import", "extends"] {
        for (at, _) in source.match_indices(tag) {
            let rest = source[at + tag.len()..].trim_start();
            let Some(quote) = rest.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
                continue;
            };
            if let Some(end) = rest[1..].find(quote) {
                names.push(&rest[1..=end]);
            }
        }
    }
    names
}

fn new_tera<const N: usize>(
    escape: tera::EscapeFn,
    suffixes: [&'static str; N],
    zone: &jiff::tz::TimeZone,
) -> Tera {
    let mut tera = Tera::default();
    tera.set_escape_fn(escape);
    tera.autoescape_on(suffixes);
    tera.register_filter("json", json_filter);
    tera.register_filter("urlencode", urlencode_filter);
    let zone = zone.clone();
    tera.register_filter(
        "datetime",
        move |value: Value, kwargs: Kwargs, _: &State| datetime(value, kwargs, &zone),
    );
    tera.register_filter("first_name", first_name_filter);
    tera.register_filter("last_name", last_name_filter);
    tera.register_filter("marker", marker_filter);
    tera.register_filter("mrkdwn", mrkdwn_filter);
    tera.register_filter("quoted", |text: &str, _: Kwargs, _: &State| quoted(text));
    tera.register_filter("display_name", |text: &str, _: Kwargs, _: &State| {
        display_name(text)
    });
    tera.register_filter("newlines_to_br", |text: &str, _: Kwargs, _: &State| {
        html_lines_text(text)
    });
    tera
}

/// Output buffer for bodies and documents: room for a chat of a dozen messages. Grown by
/// doubling from the template's length instead, it was copied five or six times for every
/// body.
const DOCUMENT_CAPACITY: usize = 4096;

/// Output buffer for snippets: a URL or a header value.
const SNIPPET_CAPACITY: usize = 256;

fn render(
    tera: &Tera,
    name: &str,
    context: &Context,
    capacity: usize,
) -> Result<String, RenderError> {
    if !tera.contains_template(name) {
        return Err(RenderError::Missing(name.to_owned()));
    }
    let failed = |e: tera::Error| RenderError::Render {
        template: name.to_owned(),
        message: error_chain(&e),
    };
    let mut out = Vec::with_capacity(capacity);
    tera.render_to(name, context, &mut out).map_err(failed)?;
    String::from_utf8(out).map_err(|e| failed(tera::Error::message(e.to_string())))
}

fn syntax(e: tera::Error) -> RenderError {
    RenderError::Syntax(error_chain(&e))
}

/// An error and its sources, joined with `: `.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let said = s.to_string();
        // A cause that already ends with what its source says (a store error keeping the
        // driver's error) would otherwise say it twice.
        if !message.ends_with(&said) {
            message.push_str(": ");
            message.push_str(&said);
        }
        source = s.source();
    }
    message
}

fn collect_builtin(dir: &Dir<'static>, out: &mut BTreeMap<String, String>) {
    for file in dir.files() {
        if let (Some(text), Some(name)) = (file.contents_utf8(), file.path().to_str()) {
            out.insert(name.replace('\\', "/"), text.to_owned());
        }
    }
    for sub in dir.dirs() {
        collect_builtin(sub, out);
    }
}

fn collect_dir(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
) -> Result<(), RenderError> {
    let read_err = |source| RenderError::Read {
        path: dir.display().to_string(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.is_dir() {
            collect_dir(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "tera") {
            let text = std::fs::read_to_string(&path).map_err(|source| RenderError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            out.insert(name, text);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    fn renderer_with(name: &str, source: &str) -> Renderer {
        let mut r = Renderer::build(None, &[], &TranscriptConfig::default()).unwrap();
        r.bodies.add_raw_template(name, source).unwrap();
        r
    }

    #[test]
    fn only_the_templates_in_use_and_what_they_include_are_parsed() {
        let overrides = BTreeMap::from([(
            "mine/ticket.json.tera".to_owned(),
            r#"{% include "zendesk/comment.json.tera" %}"#.to_owned(),
        )]);
        let used = BTreeSet::from(["webhook/conversation.json.tera"]);
        let r = Renderer::build_with(
            None,
            &overrides,
            &[],
            &TranscriptConfig::default(),
            Some(&used),
        )
        .unwrap();
        let parsed = |name| r.bodies.contains_template(name) && r.documents.contains_template(name);
        assert!(parsed("webhook/conversation.json.tera"));
        assert!(parsed("_partials/transcript.txt.tera"));
        assert!(
            parsed("mine/ticket.json.tera"),
            "the user's own files are parsed"
        );
        assert!(
            parsed("zendesk/comment.json.tera"),
            "what a parsed template includes is"
        );
        assert!(!parsed("zendesk/ticket.json.tera"));
        assert!(
            r.has_template("zendesk/ticket.json.tera"),
            "known, though not parsed"
        );
        assert_eq!(
            referenced(r#"{% import 'm.tera' as m %}{%- extends "base" -%} includes"#),
            ["m.tera", "base"]
        );
    }

    #[test]
    fn json_bodies_escape_values_inside_strings() {
        let r = renderer_with("t.json.tera", r#"{"text": "{{ text }}", "n": {{ n }}}"#);
        let mut cx = Context::new();
        cx.insert("text", "ok\"}, \"admin\": true {{ 7*7 }}\n\\");
        cx.insert("n", &3);
        let out = r.body("t.json.tera", &cx).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["text"], "ok\"}, \"admin\": true {{ 7*7 }}\n\\");
        assert_eq!(doc.as_object().unwrap().len(), 2);
    }

    #[test]
    fn a_body_that_is_not_json_is_an_error_naming_the_template() {
        let r = renderer_with("bad.json.tera", r#"{"text": {{ text }}}"#);
        let mut cx = Context::new();
        cx.insert("text", "plain words");
        let err = r.body("bad.json.tera", &cx).unwrap_err();
        assert!(
            matches!(err, RenderError::InvalidJson { ref template, .. } if template == "bad.json.tera")
        );
    }

    #[test]
    fn url_snippets_percent_encode_values() {
        let r = Renderer::build(
            None,
            &[("u.url".into(), "/x?id={{ v }}".into())],
            &TranscriptConfig::default(),
        )
        .unwrap();
        let mut cx = Context::new();
        cx.insert("v", "a b&c=d/e#f");
        assert_eq!(
            r.snippet("u.url", &cx).unwrap(),
            "/x?id=a%20b%26c%3Dd%2Fe%23f"
        );
    }

    #[test]
    fn a_value_of_dots_cannot_move_a_url_along_its_path() {
        let r = Renderer::build(
            None,
            &[("u.url".into(), "/api/tickets/{{ v }}".into())],
            &TranscriptConfig::default(),
        )
        .unwrap();
        for dots in [".", "..", "%2e%2E"] {
            let mut cx = Context::new();
            cx.insert("v", dots);
            let rendered = r.snippet("u.url", &cx);
            if dots.starts_with('%') {
                // Encoded again (`%252e`), it is a name, not `..`.
                assert_eq!(rendered.unwrap(), "/api/tickets/%252e%252E");
            } else {
                assert!(rendered.is_err(), "{dots}: {rendered:?}");
            }
        }
        let mut cx = Context::new();
        cx.insert("v", "...");
        assert_eq!(r.snippet("u.url", &cx).unwrap(), "/api/tickets/...");
    }

    #[test]
    fn names_split_into_first_word_and_the_rest() {
        let r = Renderer::build(
            None,
            &[(
                "n".into(),
                "{{ v | first_name }}|{{ v | last_name }}".into(),
            )],
            &TranscriptConfig::default(),
        )
        .unwrap();
        let mut cx = Context::new();
        for (name, expected) in [
            ("Jane van Doe", "Jane|van Doe"),
            ("  Cher ", "Cher|"),
            ("", "|"),
        ] {
            cx.insert("v", name);
            assert_eq!(r.snippet("n", &cx).unwrap(), expected, "{name:?}");
        }
    }

    #[test]
    fn conditions_treat_null_as_false() {
        let r = Renderer::build(
            None,
            &[(
                "c".into(),
                condition_source("v.email or v.status != 'completed'"),
            )],
            &TranscriptConfig::default(),
        )
        .unwrap();
        let mut cx = Context::new();
        cx.insert(
            "v",
            &serde_json::json!({"email": null, "status": "completed"}),
        );
        assert!(!r.condition("c", &cx).unwrap());
        cx.insert(
            "v",
            &serde_json::json!({"email": "a@b.c", "status": "completed"}),
        );
        assert!(r.condition("c", &cx).unwrap());
    }

    #[test]
    fn tera_expressions_templates_rely_on() {
        let r = renderer_with(
            "e.txt.tera",
            "{% set who = a or b or 'x' %}{{ who }}|{{ (k ~ ':v' ~ n) | marker }}|{{ k | marker }}",
        );
        let mut cx = Context::new();
        cx.insert("a", &serde_json::Value::Null);
        cx.insert("b", "bee");
        cx.insert("k", "key");
        cx.insert("n", &2);
        let out = r.bodies.render("e.txt.tera", &cx).unwrap();
        assert_eq!(out, format!("bee|{}|{}", marker("key:v2"), marker("key")));
    }

    #[test]
    fn transcripts_follow_the_configured_time_zone_and_system_event_setting() {
        let parsed = crate::sources::Source::Smartsupp
            .parse(crate::samples::DOCUMENTED.body.as_bytes())
            .unwrap();
        let settings = TranscriptConfig {
            time_zone: "Europe/Prague".into(),
            system_events: false,
        };
        let mut r = Renderer::build(None, &[], &settings).unwrap();
        for part in ["text", "html", "markdown"] {
            let source = format!("{{{{ transcript.{part} | safe }}}}");
            r.documents.add_raw_template(part, &source).unwrap();
        }
        let delivery = DeliveryInfo {
            id: 0,
            key: "k".into(),
            version: 1,
            attempt: 1,
        };
        let context = r
            .context(
                &RenderContext {
                    conversation: &parsed.conversation,
                    raw: &parsed.raw,
                    delivery: &delivery,
                    connector: ConnectorInfo {
                        name: "n",
                        kind: "t",
                    },
                    settings: &BTreeMap::new(),
                    base_url: "",
                },
                Reads::ALL,
            )
            .unwrap();
        let [text, html, markdown] =
            ["text", "html", "markdown"].map(|part| r.document(part, &context).unwrap());
        // 15:33:59 UTC on 2015-03-27 is 16:33:59 in Prague (CET, before summer time).
        assert!(text.starts_with("[16:33:59] Dusan Kmet: Hello\n"), "{text}");
        assert!(
            markdown.starts_with("**Dusan Kmet** · 16:33\n> Hello\n"),
            "{markdown}"
        );
        for text in [&text, &html, &markdown] {
            assert!(!text.contains("joined the chat"), "{text}");
            assert!(text.contains("tanks."), "{text}");
        }
    }

    #[test]
    fn reads_are_told_from_the_source_erring_towards_all() {
        let only = |text, html, markdown, summary| Reads {
            text,
            html,
            markdown,
            summary,
            raw: false,
        };
        let read = Reads::read_by;
        assert_eq!(
            read(r#"{"t": "{{ transcript.html }}"}"#),
            only(false, true, false, false)
        );
        assert_eq!(
            read("{{ transcript.text }} {{ visitor_summary }} {{ transcript.markdown | mrkdwn }}"),
            only(true, false, true, true)
        );
        assert_eq!(
            read("{{ transcript_settings.time_zone }} {{ conversation | json }}"),
            only(false, false, false, false)
        );
        assert!(read("{{ raw.visitor.variables.plan }}").raw);
        assert!(!read("{{ conversation.raw_count }} {{ draw }}").raw);
        for whole in [
            "{{ transcript | json }}",
            "{% set t = transcript %}{{ t.text }}",
            r#"{{ transcript["html"] }}"#,
            r#"{% include "mine.txt.tera" %}"#,
            "{{ __tera_context }}",
        ] {
            assert_eq!(read(whole), Reads::ALL, "{whole}");
        }
    }

    #[test]
    fn a_time_with_no_local_time_in_the_zone_is_an_error_not_a_panic() {
        let mut r = Renderer::build(
            None,
            &[],
            &TranscriptConfig {
                time_zone: "Asia/Tokyo".into(),
                ..TranscriptConfig::default()
            },
        )
        .unwrap();
        r.bodies
            .add_raw_template("d.txt.tera", "{{ t | datetime }}")
            .unwrap();
        let mut cx = Context::new();
        cx.insert("t", "9999-12-31T23:30:00Z");
        let error = r.bodies.render("d.txt.tera", &cx).unwrap_err();
        assert!(error_chain(&error).contains("range"), "{error:?}");
        assert!(Timestamp::parse("9999-12-31T23:30:00-01:00").is_err());
    }

    #[test]
    fn one_line_leaves_no_control_characters() {
        assert_eq!(
            one_line(" Eve\r\nBcc: x@y\u{1b}[0m\t end "),
            "Eve Bcc: x@y [0m end"
        );
        assert_eq!(one_line("\n\r"), "");
    }

    #[test]
    fn quoted_keeps_quotes_and_backslashes_inside_the_literal() {
        assert_eq!(quoted("cb:x"), "'cb:x'");
        assert_eq!(quoted(r"x' OR id > '0 \"), r"'x\' OR id > \'0 \\'");
    }

    #[test]
    fn display_names_cannot_add_or_quote_an_address() {
        assert_eq!(
            display_name("attacker@evil.example, Bob"),
            "attackerevil.example Bob"
        );
        assert_eq!(
            display_name("\"Eve\" <e@x>;\r\n(c) [d]: O'Hara"),
            "Eve ex c d O'Hara"
        );
    }

    #[test]
    fn newlines_to_br_escapes_the_text_once_and_breaks_every_kind_of_line() {
        let mut r = renderer_with("t.json.tera", "\"{{ text | newlines_to_br }}\"");
        r.documents
            .add_raw_template("t.html.tera", "{{ text | newlines_to_br }}")
            .unwrap();
        let mut cx = Context::new();
        cx.insert("text", "<b>a</b> & \"b\"\r\nc\nd\re");
        let expected = "&lt;b&gt;a&lt;/b&gt; &amp; &quot;b&quot;<br>c<br>d<br>e";
        assert_eq!(r.document("t.html.tera", &cx).unwrap(), expected);
        // In a JSON body the HTML is a string value: JSON escaping applies on top.
        assert_eq!(
            r.bodies.render("t.json.tera", &cx).unwrap(),
            format!("\"{expected}\"")
        );
    }

    #[test]
    fn datetime_formats_rfc3339_instants() {
        let r = renderer_with(
            "d.txt.tera",
            r#"{{ t | datetime(format="[hour]:[minute]") }}"#,
        );
        let mut cx = Context::new();
        cx.insert("t", "2024-06-13T09:30:00.000Z");
        assert_eq!(r.bodies.render("d.txt.tera", &cx).unwrap(), "09:30");
    }
}

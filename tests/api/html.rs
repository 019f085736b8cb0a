//! Reading HTML the way a browser or a help desk does, with html5ever (through `scraper`):
//! which elements and attributes a document holds, and the text a reader sees.

use scraper::{ElementRef, Html, Node};

/// The elements and attributes in `root` and below that are not in the allowed lists, as
/// `element` or `element@attribute`.
pub fn foreign(root: ElementRef<'_>, elements: &[&str], attributes: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for node in root.descendants() {
        let Node::Element(element) = node.value() else {
            continue;
        };
        let name = element.name();
        if !elements.contains(&name) {
            found.push(name.to_owned());
        }
        for (attribute, _) in element.attrs() {
            if !attributes.contains(&attribute) {
                found.push(format!("{name}@{attribute}"));
            }
        }
    }
    found
}

/// The text of `root` as a reader sees it: text nodes as they are, `<br>` as a line break.
pub fn readable(root: ElementRef<'_>) -> String {
    let mut text = String::new();
    for node in root.descendants() {
        match node.value() {
            Node::Text(t) => text.push_str(t),
            Node::Element(e) if e.name() == "br" => text.push('\n'),
            _ => {}
        }
    }
    text
}

/// Parses a fragment (an HTML field of a JSON body) or, when it starts with a doctype, a
/// whole document.
pub fn parse(html: &str) -> Html {
    if html.trim_start().starts_with("<!DOCTYPE") {
        Html::parse_document(html)
    } else {
        Html::parse_fragment(html)
    }
}

/// Line breaks as one `\n`, whichever the chat product sent.
pub fn lines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

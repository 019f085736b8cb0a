//! Chats the product shows before any real one arrives: the template playground offers them,
//! and `chatbridge check` renders every connector against the first. They ship with the
//! binary and belong to it; the tests read them too, as they are.

/// A sample chat: its name and the body Smartsupp would post.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// What the playground lists it as.
    pub name: &'static str,
    /// The JSON body.
    pub body: &'static str,
}

macro_rules! samples {
    ($($name:literal),* $(,)?) => {
        &[$(Sample {
            name: $name,
            body: include_str!(concat!("samples/smartsupp/", $name, ".json")),
        }),*]
    };
}

/// Every sample, the most telling first: Smartsupp's documented example, then chats that end
/// in each way, and hostile ones (markup and template syntax typed by a visitor).
pub const SMARTSUPP: &[Sample] = samples![
    "seed-example",
    "completed-rated-with-comment",
    "missed-chat",
    "offline-message",
    "visitor-without-email",
    "two-agents-transfer",
    "unicode-emoji-rtl",
    "injection-attempts",
];

/// Smartsupp's documented example, what `check` renders every connector against.
pub const DOCUMENTED: Sample = SMARTSUPP[0];

/// A sample by name.
pub fn find(name: &str) -> Option<Sample> {
    SMARTSUPP.iter().copied().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_is_a_chat_smartsupp_could_send() {
        for sample in SMARTSUPP {
            crate::sources::Source::Smartsupp
                .parse(sample.body.as_bytes())
                .unwrap_or_else(|e| panic!("{}: {e}", sample.name));
        }
        assert_eq!(DOCUMENTED.name, "seed-example");
        assert!(find("missed-chat").is_some() && find("nope").is_none());
    }
}

//! A connector instance's settings as its templates see them, secrets kept apart so they
//! are never logged.

use std::collections::BTreeMap;

/// A connector's resolved settings. Knows which are secret, so it can mask them anywhere
/// they might be printed; `Debug` shows only the keys.
#[derive(Clone, Default)]
pub struct Settings {
    values: BTreeMap<String, String>,
    secrets: Vec<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Settings {
    /// Adds a value. A secret is masked as written and in the forms a URL built from it
    /// takes when printed (normalized, without its trailing `/`: a Slack webhook URL ending in
    /// `/` is printed without it). A password written into any URL (`https://u:pw@host`) is
    /// masked too, the setting being secret or not.
    pub fn insert(&mut self, key: &str, value: String, secret: bool) {
        let url = reqwest::Url::parse(&value).ok().filter(|u| u.has_host());
        if secret && !value.is_empty() {
            let mut forms = vec![value.clone()];
            if let Some(url) = &url {
                forms.push(url.as_str().to_owned());
            }
            let trimmed: Vec<String> = forms
                .iter()
                .map(|f| f.trim_end_matches('/').to_owned())
                .collect();
            forms.extend(trimmed);
            self.add_secrets(forms);
        }
        if let Some(password) = url.as_ref().and_then(reqwest::Url::password) {
            let decoded = percent_encoding::percent_decode_str(password)
                .decode_utf8_lossy()
                .into_owned();
            self.add_secrets([password.to_owned(), decoded]);
        }
        self.values.insert(key.to_owned(), value);
    }

    /// Adds texts to mask, longest first, so that a longer form is masked whole before a
    /// shorter one inside it could leave its tail readable.
    fn add_secrets(&mut self, texts: impl IntoIterator<Item = String>) {
        for text in texts {
            if !text.is_empty() && !self.secrets.contains(&text) {
                self.secrets.push(text);
            }
        }
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// A value by key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// All values, secrets included, for template contexts.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// `text` with every secret value replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |acc, secret| {
            acc.replace(secret.as_str(), "***")
        })
    }
}

//! How config values are read: durations in friendly form, connector settings that may be
//! secret, account lists.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A connector setting's value. Numbers and booleans (as environment variables produce)
/// are taken as their text. `Debug` never shows the value, since any setting may be a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SettingValue(String);

impl SettingValue {
    /// The value; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SettingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl<'de> Deserialize<'de> for SettingValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            Text(String),
            Integer(i64),
            Float(f64),
            Flag(bool),
        }
        Ok(Self(match Scalar::deserialize(deserializer)? {
            Scalar::Text(s) => s,
            Scalar::Integer(n) => n.to_string(),
            Scalar::Float(n) => n.to_string(),
            Scalar::Flag(b) => b.to_string(),
        }))
    }
}

/// An optional duration like `"5m"`.
pub(crate) fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// Account ids as strings, written either way (`[208, "184203"]`): Smartsupp sends numbers,
/// the normalized conversation keeps text.
pub(super) fn accounts<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Account {
        Number(u64),
        Text(String),
    }
    Ok(Vec::<Account>::deserialize(deserializer)?
        .into_iter()
        .map(|a| match a {
            Account::Number(n) => n.to_string(),
            Account::Text(t) => t.trim().to_owned(),
        })
        .collect())
}

pub(super) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    // Days count as 24 hours (and weeks as 7 days): a retention of "30d" is 720 hours,
    // whatever daylight saving does meanwhile.
    text.parse::<jiff::Span>()
        .and_then(|span| span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()))
        .map_err(|e| e.to_string())
        .and_then(|d| Duration::try_from(d).map_err(|_| "it is negative".to_owned()))
        .map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration like \"2s\" or \"15m\": {e}"
            ))
        })
}

//! Who may post to a source that is given a URL: each accepted token, kept as a digest,
//! with the accounts it may post chats of.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// What a token may post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenScope {
    /// Chats of any account.
    AnyAccount,
    /// Only chats of these accounts: one customer's token in a shared deployment.
    Tenant {
        /// The customer.
        name: String,
        /// Its accounts at the product (Smartsupp `accountId`s).
        accounts: Vec<String>,
    },
}

impl TokenScope {
    /// Whether a chat of `account` may come with this token.
    pub fn admits(&self, account: &str) -> bool {
        match self {
            Self::AnyAccount => true,
            Self::Tenant { accounts, .. } => accounts.iter().any(|a| a == account),
        }
    }
}

/// The accepted tokens of a source, kept as digests, each with what it may post.
#[derive(Clone)]
pub struct SourceTokens {
    tokens: Arc<Vec<([u8; 32], TokenScope)>>,
}

impl std::fmt::Debug for SourceTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceTokens({} accepted)", self.tokens.len())
    }
}

impl SourceTokens {
    /// Accepts any of `tokens` (the current one and, during a rotation, the previous) for
    /// chats of any account.
    pub fn new<'a>(tokens: impl IntoIterator<Item = &'a SecretString>) -> Self {
        Self::scoped(tokens.into_iter().map(|t| (t, TokenScope::AnyAccount)))
    }

    /// Accepts each token for what its scope admits.
    pub fn scoped<'a>(tokens: impl IntoIterator<Item = (&'a SecretString, TokenScope)>) -> Self {
        let tokens = tokens
            .into_iter()
            .map(|(t, scope)| (digest(t.expose_secret().as_bytes()), scope))
            .collect();
        Self {
            tokens: Arc::new(tokens),
        }
    }

    /// The scope of `candidate` if it is an accepted token. Every token is compared, in
    /// time independent of where they differ.
    pub fn scope(&self, candidate: &str) -> Option<&TokenScope> {
        let candidate = digest(candidate.as_bytes());
        // 1 + the index of the matching token, chosen without branching on secret data.
        let mut found = 0u32;
        for (index, (d, _)) in self.tokens.iter().enumerate() {
            let position = u32::try_from(index + 1).unwrap_or(u32::MAX);
            found.conditional_assign(&position, d.ct_eq(&candidate));
        }
        let index = usize::try_from(found).ok()?.checked_sub(1)?;
        self.tokens.get(index).map(|(_, scope)| scope)
    }

    /// Whether some token may post chats of `account`: what a body brought back from
    /// quarantine is held to, whichever URL it first came to.
    pub fn any_admits(&self, account: &str) -> bool {
        self.tokens.iter().any(|(_, scope)| scope.admits(account))
    }

    /// Whether `candidate` is an accepted token.
    pub fn accepts(&self, candidate: &str) -> bool {
        self.scope(candidate).is_some()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly_and_rotation_keeps_the_previous_one() {
        let current = SecretString::from("new-token");
        let previous = SecretString::from("old-token");
        let tokens = SourceTokens::new([&current, &previous]);
        assert!(tokens.accepts("new-token"));
        assert!(tokens.accepts("old-token"));
        assert!(!tokens.accepts("new-toke"));
        assert!(!tokens.accepts(""));
        assert!(!format!("{tokens:?}").contains("token\""));
    }
}

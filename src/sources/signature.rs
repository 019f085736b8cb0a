//! Proving that a webhook came from the product: each product's signature scheme, checked
//! over the raw request bytes, in constant time, before anything is parsed or stored.
//!
//! The schemes (reference: `smartsupp-post-hook.md` §9–10, and each vendor's documentation):
//!
//! | product | header | MAC over | digest |
//! |---|---|---|---|
//! | Smartsupp REST v2 | `X-Smartsupp-Hmac` | the body | hex HMAC-SHA256 |
//! | tawk.to | `X-Tawk-Signature` | the body | hex HMAC-SHA1 |
//! | Crisp (plugin hooks) | `X-Crisp-Signature`, `X-Crisp-Request-Timestamp` (ms) | `[` timestamp `;` body `]` | hex HMAC-SHA256 |
//! | Tidio | `X-Tidio-Signature: t=UNIX,s=HEX[,s=HEX...]` | body `_` t | hex HMAC-SHA256, one `s` per active secret |
//!
//! LiveChat sends its secret inside the body (`secret_key`), and Olark signs nothing: neither
//! is a signature over bytes, so neither is here.
//!
//! Hex is compared as the bytes it spells, so upper-case hex of the right MAC passes: the
//! case is the encoding's, not the MAC's, and the bytes are what the products compute. A
//! secret being rotated out (`previous_secret`) is tried after the current one; removing it
//! from the config is what makes it stop working. Where a product signs a timestamp, a
//! request more than [`WINDOW`] away from this machine's clock is refused, so a captured
//! request cannot be replayed later (de-duplication covers replays within the window).
//!
//! Crisp's documentation has Node users sign `JSON.stringify` of the parsed body, which is the
//! raw body when Crisp sends compact JSON (as it does). Only the raw bytes are checked here: a
//! re-serialisation would have to keep Crisp's key order, which the parsed value does not.

use std::time::Duration;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};

use crate::model::Timestamp;

/// How far a signed timestamp may be from this machine's clock, either way: five minutes,
/// the tolerance webhook senders commonly document, wide enough for a retry in flight and a
/// clock a little off.
pub const WINDOW: Duration = Duration::from_secs(300);

/// A product's signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Smartsupp REST v2: `X-Smartsupp-Hmac`, hex HMAC-SHA256 of the body. No timestamp is
    /// signed.
    SmartsuppV2,
    /// tawk.to: `X-Tawk-Signature`, hex HMAC-SHA1 of the body. No timestamp is signed.
    Tawk,
    /// Crisp plugin hooks: `X-Crisp-Signature`, hex HMAC-SHA256 of `[timestamp;body]`, the
    /// timestamp (milliseconds) in `X-Crisp-Request-Timestamp`.
    Crisp,
    /// Tidio: `X-Tidio-Signature: t=…,s=…[,s=…]`, each `s` hex HMAC-SHA256 of `body_t`.
    Tidio,
}

/// The secrets a source accepts: the current one, and during a rotation the previous one.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// `secret`.
    pub current: SecretString,
    /// `previous_secret`, while senders may still use it.
    pub previous: Option<SecretString>,
}

impl Secrets {
    /// Each accepted secret's bytes, the current one first.
    pub(crate) fn each(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|s| s.expose_secret().as_bytes())
    }
}

/// Why a request's signature was refused. The sender is told `401` and nothing is stored;
/// the text is for the log, and never contains a secret or a MAC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A header the scheme needs is absent (or not text).
    #[error("the request has no `{0}` header")]
    Missing(&'static str),
    /// A body field the product puts its secret in is absent (or the body is not JSON).
    #[error("the body has no `{0}` field")]
    MissingField(&'static str),
    /// A header is there but not in the scheme's form.
    #[error("the `{header}` header is not {expected}")]
    Malformed {
        /// The header.
        header: &'static str,
        /// What it should look like.
        expected: &'static str,
    },
    /// The signed timestamp is too far from this machine's clock.
    #[error("the signed timestamp is {seconds} s away from this machine's clock (at most {} s allowed)", WINDOW.as_secs())]
    Stale {
        /// How far, in whole seconds.
        seconds: u64,
    },
    /// No secret signs these bytes to this signature (or, for a secret sent in the body, it
    /// is not the configured one).
    #[error("the signature does not match the body under the configured secret")]
    Mismatch,
}

impl Scheme {
    /// Checks that `body`, sent with `headers`, was signed with one of `secrets`; `now` is
    /// the clock timestamped schemes are judged by.
    ///
    /// # Errors
    /// See [`Refused`].
    pub fn verify(
        self,
        secrets: &Secrets,
        headers: &HeaderMap,
        body: &[u8],
        now: Timestamp,
    ) -> Result<(), Refused> {
        match self {
            Self::SmartsuppV2 => {
                let given = hex_header(headers, "x-smartsupp-hmac", "X-Smartsupp-Hmac")?;
                any_signs::<Hmac<sha2::Sha256>>(secrets, &[body], &[given])
            }
            Self::Tawk => {
                let given = hex_header(headers, "x-tawk-signature", "X-Tawk-Signature")?;
                any_signs::<Hmac<sha1::Sha1>>(secrets, &[body], &[given])
            }
            Self::Crisp => {
                const STAMP: &str = "X-Crisp-Request-Timestamp";
                let stamp = text_header(headers, "x-crisp-request-timestamp", STAMP)?;
                let millis: i64 = stamp.trim().parse().map_err(|_| Refused::Malformed {
                    header: STAMP,
                    expected: "a time in milliseconds since 1970",
                })?;
                fresh(Timestamp::from_unix_millis(millis), now, STAMP)?;
                let given = hex_header(headers, "x-crisp-signature", "X-Crisp-Signature")?;
                let parts: [&[u8]; 5] = [b"[", stamp.as_bytes(), b";", body, b"]"];
                any_signs::<Hmac<sha2::Sha256>>(secrets, &parts, &[given])
            }
            Self::Tidio => {
                const HEADER: &str = "X-Tidio-Signature";
                let malformed = Refused::Malformed {
                    header: HEADER,
                    expected: "`t=<unix seconds>,s=<hex>[,s=<hex>...]`",
                };
                let value = text_header(headers, "x-tidio-signature", HEADER)?;
                let mut stamp = None;
                let mut given = Vec::new();
                for part in value.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", t)) if stamp.is_none() => stamp = Some(t),
                        Some(("s", s)) => {
                            given.push(hex::decode(s).map_err(|_| malformed.clone())?)
                        }
                        _ => return Err(malformed),
                    }
                }
                let stamp = stamp.ok_or_else(|| malformed.clone())?;
                let seconds: i64 = stamp.parse().map_err(|_| malformed.clone())?;
                if given.is_empty() {
                    return Err(malformed);
                }
                fresh(
                    seconds
                        .checked_mul(1000)
                        .and_then(Timestamp::from_unix_millis),
                    now,
                    HEADER,
                )?;
                let parts: [&[u8]; 3] = [body, b"_", stamp.as_bytes()];
                any_signs::<Hmac<sha2::Sha256>>(secrets, &parts, &given)
            }
        }
    }
}

fn text_header<'h>(
    headers: &'h HeaderMap,
    name: &str,
    shown: &'static str,
) -> Result<&'h str, Refused> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or(Refused::Missing(shown))
}

fn hex_header(headers: &HeaderMap, name: &str, shown: &'static str) -> Result<Vec<u8>, Refused> {
    hex::decode(text_header(headers, name, shown)?.trim()).map_err(|_| Refused::Malformed {
        header: shown,
        expected: "a hex digest",
    })
}

/// Refuses a signed time that is missing or further than [`WINDOW`] from `now`.
fn fresh(signed: Option<Timestamp>, now: Timestamp, header: &'static str) -> Result<(), Refused> {
    let signed = signed.ok_or(Refused::Malformed {
        header,
        expected: "a time this side of the year 10000",
    })?;
    let apart = signed.unix_millis().abs_diff(now.unix_millis()) / 1000;
    if apart > WINDOW.as_secs() {
        return Err(Refused::Stale { seconds: apart });
    }
    Ok(())
}

/// Whether any of `secrets` MACs the concatenated `parts` to any of `given`, each compared
/// in constant time (`Mac::verify_slice`).
fn any_signs<M: Mac + KeyInit + Clone>(
    secrets: &Secrets,
    parts: &[&[u8]],
    given: &[Vec<u8>],
) -> Result<(), Refused> {
    for key in secrets.each() {
        let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
            continue;
        };
        for part in parts {
            mac.update(part);
        }
        if given.iter().any(|g| mac.clone().verify_slice(g).is_ok()) {
            return Ok(());
        }
    }
    Err(Refused::Mismatch)
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderName, HeaderValue};

    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    fn secrets(current: &str, previous: Option<&str>) -> Secrets {
        Secrets {
            current: current.into(),
            previous: previous.map(Into::into),
        }
    }

    fn at_millis(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(ms).unwrap()
    }

    /// A published vector: the scheme, the fixture, the headers sent, the secret, and the
    /// clock to judge by.
    type Vector = (
        Scheme,
        &'static str,
        Vec<(&'static str, &'static str)>,
        &'static str,
        Timestamp,
    );

    /// The vectors published with the fixtures, one per signed fixture.
    fn vectors() -> Vec<Vector> {
        let any_time = at_millis(1_718_272_100_000);
        vec![
            (
                Scheme::Tawk,
                "tawk/chat-transcript-created.json",
                vec![(
                    "x-tawk-signature",
                    "82e3c692f735c8eb48ca6836ae573e9e86e48054",
                )],
                "tawk-test-secret",
                any_time,
            ),
            (
                Scheme::Tawk,
                "tawk/chat-end.json",
                vec![(
                    "x-tawk-signature",
                    "bf9476a601f4776d5f9193b985e42a0c4dca8aef",
                )],
                "tawk-test-secret",
                any_time,
            ),
            (
                Scheme::Tawk,
                "tawk/ticket-create.json",
                vec![(
                    "x-tawk-signature",
                    "ab3b1fa4614f82679168331a8c7207a5508fa993",
                )],
                "tawk-test-secret",
                any_time,
            ),
            (
                Scheme::Crisp,
                "crisp/message-send.json",
                vec![
                    ("x-crisp-request-timestamp", "1718271431790"),
                    (
                        "x-crisp-signature",
                        "58d3e62b31c7b6ef627f26c2261de298bb76ab6268b04ae2b3e6a96f91c78f20",
                    ),
                ],
                "crisp-test-secret",
                at_millis(1_718_271_431_790 + 2_000),
            ),
            (
                Scheme::Crisp,
                "crisp/session-set-state-resolved.json",
                vec![
                    ("x-crisp-request-timestamp", "1718272012210"),
                    (
                        "x-crisp-signature",
                        "ac9132697b5de496af135a12d42e8cc9bbb64f2f51bdd10a555302d589cebcab",
                    ),
                ],
                "crisp-test-secret",
                at_millis(1_718_272_012_210 - 1_000),
            ),
            (
                Scheme::Tidio,
                "tidio/conversation-solved-by-operator.json",
                vec![(
                    "x-tidio-signature",
                    "t=1718272100,s=dc1305c943088c7e20ef6634eaba631da3a9517470545f233aed1ba4d66e9078,s=4480a6f2accf9416783fff4560aed6fbf521748f33edc3a5759286c0a1143a95",
                )],
                "tidio-test-secret",
                at_millis(1_718_272_100_000 + 60_000),
            ),
            (
                Scheme::SmartsuppV2,
                "smartsupp-v2/conversation-closed.json",
                vec![(
                    "x-smartsupp-hmac",
                    "fa82597bd2d3b7db9607f28d00cb24316d05939bfb15b836ed1453a6c820af16",
                )],
                "smartsupp-test-secret",
                any_time,
            ),
        ]
    }

    #[test]
    fn the_published_vectors_pass() {
        for (scheme, file, pairs, secret, now) in vectors() {
            let body = fixture(file);
            assert_eq!(
                scheme.verify(&secrets(secret, None), &headers(&pairs), &body, now),
                Ok(()),
                "{file}"
            );
        }
    }

    #[test]
    fn a_wrong_secret_a_changed_byte_or_a_missing_header_is_refused() {
        for (scheme, file, pairs, secret, now) in vectors() {
            let body = fixture(file);
            let headers = headers(&pairs);
            let wrong = scheme.verify(&secrets("not-the-secret", None), &headers, &body, now);
            assert_eq!(wrong, Err(Refused::Mismatch), "{file}");

            let mut changed = body.clone();
            changed[body.len() / 2] ^= 0x01;
            let tampered = scheme.verify(&secrets(secret, None), &headers, &changed, now);
            assert_eq!(tampered, Err(Refused::Mismatch), "{file}");

            for (name, _) in &pairs {
                let mut without = headers.clone();
                without.remove(*name);
                let missing = scheme.verify(&secrets(secret, None), &without, &body, now);
                assert!(
                    matches!(missing, Err(Refused::Missing(_))),
                    "{file} without {name}: {missing:?}"
                );
            }
        }
    }

    #[test]
    fn upper_case_hex_spells_the_same_mac() {
        for (scheme, file, pairs, secret, now) in vectors() {
            let upper: Vec<(&str, String)> = pairs
                .iter()
                .map(|(n, v)| {
                    let v = if n.ends_with("timestamp") {
                        (*v).to_owned()
                    } else {
                        v.to_uppercase().replace("T=", "t=").replace("S=", "s=")
                    };
                    (*n, v)
                })
                .collect();
            let upper: Vec<(&str, &str)> = upper.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let body = fixture(file);
            assert_eq!(
                scheme.verify(&secrets(secret, None), &headers(&upper), &body, now),
                Ok(()),
                "{file}"
            );
        }
    }

    #[test]
    fn tidio_accepts_a_match_on_the_second_signature_and_rotation_ends_with_the_old_secret() {
        let body = fixture("tidio/conversation-solved-by-operator.json");
        let (_, _, pairs, _, now) = vectors().remove(5);
        let headers = headers(&pairs);
        // The second `s=` is the old secret's: a source still holding only that one accepts.
        let old_only = secrets("tidio-old-secret", None);
        assert_eq!(
            Scheme::Tidio.verify(&old_only, &headers, &body, now),
            Ok(())
        );
        // A source whose current secret matches no `s=` accepts through its previous one,
        // until the previous one is removed from its config.
        let rotating = secrets("tidio-newest-secret", Some("tidio-test-secret"));
        assert_eq!(
            Scheme::Tidio.verify(&rotating, &headers, &body, now),
            Ok(())
        );
        let rotated = secrets("tidio-newest-secret", None);
        assert_eq!(
            Scheme::Tidio.verify(&rotated, &headers, &body, now),
            Err(Refused::Mismatch)
        );
    }

    #[test]
    fn a_previous_secret_works_until_it_is_removed() {
        let body = fixture("tawk/chat-end.json");
        let (_, _, pairs, _, now) = vectors().remove(1);
        let headers = headers(&pairs);
        let rotating = secrets("tawk-new-secret", Some("tawk-test-secret"));
        assert_eq!(Scheme::Tawk.verify(&rotating, &headers, &body, now), Ok(()));
        let rotated = secrets("tawk-new-secret", None);
        assert_eq!(
            Scheme::Tawk.verify(&rotated, &headers, &body, now),
            Err(Refused::Mismatch)
        );
    }

    #[test]
    fn a_signed_time_outside_the_window_is_refused_whatever_the_signature() {
        for index in [3, 5] {
            let (scheme, file, pairs, secret, now) = vectors().remove(index);
            let body = fixture(file);
            let headers = headers(&pairs);
            let late = now.plus(WINDOW + Duration::from_secs(60));
            assert!(
                matches!(
                    scheme.verify(&secrets(secret, None), &headers, &body, late),
                    Err(Refused::Stale { .. })
                ),
                "{file}"
            );
        }
    }

    #[test]
    fn a_malformed_header_is_named() {
        let body = fixture("tidio/conversation-solved-by-operator.json");
        let now = at_millis(1_718_272_100_000);
        for value in [
            "s=00",
            "t=1718272100",
            "t=1718272100,s=zz",
            "t=abc,s=00",
            "t=1718272100;s=00",
        ] {
            let refused = Scheme::Tidio.verify(
                &secrets("tidio-test-secret", None),
                &headers(&[("x-tidio-signature", value)]),
                &body,
                now,
            );
            assert!(
                matches!(refused, Err(Refused::Malformed { .. })),
                "{value}: {refused:?}"
            );
        }
    }
}

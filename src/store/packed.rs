//! How a stored version is kept: the raw body and its normalized form, compressed together.

use super::*;

/// A version's body and normalized form as `conversation_versions` keeps them, in `body`
/// and `normalized`, the kind told by `codec`:
///
/// - [`Packed::PLAIN`]: the body byte for byte, the normalized form as JSON text (versions
///   stored before compression, and a body zstd could not shrink);
/// - [`Packed::ZSTD_CHATS_1`]: one zstd frame, made with the dictionary `chats-1.dict`, of
///   the body's length (4 bytes, little-endian), the body and the normalized form, which is
///   left empty. The normalized form repeats most of the body's text; in one frame it is
///   kept once. A chat is small, so on its own it holds too little for the compressor to
///   learn from; the dictionary (two chats as Smartsupp sends them, with their normalized
///   forms) gives it the keys and the shape to start with. The 1.7 KB seed chat and its
///   2.0 KB normalized form pack into 0.9 KB so, 1.3 KB without the dictionary, 1.6 KB
///   compressed apart.
///
/// A row needs its codec's dictionary to open, so a dictionary is never edited: a better one
/// comes as a new codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub codec: i64,
    pub body: Vec<u8>,
    pub normalized: String,
}

/// The dictionary of [`Packed::ZSTD_CHATS_1`].
const CHATS_1: &[u8] = include_bytes!("chats-1.dict");

thread_local! {
    /// Each thread's compressor, with the dictionary loaded once.
    static PACKER: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static UNPACKER: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

impl Packed {
    pub const PLAIN: i64 = 0;
    pub const ZSTD_CHATS_1: i64 = 1;
    /// zstd's default: a 4 KB chat in some 20 µs, within a few percent of its best ratio.
    const LEVEL: i32 = 3;
    /// How large a frame may say it opens; a damaged one is not believed past this.
    const LARGEST: usize = 256 << 20;

    /// `raw` and `normalized`, compressed when that is smaller.
    pub fn new(raw: &[u8], normalized: &str) -> Self {
        let mut plain = Vec::with_capacity(4 + raw.len() + normalized.len());
        plain.extend_from_slice(&u32::try_from(raw.len()).unwrap_or(u32::MAX).to_le_bytes());
        plain.extend_from_slice(raw);
        plain.extend_from_slice(normalized.as_bytes());
        let packed = PACKER.with_borrow_mut(|packer| {
            if packer.is_none() {
                *packer = zstd::bulk::Compressor::with_dictionary(Self::LEVEL, CHATS_1).ok();
            }
            packer.as_mut()?.compress(&plain).ok()
        });
        match packed {
            Some(body) if body.len() < raw.len() + normalized.len() => Self {
                codec: Self::ZSTD_CHATS_1,
                body,
                normalized: String::new(),
            },
            _ => Self {
                codec: Self::PLAIN,
                body: raw.to_vec(),
                normalized: normalized.to_owned(),
            },
        }
    }

    /// The body and the normalized form of a stored row.
    ///
    /// # Errors
    /// When the row is not one [`Packed::new`] made.
    pub fn open(
        codec: i64,
        body: Vec<u8>,
        normalized: String,
    ) -> Result<(Vec<u8>, String), StoreError> {
        let bad = |why: &str| StoreError::Corrupt(format!("a stored version's body: {why}").into());
        match codec {
            Self::PLAIN => Ok((body, normalized)),
            Self::ZSTD_CHATS_1 => {
                let size = zstd::bulk::Decompressor::upper_bound(&body)
                    .filter(|size| *size <= Self::LARGEST)
                    .ok_or_else(|| bad("not a zstd frame of a size it could have"))?;
                let plain = UNPACKER.with_borrow_mut(|unpacker| {
                    if unpacker.is_none() {
                        *unpacker = Some(
                            zstd::bulk::Decompressor::with_dictionary(CHATS_1)
                                .map_err(|e| bad(&e.to_string()))?,
                        );
                    }
                    let unpacker = unpacker.as_mut().ok_or_else(|| bad("no decompressor"))?;
                    unpacker
                        .decompress(&body, size)
                        .map_err(|e| bad(&e.to_string()))
                })?;
                let (length, rest) = plain
                    .split_first_chunk::<4>()
                    .ok_or_else(|| bad("too short"))?;
                let length = u32::from_le_bytes(*length) as usize;
                if length > rest.len() {
                    return Err(bad("its length is past its end"));
                }
                let (raw, normalized) = rest.split_at(length);
                let normalized = String::from_utf8(normalized.to_vec())
                    .map_err(|_| bad("the normalized form is not UTF-8"))?;
                Ok((raw.to_vec(), normalized))
            }
            other => Err(bad(&format!("codec {other} is unknown"))),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_version_opens_to_the_body_and_normalized_form_it_was_made_of() {
        let raw = crate::samples::DOCUMENTED.body.as_bytes();
        let normalized = serde_json::to_string(
            &crate::sources::Source::Smartsupp
                .parse(raw)
                .expect("parses")
                .conversation,
        )
        .unwrap();
        let packed = Packed::new(raw, &normalized);
        assert_eq!(packed.codec, Packed::ZSTD_CHATS_1);
        assert!(
            packed.body.len() * 3 < raw.len() + normalized.len(),
            "{} bytes",
            packed.body.len()
        );
        let opened = Packed::open(packed.codec, packed.body, packed.normalized).unwrap();
        assert_eq!(opened, (raw.to_vec(), normalized));

        // What zstd cannot shrink is kept as it is.
        let noise: Vec<u8> = (0..64).map(|_| fastrand::u8(..)).collect();
        let packed = Packed::new(&noise, "");
        assert_eq!(packed.codec, Packed::PLAIN);
        assert_eq!(
            Packed::open(packed.codec, packed.body, packed.normalized).unwrap(),
            (noise, String::new())
        );
    }

    #[test]
    fn a_damaged_packed_version_is_an_error_not_a_panic() {
        let packed = Packed::new(
            b"{\"a\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
            "{\"a\": \"aaaa\"}",
        );
        assert_eq!(packed.codec, Packed::ZSTD_CHATS_1);
        for damaged in [
            Vec::new(),
            packed.body[..packed.body.len() / 2].to_vec(),
            b"not zstd at all".to_vec(),
            zstd::bulk::compress(&[9, 9], 3).unwrap(),
            zstd::bulk::compress(&[200, 0, 0, 0, b'x'], 3).unwrap(),
        ] {
            assert!(Packed::open(Packed::ZSTD_CHATS_1, damaged, String::new()).is_err());
        }
        assert!(Packed::open(7, Vec::new(), String::new()).is_err());
    }
}

//! The project key and the subkeys derived from it.

use std::fmt;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{b64, KeyFormatError};

type HmacSha256 = Hmac<Sha256>;

/// The project's 256-bit secret. It is generated on the owner's machine, copied into each
/// agent's key file, and never sent to the server.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct ProjectKey([u8; 32]);

impl ProjectKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Base64 text, for the key file.
    pub fn to_base64(&self) -> String {
        b64::encode(&self.0)
    }

    pub fn from_base64(text: &str) -> Result<Self, KeyFormatError> {
        b64::decode_array(text, "project key").map(Self)
    }

    /// Derives the content subkeys (HKDF-SHA256, one `info` label per purpose).
    pub fn content_keys(&self) -> ContentKeys {
        let hkdf = Hkdf::<Sha256>::new(Some(b"nexysync/v1"), &self.0);
        let mut keys = ContentKeys {
            encryption: [0; 32],
            commitment: [0; 32],
            blind_index: [0; 32],
        };
        // Expanding 32 bytes from HKDF-SHA256 cannot fail (the limit is 255 * 32 bytes).
        for (label, out) in [
            (&b"content-encryption"[..], &mut keys.encryption),
            (&b"key-commitment"[..], &mut keys.commitment),
            (&b"blind-index"[..], &mut keys.blind_index),
        ] {
            hkdf.expand(label, out)
                .expect("32 bytes is a valid HKDF-SHA256 output length");
        }
        keys
    }
}

impl fmt::Debug for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProjectKey(<hidden>)")
    }
}

/// The subkeys of a project key: what sealing, opening and blind indexing actually use.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ContentKeys {
    pub(crate) encryption: [u8; 32],
    pub(crate) commitment: [u8; 32],
    pub(crate) blind_index: [u8; 32],
}

impl fmt::Debug for ContentKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKeys(<hidden>)")
    }
}

impl ContentKeys {
    /// An equality token for `value` in `namespace` (e.g. "topic"): equal inputs give equal
    /// tokens, and without the project key nothing can be learned from one.
    pub fn blind_index(&self, namespace: &str, value: &str) -> BlindIndex {
        let mut mac = self.mac(&self.blind_index);
        mac.update(namespace.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let tag = mac.finalize().into_bytes();
        BlindIndex(hex::encode(&tag[..16]))
    }

    pub(crate) fn mac(&self, key: &[u8; 32]) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
    }
}

/// A blind index: 128 bits of HMAC, hex encoded.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlindIndex(String);

impl BlindIndex {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BlindIndex {
    type Error = KeyFormatError;
    fn try_from(s: String) -> Result<Self, KeyFormatError> {
        let valid = s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if valid {
            Ok(Self(s))
        } else {
            Err(KeyFormatError::WrongLength {
                what: "blind index (lowercase hex)",
                expected: 16,
                found: s.len() / 2,
            })
        }
    }
}

impl From<BlindIndex> for String {
    fn from(ix: BlindIndex) -> String {
        ix.0
    }
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlindIndex({})", self.0)
    }
}

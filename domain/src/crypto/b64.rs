//! Base64 (standard, padded) for binary fields in JSON.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::KeyFormatError;

pub(crate) fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub(crate) fn decode(text: &str, what: &'static str) -> Result<Vec<u8>, KeyFormatError> {
    STANDARD
        .decode(text)
        .map_err(|_| KeyFormatError::NotBase64 { what })
}

pub(crate) fn decode_array<const N: usize>(
    text: &str,
    what: &'static str,
) -> Result<[u8; N], KeyFormatError> {
    let bytes = decode(text, what)?;
    let found = bytes.len();
    bytes.try_into().map_err(|_| KeyFormatError::WrongLength {
        what,
        expected: N,
        found,
    })
}

/// Serde for `Vec<u8>` as base64.
pub(crate) mod vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        super::decode(&text, "binary field").map_err(serde::de::Error::custom)
    }
}

/// Serde for `[u8; N]` as base64.
pub(crate) mod array {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        super::decode_array(&text, "binary field").map_err(serde::de::Error::custom)
    }
}

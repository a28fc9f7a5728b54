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
    // On the stack: these are keys, nonces and signatures, decoded for every event read.
    let mut bytes = [0u8; MAX_ARRAY];
    if base64::decoded_len_estimate(text.len()) <= MAX_ARRAY {
        let found = STANDARD
            .decode_slice(text, &mut bytes)
            .map_err(|_| KeyFormatError::NotBase64 { what })?;
        return bytes[..found]
            .try_into()
            .map_err(|_| KeyFormatError::WrongLength {
                what,
                expected: N,
                found,
            });
    }
    let bytes = decode(text, what)?;
    let found = bytes.len();
    bytes.try_into().map_err(|_| KeyFormatError::WrongLength {
        what,
        expected: N,
        found,
    })
}

/// Room for the largest array decoded on the stack: a signature's 64 bytes are 88
/// characters, which base64 estimates at 66 bytes. Longer text is decoded on the heap, as
/// before, and refused for its length or its alphabet.
const MAX_ARRAY: usize = 66;

/// Decodes a string as the deserializer hands it over: from the JSON text itself when it
/// has no escapes, with no `String` made for it either way.
struct Base64Visitor<F>(F);

impl<'de, T, F: FnOnce(&str) -> Result<T, KeyFormatError>> serde::de::Visitor<'de>
    for Base64Visitor<F>
{
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a base64 string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
        (self.0)(text).map_err(E::custom)
    }
}

/// Serde for `Vec<u8>` as base64.
pub(crate) mod vec {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_str(super::Base64Visitor(|text: &str| {
            super::decode(text, "binary field")
        }))
    }
}

/// Serde for `[u8; N]` as base64.
pub(crate) mod array {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        d.deserialize_str(super::Base64Visitor(|text: &str| {
            super::decode_array(text, "binary field")
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_array_decodes_from_its_exact_length_only() {
        let bytes: Vec<u8> = (0..64).collect();
        let signature = decode_array::<64>(&encode(&bytes), "signature").unwrap();
        assert_eq!(signature.to_vec(), bytes);
        let nonce = decode_array::<12>(&encode(&bytes[..12]), "nonce").unwrap();
        assert_eq!(nonce, bytes[..12]);
        for found in [63usize, 65, 200] {
            assert_eq!(
                decode_array::<64>(&encode(&vec![7; found]), "signature"),
                Err(KeyFormatError::WrongLength {
                    what: "signature",
                    expected: 64,
                    found
                })
            );
        }
        assert_eq!(
            decode_array::<12>("not base64!", "nonce"),
            Err(KeyFormatError::NotBase64 { what: "nonce" })
        );
    }

    #[derive(Debug, serde::Deserialize)]
    struct Field(#[serde(with = "array")] [u8; 3]);

    #[test]
    fn a_field_decodes_from_json_text_with_escapes_and_from_a_value() {
        // `\u0049` is `I`: the decoder sees the text unescaped.
        let Field(bytes) = serde_json::from_str(r#""AQ\u0049D""#).unwrap();
        assert_eq!(bytes, [1, 2, 3]);
        let Field(bytes) = serde_json::from_value(serde_json::json!("AQID")).unwrap();
        assert_eq!(bytes, [1, 2, 3]);
        let error = serde_json::from_str::<Field>("17").unwrap_err();
        assert!(error.to_string().contains("a base64 string"), "{error}");
    }
}

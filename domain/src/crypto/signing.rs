//! Ed25519 signing keys, public keys and signatures.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey as DalekSigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{b64, KeyFormatError};

/// An agent's (or the project owner's) private signing key. It lives in a key file on
/// the agent's machine and nowhere else.
#[derive(Clone)]
pub struct SigningKey(DalekSigningKey);

impl SigningKey {
    pub fn generate() -> Self {
        Self(DalekSigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// Base64 of the 32-byte seed, for the key file.
    pub fn to_base64(&self) -> String {
        b64::encode(self.0.as_bytes())
    }

    pub fn from_base64(text: &str) -> Result<Self, KeyFormatError> {
        let seed = b64::decode_array::<32>(text, "signing key")?;
        Ok(Self(DalekSigningKey::from_bytes(&seed)))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The secret scalar, for tests that build signatures by hand.
    #[cfg(test)]
    pub(super) fn secret_scalar(&self) -> curve25519_dalek::scalar::Scalar {
        self.0.to_scalar()
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public={})", self.public_key().to_base64())
    }
}

/// An Ed25519 public key, registered in the log.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKey(pub(super) VerifyingKey);

/// A signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify against the actor's registered public key")]
pub struct SignatureError;

impl PublicKey {
    pub fn to_base64(&self) -> String {
        b64::encode(self.0.as_bytes())
    }

    pub fn from_base64(text: &str) -> Result<Self, KeyFormatError> {
        let bytes = b64::decode_array::<32>(text, "public key")?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| KeyFormatError::NotAPublicKey { what: "public key" })
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Strict verification: rejects small-order keys and non-canonical signatures, so a
    /// signature is valid for exactly one (key, message).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(message, &signature)
            .map_err(|_| SignatureError)
    }
}

impl TryFrom<String> for PublicKey {
    type Error = KeyFormatError;
    fn try_from(s: String) -> Result<Self, KeyFormatError> {
        Self::from_base64(&s)
    }
}

impl From<PublicKey> for String {
    fn from(key: PublicKey) -> String {
        key.to_base64()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "b64::array")] pub(super) [u8; 64]);

impl Signature {
    /// A signature from its 64 bytes (all zero: the unsigned retention tombstone).
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }

    /// Flips one bit; for tests that prove forgery is caught.
    #[doc(hidden)]
    pub fn flip_bit_for_test(&mut self, bit: usize) {
        self.0[(bit / 8) % 64] ^= 1 << (bit % 8);
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..6]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_for_its_key_and_message_only() {
        let key = SigningKey::generate();
        let signature = key.sign(b"message");
        assert!(key.public_key().verify(b"message", &signature).is_ok());
        assert_eq!(
            key.public_key().verify(b"messagf", &signature),
            Err(SignatureError)
        );
        let other = SigningKey::generate().public_key();
        assert_eq!(other.verify(b"message", &signature), Err(SignatureError));
    }

    #[test]
    fn keys_round_trip_through_base64() {
        let key = SigningKey::generate();
        let again = SigningKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let public = PublicKey::from_base64(&key.public_key().to_base64()).unwrap();
        assert_eq!(public, key.public_key());
        assert!(PublicKey::from_base64("AAAA").is_err());
    }

    #[test]
    fn debug_output_hides_the_private_key() {
        let key = SigningKey::generate();
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }
}

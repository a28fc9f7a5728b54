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
pub struct PublicKey(VerifyingKey);

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

/// Verifies many signatures at once (`items`: key, message, signature), about twice as
/// fast per signature as one by one for a few hundred; `Err` when any fails, without
/// saying which (check them one by one with [`PublicKey::verify`] to find out).
///
/// As strict as [`PublicKey::verify`] where it matters: small-order keys are refused, a
/// non-canonical `s` is refused, and `R` is bound by the hash `H(R || A || M)` of its
/// encoding, so no other encoding or torsion-shifted `R` of a valid signature verifies.
/// The batch equation carries coefficients derived from every signature, so one bad
/// signature cannot be cancelled by another.
pub fn verify_batch(items: &[(PublicKey, &[u8], &Signature)]) -> Result<(), SignatureError> {
    if items.iter().any(|(key, _, _)| key.0.is_weak()) {
        return Err(SignatureError);
    }
    let messages: Vec<&[u8]> = items.iter().map(|(_, message, _)| *message).collect();
    let signatures: Vec<ed25519_dalek::Signature> = items
        .iter()
        .map(|(_, _, signature)| ed25519_dalek::Signature::from_bytes(&signature.0))
        .collect();
    let keys: Vec<VerifyingKey> = items.iter().map(|(key, _, _)| key.0).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).map_err(|_| SignatureError)
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
pub struct Signature(#[serde(with = "b64::array")] [u8; 64]);

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
    fn a_batch_verifies_only_when_every_signature_does() {
        let keys: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate()).collect();
        let messages: Vec<Vec<u8>> = (0..40).map(|i| format!("event {i}").into_bytes()).collect();
        let mut signatures: Vec<Signature> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| keys[i % 3].sign(m))
            .collect();
        let items = |signatures: &[Signature]| -> Vec<(PublicKey, Vec<u8>, Signature)> {
            messages
                .iter()
                .zip(signatures)
                .enumerate()
                .map(|(i, (m, s))| (keys[i % 3].public_key(), m.clone(), *s))
                .collect()
        };
        let check = |items: &[(PublicKey, Vec<u8>, Signature)]| {
            let borrowed: Vec<_> = items
                .iter()
                .map(|(k, m, s)| (*k, m.as_slice(), s))
                .collect();
            verify_batch(&borrowed)
        };
        assert_eq!(check(&items(&signatures)), Ok(()));
        signatures[17].flip_bit_for_test(200);
        assert_eq!(check(&items(&signatures)), Err(SignatureError));
        // A signature moved to another message or key fails too.
        let mut swapped = items(
            &messages
                .iter()
                .enumerate()
                .map(|(i, m)| keys[i % 3].sign(m))
                .collect::<Vec<_>>(),
        );
        swapped[3].1 = b"another message".to_vec();
        assert_eq!(check(&swapped), Err(SignatureError));
        assert_eq!(check(&[]), Ok(()));
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

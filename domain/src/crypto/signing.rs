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

/// Verifies many signatures at once (`items`: key, message, signature); `Err` when any
/// fails, without saying which (check them one by one with [`PublicKey::verify`] to find
/// out).
///
/// The batch equation, with a random-looking 128-bit `zᵢ` per signature derived from
/// every signature's hash and `s` (so no signature can be tuned to cancel another):
/// `[−Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σ_A [Σ_{i signed by A} zᵢhᵢ]A = 0`, `hᵢ = H(Rᵢ ‖ A ‖ Mᵢ)`.
/// The `A` terms are gathered per key (ed25519-dalek's `verify_batch` keeps one per
/// signature): a log's events are signed by a handful of agents, so the multiscalar
/// multiplication has about half the points.
///
/// As strict as [`PublicKey::verify`] (`verify_strict`): small-order keys, a non-canonical
/// `s`, a non-canonical or small-order `R` are refused before the equation is tried; `R`
/// is bound by the hash of its encoding, so no other encoding of a valid signature
/// verifies.
pub fn verify_batch(items: &[(PublicKey, &[u8], &Signature)]) -> Result<(), SignatureError> {
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
    use rand::{RngCore, SeedableRng};
    use sha2::{Digest, Sha512};

    if items.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<(&PublicKey, Scalar)> = Vec::new();
    let mut key_of = std::collections::HashMap::new();
    let mut rs = Vec::with_capacity(items.len());
    let mut terms = Vec::with_capacity(items.len()); // (key index, h, s)
    let mut seed = Sha512::new();
    seed.update(b"nexysync ed25519 batch");
    for (key, message, signature) in items {
        let (r_bytes, s_bytes) = signature.0.split_at(32);
        let r_bytes: [u8; 32] = r_bytes.try_into().expect("32 bytes");
        let s_bytes: [u8; 32] = s_bytes.try_into().expect("32 bytes");
        let s =
            Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(SignatureError)?;
        if !is_canonical_y(&r_bytes) {
            return Err(SignatureError);
        }
        let r = CompressedEdwardsY(r_bytes)
            .decompress()
            .ok_or(SignatureError)?;
        if r.is_small_order() {
            return Err(SignatureError);
        }
        let key_index = match key_of.get(key.as_bytes()) {
            Some(&index) => index,
            None if key.0.is_weak() => return Err(SignatureError),
            None => {
                keys.push((key, Scalar::ZERO));
                key_of.insert(key.as_bytes(), keys.len() - 1);
                keys.len() - 1
            }
        };
        let hram: [u8; 64] = Sha512::new()
            .chain_update(r_bytes)
            .chain_update(key.as_bytes())
            .chain_update(message)
            .finalize()
            .into();
        seed.update(hram);
        seed.update(s_bytes);
        rs.push(r);
        terms.push((key_index, Scalar::from_bytes_mod_order_wide(&hram), s));
    }
    let seed: [u8; 64] = seed.finalize().into();
    let mut rng = rand::rngs::StdRng::from_seed(seed[..32].try_into().expect("32 bytes"));
    let mut b_coefficient = Scalar::ZERO;
    let mut zs = Vec::with_capacity(terms.len());
    for (key_index, h, s) in terms {
        let mut z = [0u8; 16];
        rng.fill_bytes(&mut z);
        let z = Scalar::from(u128::from_le_bytes(z));
        b_coefficient -= z * s;
        keys[key_index].1 += z * h;
        zs.push(z);
    }
    let scalars = std::iter::once(b_coefficient)
        .chain(zs)
        .chain(keys.iter().map(|(_, coefficient)| *coefficient));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(rs)
        .chain(keys.iter().map(|(key, _)| key.0.to_edwards()));
    if EdwardsPoint::vartime_multiscalar_mul(scalars, points).is_identity() {
        Ok(())
    } else {
        Err(SignatureError)
    }
}

/// Whether the 32-byte point encoding has its `y` below the field prime `2²⁵⁵ − 19` (the
/// sign bit aside), as `verify_strict` requires of `R` by comparing encodings.
fn is_canonical_y(encoding: &[u8; 32]) -> bool {
    let top = encoding[31] & 0x7f;
    // y ≥ p exactly when y is one of 2²⁵⁵ − 19 … 2²⁵⁵ − 1: every byte 0xff (the top one
    // 0x7f) but the lowest, which is at least 0xed.
    !(top == 0x7f && encoding[1..31].iter().all(|&b| b == 0xff) && encoding[0] >= 0xed)
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
    use sha2::Digest;

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

    /// A "signature" whose `R` is the identity: `s = h·a` satisfies the cofactorless
    /// equation for the key's own owner. `verify_strict` refuses it; so must the batch.
    #[test]
    fn a_small_order_or_non_canonical_r_is_refused_by_the_batch_as_by_strict_verification() {
        let key = SigningKey::generate();
        let public = key.public_key();
        let message = b"event";
        let mut identity_r = [0u8; 32];
        identity_r[0] = 1;
        let h = curve25519_dalek::scalar::Scalar::from_bytes_mod_order_wide(
            &sha2::Sha512::new()
                .chain_update(identity_r)
                .chain_update(public.as_bytes())
                .chain_update(message)
                .finalize()
                .into(),
        );
        let s = h * key.0.to_scalar();
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&identity_r);
        bytes[32..].copy_from_slice(s.as_bytes());
        let small_r = Signature::from_bytes(bytes);
        assert_eq!(public.verify(message, &small_r), Err(SignatureError));
        let good = key.sign(b"another event");
        let batch = [
            (public, &b"another event"[..], &good),
            (public, &message[..], &small_r),
        ];
        assert_eq!(verify_batch(&batch), Err(SignatureError));
        assert_eq!(verify_batch(&batch[..1]), Ok(()));

        // `R`'s y written as y + p: the same point, another encoding.
        let mut y = [0xffu8; 32];
        y[31] = 0x7f;
        y[0] = 0xed; // p itself, y = 0.
        assert!(!is_canonical_y(&y));
        y[0] = 0xec; // p − 1
        assert!(is_canonical_y(&y));
        assert!(is_canonical_y(&[0u8; 32]));
    }

    #[test]
    fn a_batch_of_many_keys_gathers_each_keys_terms() {
        let keys: Vec<SigningKey> = (0..5).map(|_| SigningKey::generate()).collect();
        let messages: Vec<Vec<u8>> = (0..300)
            .map(|i| format!("event {i}").into_bytes())
            .collect();
        let signed: Vec<(PublicKey, Signature)> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (keys[(i * i) % 5].public_key(), keys[(i * i) % 5].sign(m)))
            .collect();
        let items = |signed: &[(PublicKey, Signature)]| -> Result<(), SignatureError> {
            let borrowed: Vec<_> = signed
                .iter()
                .zip(&messages)
                .map(|((k, s), m)| (*k, m.as_slice(), s))
                .collect();
            verify_batch(&borrowed)
        };
        assert_eq!(items(&signed), Ok(()));
        // The right signature under another key of the batch.
        let mut moved = signed.clone();
        moved[7].0 = moved[6].0;
        assert_ne!(signed[7].0, signed[6].0);
        assert_eq!(items(&moved), Err(SignatureError));
        // Two signatures of one key swapped between their messages.
        let mut swapped = signed.clone();
        swapped.swap(0, 5); // 0·0 and 5·5 are both 0 mod 5: the same key.
        assert_eq!(items(&swapped), Err(SignatureError));
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

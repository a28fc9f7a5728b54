//! Sealed content: one encrypted field of one event.
//!
//! Layout of a sealed field (`{"n", "c", "k", "b"}` in JSON):
//! - `n`: a fresh random 96-bit nonce;
//! - `c`: AES-256-GCM ciphertext and tag, with associated data
//!   `nexysync/v1/field \0 project \0 event \0 field`;
//! - `k`: a key commitment, HMAC of the commitment subkey: GCM alone is not key-committing,
//!   and this makes a ciphertext open under one project key only;
//! - `b`: a binding tag, HMAC of the associated data, so that a ciphertext moved to another
//!   event or field is reported as misplaced rather than merely "corrupt".

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::Mac;
use rand::RngCore;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{b64, ContentKeys};
use crate::ids::{EventId, ProjectId};

/// Where a sealed field belongs: the associated data of its encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldBinding<'a> {
    pub project: ProjectId,
    pub event: EventId,
    pub field: &'a str,
}

impl FieldBinding<'_> {
    fn associated_data(&self) -> Vec<u8> {
        let mut ad = Vec::with_capacity(96);
        ad.extend_from_slice(b"nexysync/v1/field\0");
        ad.extend_from_slice(self.project.as_uuid().as_bytes());
        ad.push(0);
        ad.extend_from_slice(self.event.as_uuid().as_bytes());
        ad.push(0);
        ad.extend_from_slice(self.field.as_bytes());
        ad
    }
}

/// An encrypted field as stored and routed by the server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Sealed {
    #[serde(rename = "n", with = "b64::array")]
    #[schemars(schema_with = "crate::formats::sealed::nonce")]
    nonce: [u8; 12],
    #[serde(rename = "c", with = "b64::vec")]
    #[schemars(schema_with = "crate::formats::sealed::ciphertext")]
    ciphertext: Vec<u8>,
    #[serde(rename = "k", with = "b64::array")]
    #[schemars(schema_with = "crate::formats::sealed::commitment")]
    commitment: [u8; 32],
    #[serde(rename = "b", with = "b64::array")]
    #[schemars(schema_with = "crate::formats::sealed::binding")]
    binding: [u8; 16],
}

/// Why a sealed field did not open. Each names the rule that was broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("sealed with a different project key (key commitment mismatch)")]
    WrongKey,
    #[error("ciphertext belongs to another event or field (binding mismatch for field `{field}`)")]
    Misplaced { field: String },
    #[error("ciphertext of field `{field}` was modified (authentication tag mismatch)")]
    Tampered { field: String },
}

impl ContentKeys {
    /// Encrypts `plaintext` for `binding` with a fresh random nonce.
    pub fn seal(&self, binding: &FieldBinding<'_>, plaintext: &[u8]) -> Sealed {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ad = binding.associated_data();
        let ciphertext = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &ad,
                },
            )
            .expect("AES-GCM encryption fails only beyond 64 GiB per message");
        Sealed {
            nonce,
            ciphertext,
            commitment: self.key_commitment(),
            binding: self.binding_tag(&ad),
        }
    }

    /// Decrypts a sealed field, checking in turn the key, the binding and the ciphertext.
    pub fn open(&self, binding: &FieldBinding<'_>, sealed: &Sealed) -> Result<Vec<u8>, OpenError> {
        if !bool::from(self.key_commitment().ct_eq(&sealed.commitment)) {
            return Err(OpenError::WrongKey);
        }
        let ad = binding.associated_data();
        if !bool::from(self.binding_tag(&ad).ct_eq(&sealed.binding)) {
            return Err(OpenError::Misplaced {
                field: binding.field.to_owned(),
            });
        }
        self.cipher()
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &ad,
                },
            )
            .map_err(|_| OpenError::Tampered {
                field: binding.field.to_owned(),
            })
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.encryption).expect("the encryption subkey is 32 bytes")
    }

    fn key_commitment(&self) -> [u8; 32] {
        let mut mac = self.mac(&self.commitment);
        mac.update(b"nexysync/v1/key-commitment");
        mac.finalize().into_bytes().into()
    }

    fn binding_tag(&self, ad: &[u8]) -> [u8; 16] {
        let mut mac = self.mac(&self.commitment);
        mac.update(b"nexysync/v1/binding\0");
        mac.update(ad);
        let tag = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag[..16]);
        out
    }
}

impl Sealed {
    /// SHA-256 over every byte of the sealed field. Event hashes cover this digest rather
    /// than the ciphertext, so the chain still verifies after the pruner erases content.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.nonce);
        hasher.update(self.commitment);
        hasher.update(self.binding);
        hasher.update(&self.ciphertext);
        hasher.finalize().into()
    }

    /// Ciphertext length in bytes (plaintext length plus the 16-byte tag).
    pub fn ciphertext_len(&self) -> usize {
        self.ciphertext.len()
    }

    /// Flips one bit of the ciphertext; for tests that prove tampering is caught.
    #[doc(hidden)]
    pub fn flip_bit_for_test(&mut self, bit: usize) {
        let len = self.ciphertext.len();
        self.ciphertext[(bit / 8) % len] ^= 1 << (bit % 8);
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.ciphertext.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ProjectKey;

    fn binding(event: EventId, field: &str) -> FieldBinding<'_> {
        FieldBinding {
            project: ProjectId::generate(),
            event,
            field,
        }
    }

    #[test]
    fn a_sealed_field_opens_with_its_key_and_binding() {
        let keys = ProjectKey::generate().content_keys();
        let at = binding(EventId::generate(), "body");
        let sealed = keys.seal(&at, b"hello agent");
        assert_eq!(keys.open(&at, &sealed).unwrap(), b"hello agent");
    }

    #[test]
    fn two_seals_of_the_same_text_differ() {
        let keys = ProjectKey::generate().content_keys();
        let at = binding(EventId::generate(), "body");
        assert_ne!(keys.seal(&at, b"same"), keys.seal(&at, b"same"));
    }

    #[test]
    fn a_ciphertext_moved_to_another_event_is_misplaced() {
        let keys = ProjectKey::generate().content_keys();
        let at = binding(EventId::generate(), "body");
        let sealed = keys.seal(&at, b"secret");
        let elsewhere = FieldBinding {
            event: EventId::generate(),
            ..at
        };
        assert_eq!(
            keys.open(&elsewhere, &sealed),
            Err(OpenError::Misplaced {
                field: "body".into()
            })
        );
    }

    #[test]
    fn a_ciphertext_moved_to_another_field_is_misplaced() {
        let keys = ProjectKey::generate().content_keys();
        let at = binding(EventId::generate(), "body");
        let sealed = keys.seal(&at, b"secret");
        let other_field = FieldBinding {
            field: "topic",
            ..at
        };
        assert_eq!(
            keys.open(&other_field, &sealed),
            Err(OpenError::Misplaced {
                field: "topic".into()
            })
        );
    }

    #[test]
    fn a_flipped_bit_is_tampering() {
        let keys = ProjectKey::generate().content_keys();
        let at = binding(EventId::generate(), "body");
        let mut sealed = keys.seal(&at, b"secret");
        sealed.flip_bit_for_test(3);
        assert_eq!(
            keys.open(&at, &sealed),
            Err(OpenError::Tampered {
                field: "body".into()
            })
        );
    }

    #[test]
    fn a_wrong_key_is_named_as_such() {
        let keys = ProjectKey::generate().content_keys();
        let other = ProjectKey::generate().content_keys();
        let at = binding(EventId::generate(), "body");
        let sealed = keys.seal(&at, b"secret");
        assert_eq!(other.open(&at, &sealed), Err(OpenError::WrongKey));
    }

    #[test]
    fn blind_indexes_are_equal_for_equal_values_only() {
        let keys = ProjectKey::generate().content_keys();
        let other = ProjectKey::generate().content_keys();
        assert_eq!(
            keys.blind_index("topic", "deploy"),
            keys.blind_index("topic", "deploy")
        );
        assert_ne!(
            keys.blind_index("topic", "deploy"),
            keys.blind_index("topic", "deploy2")
        );
        assert_ne!(
            keys.blind_index("topic", "deploy"),
            keys.blind_index("kv", "deploy")
        );
        assert_ne!(
            keys.blind_index("topic", "deploy"),
            other.blind_index("topic", "deploy")
        );
    }

    #[test]
    fn the_digest_covers_the_ciphertext() {
        let keys = ProjectKey::generate().content_keys();
        let at = binding(EventId::generate(), "body");
        let sealed = keys.seal(&at, b"secret");
        let mut flipped = sealed.clone();
        flipped.flip_bit_for_test(0);
        assert_ne!(sealed.digest(), flipped.digest());
    }
}

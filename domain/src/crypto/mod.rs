//! Client-side cryptography. Everything here runs on the agent's machine; the server only
//! ever sees its outputs (ciphertext, digests, blind indexes, public keys, signatures).
//!
//! - [`ProjectKey`]: the 256-bit secret shared by a project's agents; HKDF derives the
//!   subkeys so one key never serves two purposes.
//! - [`ContentKeys::seal`] / [`ContentKeys::open`]: AES-256-GCM with a fresh random nonce,
//!   associated data binding the ciphertext to (project, event, field), and a key
//!   commitment so a ciphertext cannot open under two keys.
//! - [`ContentKeys::blind_index`]: HMAC equality tokens for lookups the server must do.
//! - [`SigningKey`] / [`PublicKey`]: Ed25519, verified with `verify_strict` on the write
//!   path; audits verify in batches with the cofactored equation ([`verify_batch`],
//!   [`PublicKey::verify_cofactored`], ADR 0013).
//! - [`file_stream`]: files encrypted in authenticated 64 KiB chunks (flat memory, any size).

mod audit_signatures;
mod b64;
pub mod file_stream;
mod project_key;
mod sealed;
mod signing;
mod token;

pub use audit_signatures::verify_batch;
pub use project_key::{BlindIndex, ContentKeys, ProjectKey};
pub use sealed::{FieldBinding, OpenError, Sealed};
pub use signing::{PublicKey, Signature, SignatureError, SigningKey};
pub use token::{AgentToken, TokenHash};

/// Errors decoding a key or token from its text form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("{what} is not valid base64")]
    NotBase64 { what: &'static str },
    #[error("{what} must be {expected} bytes, found {found}")]
    WrongLength {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("{what} is not a valid Ed25519 public key")]
    NotAPublicKey { what: &'static str },
}

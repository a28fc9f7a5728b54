//! Agent bearer tokens. The client generates the token; only its SHA-256 travels in the
//! `AgentRegistered` event, so the server can check a token but never mint or recover one.

use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A bearer token: `nsa_` and 43 characters of base64url (256 random bits).
#[derive(Clone, PartialEq, Eq)]
pub struct AgentToken(String);

impl AgentToken {
    pub fn generate() -> Self {
        use base64::Engine;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(format!(
            "nsa_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    pub fn from_secret(text: String) -> Self {
        Self(text)
    }

    /// The token text, to put in an `Authorization: Bearer` header or a key file.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for AgentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AgentToken(<hidden>)")
    }
}

/// SHA-256 of a token, hex encoded: what the server stores and compares.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenHash(String);

impl TokenHash {
    /// Hashes presented token text (the server does this for every request).
    pub fn of(token: &str) -> Self {
        Self(hex::encode(Sha256::digest(token.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TokenHash {
    type Error = super::KeyFormatError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            Ok(Self(s))
        } else {
            Err(super::KeyFormatError::WrongLength {
                what: "token hash (lowercase hex SHA-256)",
                expected: 32,
                found: s.len() / 2,
            })
        }
    }
}

impl From<TokenHash> for String {
    fn from(h: TokenHash) -> String {
        h.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &self.0[..8])
    }
}

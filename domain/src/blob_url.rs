//! Signed blob URLs: how the API lets a client (or itself) reach one blob of the CDN for a
//! short while, and how the CDN checks it without sessions or keys of any project.
//!
//! A URL names one blob (`/v1/blobs/<project>/<file>`), an expiry, a size limit and, for
//! uploads, the SHA-256 the body must have. Its `sig` is HMAC-SHA256, under a secret shared
//! by API and CDN only, over the HTTP method and all of those; the CDN recomputes it and
//! compares in constant time, so changing the method, the blob, the project, the expiry or
//! the limit invalidates the URL.
//!
//! An upload URL without a SHA-256 lets the CDN measure it instead: the CDN answers the
//! upload with an [`UploadReceipt`] (project, file, size, SHA-256) signed under the same
//! secret with its own domain separation, which the commit carries back to the API. So a
//! client encrypts a file once and streams it, and still nothing is appended for bytes
//! the CDN did not store.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::ids::{EventId, ProjectId};

/// What a URL lets its holder do with the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobMethod {
    Put,
    Get,
    Head,
    Delete,
}

impl BlobMethod {
    /// The HTTP method's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Put => "PUT",
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Delete => "DELETE",
        }
    }

    /// From an HTTP method's name; `None` for any other.
    pub fn parse(method: &str) -> Option<Self> {
        Some(match method {
            "PUT" => Self::Put,
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "DELETE" => Self::Delete,
            _ => return None,
        })
    }
}

/// What a signed URL grants, all of it covered by the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobGrant {
    pub method: BlobMethod,
    pub project: ProjectId,
    pub file: EventId,
    /// Unix seconds after which the URL is refused.
    pub expires_at: u64,
    /// Largest body an upload may have (0 for other methods).
    pub max_bytes: u64,
    /// Lowercase hex SHA-256 an upload's body must have.
    pub sha256: Option<String>,
}

impl BlobGrant {
    /// The blob's key in storage, `<project>/<file>`: made of two UUIDs only, so it can
    /// never name anything outside the store.
    pub fn blob_key(&self) -> String {
        blob_key(self.project, self.file)
    }

    /// The URL's path and query, `sig` included.
    pub fn path_and_query(&self, sig: &str) -> String {
        let mut url = format!(
            "/v1/blobs/{}/{}?exp={}&max={}",
            self.project, self.file, self.expires_at, self.max_bytes
        );
        if let Some(sha256) = &self.sha256 {
            url.push_str("&sha256=");
            url.push_str(sha256);
        }
        url.push_str("&sig=");
        url.push_str(sig);
        url
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(160);
        for part in [
            "nexysync/v1/blob-url",
            self.method.as_str(),
            &self.project.to_string(),
            &self.file.to_string(),
            &self.expires_at.to_string(),
            &self.max_bytes.to_string(),
            self.sha256.as_deref().unwrap_or(""),
        ] {
            bytes.extend_from_slice(part.as_bytes());
            bytes.push(0);
        }
        bytes
    }
}

/// What the CDN stored for an upload, as it measured it while writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReceipt {
    pub project: ProjectId,
    pub file: EventId,
    /// Bytes stored.
    pub size: u64,
    /// Lowercase hex SHA-256 of the bytes stored.
    pub sha256: String,
}

impl UploadReceipt {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(160);
        for part in [
            // Not a URL's prefix: a URL signature never passes as a receipt, nor back.
            "nexysync/v1/blob-receipt",
            &self.project.to_string(),
            &self.file.to_string(),
            &self.size.to_string(),
            &self.sha256,
        ] {
            bytes.extend_from_slice(part.as_bytes());
            bytes.push(0);
        }
        bytes
    }
}

/// The storage key of file `file` of `project`.
pub fn blob_key(project: ProjectId, file: EventId) -> String {
    format!("{project}/{file}")
}

/// Why a signed URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("this URL expired; ask the API for a new one")]
    Expired,
    #[error("this URL's signature does not match its method, blob, expiry or limits")]
    BadSignature,
}

/// The secret API and CDN share to sign URLs. Never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct UrlSecret([u8; 32]);

impl UrlSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// From its text form (64 hex digits, as `nexysync up` writes it).
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text.trim()).ok()?;
        bytes.try_into().ok().map(Self)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The `sig` of `grant`: lowercase hex HMAC-SHA256.
    pub fn sign(&self, grant: &BlobGrant) -> String {
        hex::encode(self.tag(grant))
    }

    /// `grant`'s path and query with its signature.
    pub fn signed_path(&self, grant: &BlobGrant) -> String {
        grant.path_and_query(&self.sign(grant))
    }

    /// Checks `sig` against `grant` (in constant time), then the expiry against `now_s`.
    pub fn verify(&self, grant: &BlobGrant, sig: &str, now_s: u64) -> Result<(), UrlError> {
        let Ok(given) = hex::decode(sig) else {
            return Err(UrlError::BadSignature);
        };
        if !bool::from(self.tag(grant)[..].ct_eq(&given[..])) {
            return Err(UrlError::BadSignature);
        }
        if now_s > grant.expires_at {
            return Err(UrlError::Expired);
        }
        Ok(())
    }

    /// The signature of `receipt`: lowercase hex HMAC-SHA256.
    pub fn sign_receipt(&self, receipt: &UploadReceipt) -> String {
        hex::encode(self.mac(&receipt.signed_bytes()))
    }

    /// Whether `sig` is this secret's signature of `receipt` (compared in constant time).
    pub fn receipt_is_genuine(&self, receipt: &UploadReceipt, sig: &str) -> bool {
        let Ok(given) = hex::decode(sig) else {
            return false;
        };
        bool::from(self.mac(&receipt.signed_bytes())[..].ct_eq(&given[..]))
    }

    fn tag(&self, grant: &BlobGrant) -> [u8; 32] {
        self.mac(&grant.signed_bytes())
    }

    fn mac(&self, bytes: &[u8]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for UrlSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UrlSecret(<hidden>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> BlobGrant {
        BlobGrant {
            method: BlobMethod::Put,
            project: ProjectId::generate(),
            file: EventId::generate(),
            expires_at: 1_000,
            max_bytes: 4096,
            sha256: Some("ab".repeat(32)),
        }
    }

    #[test]
    fn a_signed_grant_verifies_until_it_expires() {
        let secret = UrlSecret::generate();
        let grant = grant();
        let sig = secret.sign(&grant);
        assert_eq!(secret.verify(&grant, &sig, 1_000), Ok(()));
        assert_eq!(secret.verify(&grant, &sig, 1_001), Err(UrlError::Expired));
    }

    #[test]
    fn changing_anything_the_signature_covers_invalidates_it() {
        let secret = UrlSecret::generate();
        let original = grant();
        let sig = secret.sign(&original);
        let changes: Vec<BlobGrant> = vec![
            BlobGrant {
                method: BlobMethod::Get,
                ..original.clone()
            },
            BlobGrant {
                project: ProjectId::generate(),
                ..original.clone()
            },
            BlobGrant {
                file: EventId::generate(),
                ..original.clone()
            },
            BlobGrant {
                expires_at: 2_000,
                ..original.clone()
            },
            BlobGrant {
                max_bytes: 4097,
                ..original.clone()
            },
            BlobGrant {
                sha256: None,
                ..original.clone()
            },
        ];
        for changed in changes {
            assert_eq!(
                secret.verify(&changed, &sig, 0),
                Err(UrlError::BadSignature),
                "{changed:?}"
            );
        }
        assert_eq!(
            UrlSecret::generate().verify(&original, &sig, 0),
            Err(UrlError::BadSignature)
        );
        assert_eq!(
            secret.verify(&original, "not hex", 0),
            Err(UrlError::BadSignature)
        );
        assert_eq!(
            secret.verify(&original, &sig[..10], 0),
            Err(UrlError::BadSignature)
        );
    }

    #[test]
    fn a_receipt_verifies_only_as_signed_and_only_under_its_secret() {
        let secret = UrlSecret::generate();
        let receipt = UploadReceipt {
            project: ProjectId::generate(),
            file: EventId::generate(),
            size: 4096,
            sha256: "ab".repeat(32),
        };
        let sig = secret.sign_receipt(&receipt);
        assert!(secret.receipt_is_genuine(&receipt, &sig));
        let changes = [
            UploadReceipt {
                project: ProjectId::generate(),
                ..receipt.clone()
            },
            UploadReceipt {
                file: EventId::generate(),
                ..receipt.clone()
            },
            UploadReceipt {
                size: 4095,
                ..receipt.clone()
            },
            UploadReceipt {
                sha256: "cd".repeat(32),
                ..receipt.clone()
            },
        ];
        for changed in &changes {
            assert!(!secret.receipt_is_genuine(changed, &sig), "{changed:?}");
        }
        assert!(!UrlSecret::generate().receipt_is_genuine(&receipt, &sig));
        assert!(!secret.receipt_is_genuine(&receipt, "not hex"));
        assert!(!secret.receipt_is_genuine(&receipt, &sig[..20]));
        // A URL signature is no receipt.
        let url_sig = secret.sign(&grant());
        assert!(!secret.receipt_is_genuine(&receipt, &url_sig));
    }

    #[test]
    fn the_secret_survives_its_text_form_and_never_prints() {
        let secret = UrlSecret::generate();
        assert_eq!(UrlSecret::from_hex(&secret.to_hex()), Some(secret.clone()));
        assert!(!format!("{secret:?}").contains(&secret.to_hex()));
        assert_eq!(UrlSecret::from_hex("abcd"), None);
    }

    #[test]
    fn the_url_names_the_blob_and_every_signed_parameter() {
        let secret = UrlSecret::generate();
        let grant = grant();
        let url = secret.signed_path(&grant);
        assert!(url.starts_with(&format!("/v1/blobs/{}/{}?", grant.project, grant.file)));
        for part in ["exp=1000", "max=4096", "sha256=abab", "sig="] {
            assert!(url.contains(part), "{url}");
        }
    }
}

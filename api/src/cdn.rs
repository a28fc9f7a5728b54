//! The API's side of the file service: it signs the short-lived URLs clients use to reach
//! the CDN, and checks and removes blobs itself with URLs it signs for its own use.

use std::time::Duration;

use anyhow::Context;
use nexysync_domain::blob_url::{BlobGrant, BlobMethod, UploadReceipt, UrlSecret};
use nexysync_domain::ids::{EventId, ProjectId};

use crate::error::ApiError;
use crate::settings::FileSettings;

/// A URL handed out, with when it stops working.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignedUrl {
    pub url: String,
    pub expires_at_ms: i64,
}

/// Signs CDN URLs and talks to the CDN. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CdnClient {
    http: reqwest::Client,
    settings: std::sync::Arc<FileSettings>,
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl CdnClient {
    pub fn new(settings: FileSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("failed to build the CDN client")?;
        Ok(Self {
            http,
            settings: std::sync::Arc::new(settings),
        })
    }

    pub fn settings(&self) -> &FileSettings {
        &self.settings
    }

    fn sign(&self, base: &str, grant: &BlobGrant) -> SignedUrl {
        SignedUrl {
            url: format!(
                "{}{}",
                base.trim_end_matches('/'),
                self.secret().signed_path(grant)
            ),
            expires_at_ms: grant.expires_at as i64 * 1000,
        }
    }

    fn secret(&self) -> &UrlSecret {
        &self.settings.url_secret
    }

    /// A URL to upload at most the declared ciphertext size; with `sha256`, only bytes
    /// of that digest (without, the CDN measures it and signs a receipt).
    pub fn upload_url(
        &self,
        project: ProjectId,
        file: EventId,
        ciphertext_size: u64,
        sha256: Option<&str>,
    ) -> SignedUrl {
        let grant = BlobGrant {
            method: BlobMethod::Put,
            project,
            file,
            expires_at: now_s() + self.settings.upload_url_ttl.as_secs(),
            max_bytes: ciphertext_size,
            sha256: sha256.map(str::to_owned),
        };
        self.sign(&self.settings.cdn_url, &grant)
    }

    /// Whether `sig` is the CDN's signature of `receipt` (constant-time comparison).
    pub fn receipt_is_genuine(&self, receipt: &UploadReceipt, sig: &str) -> bool {
        self.secret().receipt_is_genuine(receipt, sig)
    }

    /// A URL to download the blob of `file`.
    pub fn download_url(&self, project: ProjectId, file: EventId) -> SignedUrl {
        let grant = self.own_grant(BlobMethod::Get, project, file);
        let grant = BlobGrant {
            expires_at: now_s() + self.settings.download_url_ttl.as_secs(),
            ..grant
        };
        self.sign(&self.settings.cdn_url, &grant)
    }

    fn own_grant(&self, method: BlobMethod, project: ProjectId, file: EventId) -> BlobGrant {
        BlobGrant {
            method,
            project,
            file,
            expires_at: now_s() + 60,
            max_bytes: 0,
            sha256: None,
        }
    }

    /// The stored blob's length, `None` when nothing was (fully) uploaded.
    pub async fn blob_size(
        &self,
        project: ProjectId,
        file: EventId,
    ) -> Result<Option<u64>, ApiError> {
        let url = self.sign(
            &self.settings.cdn_internal_url,
            &self.own_grant(BlobMethod::Head, project, file),
        );
        let answer = self
            .http
            .head(&url.url)
            .send()
            .await
            .map_err(|e| ApiError::CdnUnavailable(e.into()))?;
        match answer.status().as_u16() {
            404 => Ok(None),
            200 => Ok(answer
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
            other => Err(ApiError::CdnUnavailable(anyhow::anyhow!(
                "the CDN answered {other} to a blob check"
            ))),
        }
    }

    /// Removes the blob of `file` (absent already is fine).
    pub async fn remove(&self, project: ProjectId, file: EventId) -> anyhow::Result<()> {
        let url = self.sign(
            &self.settings.cdn_internal_url,
            &self.own_grant(BlobMethod::Delete, project, file),
        );
        let answer = self
            .http
            .delete(&url.url)
            .send()
            .await
            .context("failed to reach the CDN")?;
        anyhow::ensure!(
            answer.status().is_success(),
            "the CDN answered {} to a blob removal",
            answer.status()
        );
        Ok(())
    }
}

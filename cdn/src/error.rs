//! The CDN's errors, answered in the API's one JSON shape `{ "error": { "code", "message" } }`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nexysync_domain::blob_url::UrlError;
use nexysync_domain::wire::{ErrorBody, ErrorDetail};

/// Every error a CDN request can end with.
#[derive(Debug, thiserror::Error)]
pub enum CdnError {
    #[error("{0}")]
    InvalidUrl(String),
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("the body is larger than this URL allows ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("the body's SHA-256 is not the one this upload was declared with")]
    DigestMismatch,
    #[error("the upload was cut off before its end; nothing was stored")]
    UploadInterrupted,
    #[error("no such blob (never uploaded, or deleted)")]
    BlobNotFound,
    #[error("a blob is already stored under this URL: an upload URL stores once (declare the file again for a new upload)")]
    BlobExists,
    #[error("this method is not allowed here (PUT, GET, HEAD or DELETE with a signed URL)")]
    MethodNotAllowed,
    #[error("no such endpoint")]
    NoSuchEndpoint,
    #[error("internal error")]
    Storage(#[source] object_store::Error),
    #[error("internal error")]
    Disk(#[source] std::io::Error),
}

impl CdnError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidUrl(_) => (StatusCode::BAD_REQUEST, "invalid_url"),
            Self::Url(UrlError::BadSignature) => (StatusCode::FORBIDDEN, "bad_signature"),
            Self::Url(UrlError::Expired) => (StatusCode::FORBIDDEN, "url_expired"),
            Self::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::DigestMismatch => (StatusCode::UNPROCESSABLE_ENTITY, "digest_mismatch"),
            Self::UploadInterrupted => (StatusCode::BAD_REQUEST, "upload_interrupted"),
            Self::BlobNotFound => (StatusCode::NOT_FOUND, "blob_not_found"),
            Self::BlobExists => (StatusCode::CONFLICT, "blob_exists"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::NoSuchEndpoint => (StatusCode::NOT_FOUND, "not_found"),
            Self::Storage(_) | Self::Disk(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<object_store::Error> for CdnError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::BlobNotFound,
            other => Self::Storage(other),
        }
    }
}

impl IntoResponse for CdnError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            Self::Storage(cause) => tracing::error!(error = %cause, "storage failed"),
            Self::Disk(cause) => tracing::error!(error = %cause, "disk storage failed"),
            _ => {}
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: self.to_string(),
            },
        };
        (status, Json(body)).into_response()
    }
}

//! The one place errors become HTTP answers: `{ "error": { "code", "message" } }`.
//! 4xx messages explain the caller's mistake; 5xx messages say nothing internal (the
//! cause chain goes to tracing).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nexysync_domain::decide::Rejection;
use nexysync_domain::wire::{ErrorBody, ErrorDetail};
use nexysync_projections::ProjectionError;

/// Every error an API handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("request body is not valid JSON for this endpoint: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    #[error("this endpoint does not take that method; docs/api.md lists each endpoint's")]
    MethodNotAllowed,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    #[error("{0}")]
    FileQuotaExceeded(String),
    #[error("the file service is unavailable; retry shortly")]
    CdnUnavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(
        "the read models have not caught up to seq {wanted} yet (at {reached}); retry shortly"
    )]
    Lagging { wanted: u64, reached: u64 },
    #[error("not ready: {0}")]
    NotReady(&'static str),
    #[error("the event log is unavailable; retry shortly")]
    LogUnavailable(#[source] nexysync_log::LogError),
    #[error("internal error")]
    Unexpected(#[from] anyhow::Error),
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::Lagging { wanted, reached } => ApiError::Lagging { wanted, reached },
            other => ApiError::Unexpected(anyhow::Error::new(other)),
        }
    }
}

impl From<nexysync_log::LogError> for ApiError {
    fn from(e: nexysync_log::LogError) -> Self {
        use nexysync_log::LogError;
        match e {
            // The log enforces these itself, against racing writers the read models
            // have not seen yet.
            LogError::ProjectAlreadyStarted(project) => {
                ApiError::Rejected(Rejection::ProjectAlreadyExists(project))
            }
            LogError::ProjectNotStarted(project) => {
                ApiError::Rejected(Rejection::UnknownProject(project))
            }
            other => ApiError::LogUnavailable(other),
        }
    }
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::NotFound { code, .. } => (StatusCode::NOT_FOUND, code),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            Self::Gone { code, .. } => (StatusCode::GONE, code),
            Self::FileQuotaExceeded(_) => (StatusCode::PAYLOAD_TOO_LARGE, "file_quota_exceeded"),
            Self::CdnUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "cdn_unavailable"),
            Self::Rejected(rejection) => (rejection_status(rejection), rejection.code()),
            Self::Lagging { .. } => (StatusCode::SERVICE_UNAVAILABLE, "projection_lagging"),
            Self::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            Self::LogUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "log_unavailable"),
            Self::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

fn rejection_status(rejection: &Rejection) -> StatusCode {
    match rejection {
        Rejection::WrongProject { .. }
        | Rejection::ActorIsNotCaller { .. }
        | Rejection::NotAllowedForActor { .. }
        | Rejection::NotTheSender(_) => StatusCode::FORBIDDEN,
        Rejection::ProjectAlreadyExists(_)
        | Rejection::AgentNameTaken(_)
        | Rejection::AgentIdTaken(_)
        | Rejection::MessageIdTaken(_)
        | Rejection::RevisionMismatch { .. }
        | Rejection::MessageDeleted(_)
        | Rejection::AlreadyReacted(_)
        | Rejection::AlreadyRead(_)
        | Rejection::AlreadyPinned(_)
        | Rejection::NotPinned(_) => StatusCode::CONFLICT,
        Rejection::UnknownProject(_)
        | Rejection::KvKeyNotFound
        | Rejection::UnknownMessage(_)
        | Rejection::ReactionNotFound(_)
        | Rejection::FileNotFound(_) => StatusCode::NOT_FOUND,
        Rejection::ContentTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        // The request asks for what the project's policy does not allow (issue 5: a 400
        // naming the maximum).
        Rejection::TtlAboveProjectMaximum { .. } | Rejection::InvalidRetentionPolicy => {
            StatusCode::BAD_REQUEST
        }
        Rejection::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = ?anyhow_chain(&self), code, "request failed");
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

/// The error and its sources, for the log.
fn anyhow_chain(error: &ApiError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

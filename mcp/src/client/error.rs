//! The client's error boundary: everything that can go wrong talking to the API.

use nexysync_domain::ids::{AgentId, AgentName, ProjectId};

use super::message::RejectedMessage;

/// An error answer of the API, in its one shape `{ "error": { "code", "message" } }`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server refused: {message} ({code}, HTTP {status})")]
pub struct ApiError {
    pub status: u16,
    /// The stable, machine-readable code (`unauthorized`, `message_not_found`, …).
    pub code: String,
    pub message: String,
}

/// Why a client call failed. Messages say what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the key file's server `{server}` is not usable: {reason}")]
    InvalidServerUrl { server: String, reason: String },
    #[error(
        "cannot reach the NexySync server at {url} ({reason}); start it with `make up` or \
         `nexysync up`, or fix `server` in the key file"
    )]
    Unreachable { url: String, reason: String },
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the server's answer to {what} could not be read: {reason}")]
    BadResponse { what: String, reason: String },
    #[error("no agent named `{name}` in this project; known agents: {}", known_names(.known))]
    UnknownAgent {
        name: AgentName,
        known: Vec<AgentName>,
    },
    #[error(transparent)]
    Rejected(#[from] RejectedMessage),
    #[error("message content is {size} bytes; the limit is {limit} bytes")]
    ContentTooLarge { size: usize, limit: usize },
    #[error("not a usable reaction emoji: {reason}")]
    InvalidEmoji { reason: &'static str },
    #[error("ttl_s must be between 1 and {max} seconds, not {ttl_s}")]
    InvalidTtl { ttl_s: u32, max: u32 },
    #[error("ttl_s {ttl_s} is above this project's maximum of {max_ttl_s} seconds; ask for at most {max_ttl_s} (or leave ttl_s out for the project default)")]
    TtlAboveProjectMaximum { ttl_s: u32, max_ttl_s: u32 },
    #[error("invalid line range {start_line}..={end_line}: start_line must be at least 1, end_line at least start_line, and the span at most {max} lines")]
    InvalidLineRange {
        start_line: u32,
        end_line: u32,
        max: u32,
    },
    #[error(
        "the server says this token belongs to agent {found_agent} of project {found_project}, \
         but the key file is for agent {expected_agent} of project {expected_project}"
    )]
    IdentityMismatch {
        expected_project: ProjectId,
        expected_agent: AgentId,
        found_project: ProjectId,
        found_agent: AgentId,
    },
    #[error("this agent ({agent}) is not among the project's verified agents: {reason}")]
    NotRegistered { agent: AgentName, reason: String },
    #[error("{action} {path}: {reason}")]
    File {
        action: &'static str,
        path: String,
        reason: String,
    },
    #[error("the downloaded file is not what was shared: {0}")]
    FileCorrupt(#[from] nexysync_domain::crypto::file_stream::FileCryptoError),
    #[error("the file is {size} bytes; files may be at most {limit} bytes")]
    FileTooLarge { size: u64, limit: u64 },
}

fn known_names(names: &[AgentName]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    names
        .iter()
        .map(AgentName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl ClientError {
    /// The API's error code when the server answered with one.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            ClientError::Api(e) => Some(&e.code),
            _ => None,
        }
    }
}

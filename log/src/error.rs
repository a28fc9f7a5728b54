//! Errors at the log boundary.

/// What went wrong talking to the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("the NATS server has no JetStream (start nats-server with -js): {0}")]
    JetStreamUnavailable(String),
    #[error("{0}")]
    Stream(String),
    #[error("append to the log failed: {0}")]
    Append(String),
    #[error("gave up appending after {attempts} conflicting concurrent appends")]
    TooMuchContention { attempts: u32 },
    #[error("event at seq {seq} in the log is not a valid event envelope: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error("project {0} already has events; only its first event may create it")]
    ProjectAlreadyStarted(nexysync_domain::ids::ProjectId),
    #[error("project {0} has no events; its first event must create it")]
    ProjectNotStarted(nexysync_domain::ids::ProjectId),
    #[error("the NATS server has no event stream `{0}` (is NEXYSYNC_STREAM_PREFIX right?)")]
    NoStream(String),
    #[error("reading the log failed: {0}")]
    Read(String),
}

//! `nexysync audit`: verify, replay and export a project's history from the log itself.
//!
//! Every command reads the events in log order from a [`source::EventSource`] (the live
//! JetStream subject, or a bundle's `events.jsonl`) and feeds them, in order, to the
//! pure [`ProjectAuditor`] of the domain, which holds every rule; [`parallel`] spreads the
//! decoding and the signature checks of a batch over the cores. Nothing here keeps more
//! than a batch of events in memory.
//!
//! - [`verify`]: `audit verify --project P` (no key needed) and `--bundle DIR`.
//! - [`replay`]: `audit replay`: verified, then decrypted with the project key, as text or
//!   JSON lines.
//! - [`export`]: `audit export`: a self-contained bundle ([`bundle`]).
//! - [`progress`]: events/s on stderr, only when stderr is a terminal.
//!
//! A broken rule is an [`AuditFailure`] (the binary exits with status 2); anything else
//! (no server, no such project, unreadable files) is an ordinary error (status 1).

pub mod bundle;
pub mod export;
pub mod parallel;
pub mod progress;
pub mod replay;
pub mod source;
pub mod verify;

use anyhow::Context;
use nexysync_domain::audit::AuditError;
use nexysync_domain::ids::{ProjectId, Seq};
use nexysync_log::{EventLog, Prefix};

pub use nexysync_domain::audit::{AuditSummary, ProjectAuditor};

use crate::project_file::ProjectFile;
use crate::settings::Settings;

/// The history does not verify: the first broken rule, naming where.
#[derive(Debug, thiserror::Error)]
pub enum AuditFailure {
    // Not `#[from]`: that would make the cause a source too, and print it twice.
    #[error("audit failed: {0}")]
    Event(AuditError),
    #[error("audit failed: {0}")]
    Bundle(bundle::BundleError),
    #[error(
        "audit failed: the project was created (seq {seq}) with another owner key than the \
         one your key file trusts; this log is not the project your keys belong to"
    )]
    OwnerKeyMismatch { seq: Seq },
}

impl From<AuditError> for AuditFailure {
    fn from(err: AuditError) -> Self {
        Self::Event(err)
    }
}

impl From<bundle::BundleError> for AuditFailure {
    fn from(err: bundle::BundleError) -> Self {
        Self::Bundle(err)
    }
}

/// The project named on the command line: an id, or the name (or id) of a project file in
/// NEXYSYNC_HOME/projects.
pub fn resolve_project(settings: &Settings, text: &str) -> anyhow::Result<ProjectId> {
    if let Ok(id) = ProjectId::parse(text) {
        return Ok(id);
    }
    let (_, file) = ProjectFile::find(&settings.home, text)?;
    Ok(file.id)
}

/// The event log named by the settings, opened without changing anything on the server.
pub async fn open_log(settings: &Settings) -> anyhow::Result<EventLog> {
    let prefix = Prefix::parse(&settings.stream_prefix).context("invalid stream prefix")?;
    let client = async_nats::connect(&settings.nats_url)
        .await
        .with_context(|| format!("failed to connect to NATS at {}", settings.nats_url))?;
    EventLog::open(client, prefix)
        .await
        .context("failed to open the event log")
}

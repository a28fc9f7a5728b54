//! Erasing events from the log, for retention (ADR 0012): the pruner first appends a
//! tombstone that keeps each event stripped of its ciphertext, then erases the events.
//!
//! JetStream's message delete with `no_erase: false` overwrites the message's bytes in
//! the store files, not only its index entry, so the ciphertext is gone from disk too
//! (nats-server 2.9 and later).

use bytes::Bytes;
use nexysync_domain::ids::{ProjectId, Seq};
use serde::Deserialize;

use crate::{EventLog, LogError};

/// Largest tombstone the pruner should write: half the stream's message limit, leaving
/// room for the envelope around the entries.
pub const MAX_TOMBSTONE_BYTES: usize = crate::MAX_EVENT_BYTES as usize / 2;

/// The JetStream error codes of a message delete that found nothing to delete: "sequence
/// N not found" (10043, what nats-server 2.9 answers for a sequence already deleted), "no
/// message found" (10037), and a failed delete (10057) whose reason is "no message found".
const SEQUENCE_NOT_FOUND: u64 = 10043;
const NO_MESSAGE_FOUND: u64 = 10037;
const DELETE_FAILED: u64 = 10057;

#[derive(Debug, Deserialize)]
struct DeleteAnswer {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    error: Option<DeleteError>,
}

#[derive(Debug, Deserialize)]
struct DeleteError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

impl DeleteError {
    fn is_nothing_to_delete(&self) -> bool {
        match self.err_code {
            SEQUENCE_NOT_FOUND | NO_MESSAGE_FOUND => true,
            DELETE_FAILED => self.description.contains("no message found"),
            _ => false,
        }
    }
}

impl EventLog {
    /// The stored bytes of `project`'s event at `seq`, if the log still holds one there.
    pub async fn stored_event(
        &self,
        project: ProjectId,
        seq: Seq,
    ) -> Result<Option<Bytes>, LogError> {
        match self.stream().get_raw_message(seq.0).await {
            Ok(message) if message.subject.as_str() == self.prefix().project_subject(project) => {
                Ok(Some(message.payload))
            }
            Ok(_) => Ok(None),
            Err(e) => {
                use async_nats::jetstream::stream::RawMessageErrorKind;
                match e.kind() {
                    RawMessageErrorKind::NoMessageFound => Ok(None),
                    _ => Err(LogError::Stream(format!(
                        "failed to read the event at seq {}: {e}",
                        seq.0
                    ))),
                }
            }
        }
    }

    /// Erases the event at `seq`, overwriting its bytes. `Ok(false)`: there was none
    /// (already erased), so erasing again is harmless.
    pub async fn erase(&self, seq: Seq) -> Result<bool, LogError> {
        let subject = format!("STREAM.MSG.DELETE.{}", self.prefix().stream_name());
        let request = serde_json::json!({ "seq": seq.0, "no_erase": false });
        let answer: DeleteAnswer = self
            .jetstream()
            .request(subject, &request)
            .await
            .map_err(|e| LogError::Stream(format!("failed to erase seq {}: {e}", seq.0)))?;
        match answer.error {
            None => Ok(answer.success),
            Some(error) if error.is_nothing_to_delete() => Ok(false),
            Some(error) => Err(LogError::Stream(format!(
                "failed to erase seq {}: {}",
                seq.0, error.description
            ))),
        }
    }
}

//! Ordered reads of the log, from any sequence, for projectors, the SSE hub and audits.

use std::pin::Pin;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use nexysync_domain::event::Envelope;
use nexysync_domain::ids::{ProjectId, Seq};

use crate::{EventLog, LogError};

/// One event as read from the stream, not yet decoded.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub seq: Seq,
    pub subject: String,
    pub payload: Bytes,
}

impl RawEvent {
    /// Decodes the stored envelope.
    pub fn envelope(&self) -> Result<Envelope, LogError> {
        serde_json::from_slice(&self.payload).map_err(|e| LogError::Corrupt {
            seq: self.seq.0,
            reason: e.to_string(),
        })
    }
}

/// Events in log order; an error is a broken connection that the reader may retry.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<RawEvent, LogError>> + Send>>;

impl EventLog {
    /// Every event of every project with a sequence greater than `after`, then live.
    pub async fn read_all(&self, after: Seq) -> Result<EventStream, LogError> {
        self.read(self.prefix().all_events_subject(), after).await
    }

    /// One project's events with a sequence greater than `after`, then live.
    pub async fn read_project(
        &self,
        project: ProjectId,
        after: Seq,
    ) -> Result<EventStream, LogError> {
        self.read(self.prefix().project_subject(project), after)
            .await
    }

    /// The sequence of `project`'s last event, or `None` when it has none: where a
    /// reader of the project's history as it stands now stops.
    pub async fn last_seq_of(&self, project: ProjectId) -> Result<Option<Seq>, LogError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let subject = self.prefix().project_subject(project);
        match self
            .stream()
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(message) => Ok(Some(Seq(message.sequence))),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(LogError::Read(format!(
                "failed to read the last event of project {project}: {e}"
            ))),
        }
    }

    async fn read(&self, filter_subject: String, after: Seq) -> Result<EventStream, LogError> {
        let deliver_policy = DeliverPolicy::ByStartSequence {
            start_sequence: after.0 + 1,
        };
        let consumer = self
            .stream()
            .create_consumer(pull::OrderedConfig {
                filter_subject,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| LogError::Read(format!("failed to create an ordered consumer: {e}")))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| LogError::Read(format!("failed to start reading the log: {e}")))?;
        Ok(Box::pin(messages.map(|next| {
            let message = next.map_err(|e| LogError::Read(e.to_string()))?;
            let info = message
                .info()
                .map_err(|e| LogError::Read(format!("message without stream info: {e}")))?;
            Ok(RawEvent {
                seq: Seq(info.stream_sequence),
                subject: message.message.subject.to_string(),
                payload: message.message.payload.clone(),
            })
        })))
    }
}

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
    /// The subject it was appended to, which names its project (shares the message's
    /// bytes: no copy is made for each event read).
    pub subject: async_nats::Subject,
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
            let seq = message
                .message
                .reply
                .as_deref()
                .and_then(stream_sequence)
                .ok_or_else(|| {
                    LogError::Read(format!(
                        "message without stream info (reply subject {:?})",
                        message.message.reply
                    ))
                })?;
            Ok(RawEvent {
                seq: Seq(seq),
                subject: message.message.subject.clone(),
                payload: message.message.payload.clone(),
            })
        })))
    }
}

/// The stream sequence a delivered message's reply subject names, read without the rest
/// of what `Message::info` parses (the ordered consumer has parsed it all once already:
/// twice was a few hundredths of a rebuild). The subject is `$JS.ACK.` and then (NATS
/// ADR-15) either `<stream>.<consumer>.<delivered>.<stream seq>.…` (7 tokens, the older
/// form) or `<domain>.<account hash>.<stream>.<consumer>.<delivered>.<stream seq>.…` (9
/// or more). `Message::info` refuses 8 tokens; so does this.
fn stream_sequence(reply: &str) -> Option<u64> {
    let tokens = reply.strip_prefix("$JS.ACK.")?;
    // The candidates for either form, found in one pass.
    let (mut older, mut newer, mut count) = (None, None, 0usize);
    for token in tokens.split('.') {
        match count {
            3 => older = Some(token),
            5 => newer = Some(token),
            _ => {}
        }
        count += 1;
    }
    match count {
        7 => older,
        9.. => newer,
        _ => None,
    }?
    .parse()
    .ok()
}

#[cfg(test)]
mod tests {
    use super::stream_sequence;

    #[test]
    fn the_stream_sequence_is_read_from_either_form_of_reply_subject() {
        assert_eq!(
            stream_sequence("$JS.ACK.NS_EVENTS.c0nsumer.1.4711.12.1733000000000000000.3"),
            Some(4711)
        );
        assert_eq!(
            stream_sequence("$JS.ACK._.ACCHASH.NS_EVENTS.c0nsumer.1.4711.12.1733000000000000000.3"),
            Some(4711)
        );
        assert_eq!(
            stream_sequence(
                "$JS.ACK._.ACCHASH.NS_EVENTS.c0nsumer.1.4711.12.1733000000000000000.3.r4nd0m"
            ),
            Some(4711)
        );
    }

    #[test]
    fn a_reply_subject_of_another_shape_names_no_sequence() {
        for reply in [
            "_INBOX.abc",
            "$JS.ACK.NS_EVENTS.c0nsumer.1.4711",
            "$JS.ACK._.ACCHASH.NS_EVENTS.c0nsumer.1.4711.12.17",
            "$JS.ACK.NS_EVENTS.c0nsumer.1.x.12.1733000000000000000.3",
            "$JS.ACK._.ACCHASH.NS_EVENTS.c0nsumer.1.-4.12.1733000000000000000.3",
        ] {
            assert_eq!(stream_sequence(reply), None, "{reply}");
        }
    }
}

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
    /// Decodes the stored envelope. Its UTF-8 is checked once, whole, and the text parsed:
    /// from bytes, the parser checks every string on its own, which cost more than the rest
    /// of scanning them. Bytes that are not UTF-8 throughout are parsed as bytes, as before:
    /// the parser does not check the strings it skips (a field it does not know), so it
    /// decodes some of those, and the same events decode either way.
    pub fn envelope(&self) -> Result<Envelope, LogError> {
        let decoded = match std::str::from_utf8(&self.payload) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(&self.payload),
        };
        decoded.map_err(|e| LogError::Corrupt {
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
    use super::{stream_sequence, RawEvent};
    use nexysync_domain::ids::Seq;

    fn raw(payload: Vec<u8>) -> RawEvent {
        RawEvent {
            seq: Seq(7),
            subject: async_nats::Subject::from_static("NS_EVENTS.p"),
            payload: payload.into(),
        }
    }

    /// A stored event with `extra` spliced in as its first field.
    fn golden_with(extra: &[u8]) -> Vec<u8> {
        let golden = include_bytes!("../../schemas/golden/message_sent.v1.json");
        let text = std::str::from_utf8(golden).unwrap().trim();
        let mut spliced = b"{".to_vec();
        spliced.extend_from_slice(extra);
        spliced.extend_from_slice(&text.as_bytes()[1..]);
        spliced
    }

    #[test]
    fn an_event_decodes_the_same_whether_or_not_it_is_utf8_throughout() {
        let plain = golden_with(b"");
        let decoded = raw(plain.clone()).envelope().unwrap();
        assert_eq!(
            decoded,
            serde_json::from_slice::<nexysync_domain::event::Envelope>(&plain).unwrap()
        );
        // The parser skips a field it does not know without checking its UTF-8.
        let skipped = raw(golden_with(b"\"unknown\":\"\xff\xfe\",")).envelope();
        assert_eq!(skipped.unwrap(), decoded);
        // In a field it reads, it does not decode.
        let mut bad_kind = golden_with(b"");
        let at = bad_kind
            .windows(13)
            .position(|w| w == b"\"message_sent")
            .unwrap();
        bad_kind[at + 1] = 0xff;
        let refused = raw(bad_kind).envelope().unwrap_err().to_string();
        assert!(refused.contains('7'), "names the sequence: {refused}");
    }

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

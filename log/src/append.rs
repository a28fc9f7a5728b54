//! Appending events: conditional on the project's last sequence, idempotent by event id,
//! and chained to the project's previous event.

use std::sync::Arc;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use nexysync_domain::event::{ChainLink, Envelope, EventBody};
use nexysync_domain::ids::{ProjectId, Seq};
use tokio::sync::Mutex;
use tracing::{debug, instrument};

use crate::{EventLog, LogError};

/// Header naming the event kind, so readers can skip kinds without parsing the body.
pub const HEADER_EVENT_KIND: &str = "Nexysync-Kind";

/// Conflicts tolerated before an append gives up (another writer keeps winning).
const MAX_ATTEMPTS: u32 = 16;

/// What this process believes is the last event of a project.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Head {
    /// Not known yet, or invalidated by a conflict: read it from the stream.
    Unknown,
    /// The project has no event yet.
    Empty,
    At(ChainLink),
}

/// The result of an append.
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    pub seq: Seq,
    /// The event id was already in the log (a retried request); nothing new was written.
    pub duplicate: bool,
    /// The event as stored, with its chain link (meaningless when `duplicate`).
    pub event: Envelope,
}

impl EventLog {
    /// Appends `event` to its project's subject. Sets `prev` to the project's last event
    /// and makes the append conditional on it; on a conflict (another writer appended
    /// first) re-reads the head and tries again. A retried event id is answered with the
    /// original sequence and `duplicate: true`. A project's subject starts with its
    /// `ProjectCreated` and holds only one.
    #[instrument(skip_all, fields(project = %event.project, event = %event.id))]
    pub async fn append(&self, mut event: Envelope) -> Result<AppendOutcome, LogError> {
        // Canonical signing bytes cost more than the rest of the hash: outside the lock.
        let signed = event.signing_bytes();
        event.prev = None;
        let unchained = event.to_json();
        let slot = self.head_slot(event.project).await;
        // Appends to one project are serialised in this process: each must know the last.
        let mut head = slot.lock().await;
        let subject = self.prefix().project_subject(event.project);
        let kind = event.body.kind().as_str();
        for attempt in 1..=MAX_ATTEMPTS {
            if let Head::Unknown = *head {
                *head = self.read_head(event.project).await?;
            }
            let opens_the_project = matches!(event.body, EventBody::ProjectCreated(_));
            let (expected, prev) = match *head {
                Head::At(_) if opens_the_project => {
                    return Err(LogError::ProjectAlreadyStarted(event.project))
                }
                Head::At(link) => (link.seq.0, Some(link)),
                _ if !opens_the_project => return Err(LogError::ProjectNotStarted(event.project)),
                _ => (0, None),
            };
            event.prev = prev;
            let publish = PublishMessage::build()
                .payload(chained_payload(&unchained, prev).into())
                // Scoped by project: an id reused in another project is not its duplicate.
                .message_id(format!("{}.{}", event.project, event.id))
                .expected_last_subject_sequence(expected)
                .header(HEADER_EVENT_KIND, kind);
            let acked = match self
                .jetstream()
                .send_publish(subject.clone(), publish)
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match acked {
                Ok(ack) if ack.duplicate => {
                    debug!(seq = ack.sequence, "event id already in the log");
                    return Ok(AppendOutcome {
                        seq: Seq(ack.sequence),
                        duplicate: true,
                        event,
                    });
                }
                Ok(ack) => {
                    let seq = Seq(ack.sequence);
                    *head = Head::At(ChainLink {
                        seq,
                        hash: event.hash_with_signing_bytes(&signed),
                    });
                    return Ok(AppendOutcome {
                        seq,
                        duplicate: false,
                        event,
                    });
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    debug!(
                        attempt,
                        "another writer appended first; re-reading the head"
                    );
                    *head = Head::Unknown;
                    // Writers racing on one project back off a little, at random, so
                    // one of them wins the next round.
                    let jitter = rand_jitter_ms(attempt);
                    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
                }
                Err(e) => {
                    *head = Head::Unknown;
                    return Err(LogError::Append(e.to_string()));
                }
            }
        }
        Err(LogError::TooMuchContention {
            attempts: MAX_ATTEMPTS,
        })
    }

    async fn head_slot(&self, project: ProjectId) -> Arc<Mutex<Head>> {
        let mut heads = self.inner.heads.lock().await;
        heads
            .entry(project)
            .or_insert_with(|| Arc::new(Mutex::new(Head::Unknown)))
            .clone()
    }

    /// Reads the project's last event from the stream.
    async fn read_head(&self, project: ProjectId) -> Result<Head, LogError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let subject = self.prefix().project_subject(project);
        match self
            .stream()
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(message) => {
                let event: Envelope =
                    serde_json::from_slice(&message.payload).map_err(|e| LogError::Corrupt {
                        seq: message.sequence,
                        reason: e.to_string(),
                    })?;
                Ok(Head::At(ChainLink {
                    seq: Seq(message.sequence),
                    hash: event.hash(),
                }))
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(Head::Empty),
            Err(e) => Err(LogError::Read(format!(
                "failed to read the last event of project {project}: {e}"
            ))),
        }
    }
}

/// Up to `2^attempt` ms (capped at 64), from the clock's nanoseconds: spread enough for
/// racing writers without a random number generator.
fn rand_jitter_ms(attempt: u32) -> u64 {
    let cap = 1u64 << attempt.min(6);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    nanos % cap
}

/// The stored JSON of an event with its chain link, from its JSON without one: `prev` is
/// the envelope's last field, so it is spliced in rather than serialising the whole event
/// again while the project's lock is held.
fn chained_payload(unchained: &[u8], prev: Option<ChainLink>) -> Vec<u8> {
    let Some(link) = prev else {
        return unchained.to_vec();
    };
    let link = serde_json::to_string(&link).expect("a chain link always serialises");
    let mut out = Vec::with_capacity(unchained.len() + link.len() + 8);
    out.extend_from_slice(&unchained[..unchained.len() - 1]);
    out.extend_from_slice(b",\"prev\":");
    out.extend_from_slice(link.as_bytes());
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use nexysync_domain::crypto::SigningKey;
    use nexysync_domain::event::{Actor, Draft, EventBody, ProjectCreated};
    use nexysync_domain::ids::{ProjectId, ProjectName};

    use super::*;

    #[test]
    fn a_spliced_chain_link_serialises_exactly_as_the_envelope_would() {
        let owner = SigningKey::generate();
        let mut event = Draft::new(
            ProjectId::generate(),
            Actor::Owner,
            EventBody::ProjectCreated(ProjectCreated {
                name: ProjectName::parse("p").expect("valid"),
                owner_key: owner.public_key(),
                retention: Default::default(),
            }),
        )
        .sign(&owner);
        let unchained = event.to_json();
        assert_eq!(chained_payload(&unchained, None), unchained);
        let link = ChainLink {
            seq: Seq(41),
            hash: event.hash(),
        };
        event.prev = Some(link);
        assert_eq!(chained_payload(&unchained, Some(link)), event.to_json());
    }
}

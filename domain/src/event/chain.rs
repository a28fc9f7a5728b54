//! Verifying a project's hash chain, event by event, in log order.

use super::{ChainLink, Envelope, EventHash};
use crate::ids::Seq;

/// A link of the chain that does not hold, naming the sequence where it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("event at seq {seq} has no `prev` but is not the project's first event")]
    MissingLink { seq: Seq },
    #[error("event at seq {seq} links to seq {claims}, but the log holds no earlier event of the project")]
    PrecedingEventMissing { seq: Seq, claims: Seq },
    #[error("event at seq {seq} links to seq {found}, but the previous event is seq {expected}")]
    WrongPreviousSeq { seq: Seq, expected: Seq, found: Seq },
    #[error("event at seq {seq} links to a hash that is not the hash of seq {prev_seq}")]
    HashMismatch { seq: Seq, prev_seq: Seq },
}

impl ChainError {
    /// The sequence of the event whose link does not hold.
    pub fn seq(&self) -> Seq {
        match self {
            Self::MissingLink { seq }
            | Self::PrecedingEventMissing { seq, .. }
            | Self::WrongPreviousSeq { seq, .. }
            | Self::HashMismatch { seq, .. } => *seq,
        }
    }
}

/// Walks events in order and checks each `prev` against the event before it.
#[derive(Debug, Clone, Default)]
pub struct ChainVerifier {
    last: Option<ChainLink>,
    /// Reading part of a log: the first event's link cannot be checked.
    resuming: bool,
}

impl ChainVerifier {
    /// A verifier for a log read from its first event.
    pub fn from_genesis() -> Self {
        Self {
            last: None,
            resuming: false,
        }
    }

    /// A verifier for a log read from part-way, with nothing known before it: the first
    /// event's link is taken as given.
    pub fn resuming() -> Self {
        Self {
            last: None,
            resuming: true,
        }
    }

    /// A verifier that trusts `link` as the last verified event (to resume part-way).
    pub fn after(link: ChainLink) -> Self {
        Self {
            last: Some(link),
            resuming: false,
        }
    }

    /// Checks `event`, found at `seq`, and returns its hash.
    pub fn push(&mut self, seq: Seq, event: &Envelope) -> Result<EventHash, ChainError> {
        self.push_with_signing_bytes(seq, event, &event.signing_bytes())
    }

    /// [`ChainVerifier::push`], given the event's [`Envelope::signing_bytes`] computed
    /// earlier (an auditor needs them for the signature too).
    pub fn push_with_signing_bytes(
        &mut self,
        seq: Seq,
        event: &Envelope,
        signed: &[u8],
    ) -> Result<EventHash, ChainError> {
        self.push_hashed(seq, event, event.hash_with_signing_bytes(signed))
    }

    /// [`ChainVerifier::push`], given the event's [`Envelope::hash`] computed earlier
    /// (an auditor hashes events on several threads, then checks the links in order).
    pub fn push_hashed(
        &mut self,
        seq: Seq,
        event: &Envelope,
        hash: EventHash,
    ) -> Result<EventHash, ChainError> {
        match (&self.last, &event.prev) {
            (None, None) => {}
            (None, Some(_)) if self.resuming => {}
            (None, Some(link)) => {
                return Err(ChainError::PrecedingEventMissing {
                    seq,
                    claims: link.seq,
                })
            }
            (Some(_), None) => return Err(ChainError::MissingLink { seq }),
            (Some(last), Some(link)) => {
                if link.seq != last.seq {
                    return Err(ChainError::WrongPreviousSeq {
                        seq,
                        expected: last.seq,
                        found: link.seq,
                    });
                }
                if link.hash != last.hash {
                    return Err(ChainError::HashMismatch {
                        seq,
                        prev_seq: last.seq,
                    });
                }
            }
        }
        self.last = Some(ChainLink { seq, hash });
        Ok(hash)
    }

    /// Takes `link` as the head without having read it: an event links across a gap in
    /// the log, which the caller must prove some other way (a retention tombstone).
    pub fn bridge(&mut self, link: ChainLink) {
        self.last = Some(link);
    }

    /// The last verified event.
    pub fn head(&self) -> Option<ChainLink> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{message_from, Project};

    fn chain_of(n: usize) -> (Project, Vec<(Seq, Envelope)>) {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut events = Vec::new();
        let mut last: Option<ChainLink> = None;
        for i in 0..n {
            let mut event = message_from(&project, &alice, &format!("message {i}"));
            event.prev = last;
            let seq = Seq(10 + 3 * i as u64);
            last = Some(ChainLink {
                seq,
                hash: event.hash(),
            });
            events.push((seq, event));
        }
        (project, events)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (_, events) = chain_of(4);
        let mut verifier = ChainVerifier::from_genesis();
        for (seq, event) in &events {
            verifier.push(*seq, event).unwrap();
        }
    }

    #[test]
    fn a_dropped_event_breaks_the_chain_at_the_next_one() {
        let (_, mut events) = chain_of(4);
        events.remove(1);
        let mut verifier = ChainVerifier::from_genesis();
        verifier.push(events[0].0, &events[0].1).unwrap();
        assert_eq!(
            verifier.push(events[1].0, &events[1].1),
            Err(ChainError::WrongPreviousSeq {
                seq: Seq(16),
                expected: Seq(10),
                found: Seq(13)
            })
        );
    }

    #[test]
    fn a_changed_event_breaks_the_link_after_it() {
        let (_, mut events) = chain_of(3);
        events[1].1.at += 1;
        let mut verifier = ChainVerifier::from_genesis();
        verifier.push(events[0].0, &events[0].1).unwrap();
        verifier.push(events[1].0, &events[1].1).unwrap();
        assert_eq!(
            verifier.push(events[2].0, &events[2].1),
            Err(ChainError::HashMismatch {
                seq: Seq(16),
                prev_seq: Seq(13)
            })
        );
    }

    #[test]
    fn a_link_removed_from_a_later_event_is_caught() {
        let (_, mut events) = chain_of(2);
        events[1].1.prev = None;
        let mut verifier = ChainVerifier::from_genesis();
        verifier.push(events[0].0, &events[0].1).unwrap();
        assert_eq!(
            verifier.push(events[1].0, &events[1].1),
            Err(ChainError::MissingLink { seq: Seq(13) })
        );
    }
}

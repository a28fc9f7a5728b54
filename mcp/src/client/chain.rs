//! What a client can check of the project's hash chain from the events it happens to see.
//!
//! An agent sees only part of the log (its inbox, broadcasts, registrations), so it cannot
//! walk the chain from genesis like an auditor. It remembers the hash of every event it
//! has verified and checks each link it can: an event's `prev` against the remembered
//! event at `prev.seq`, an event against links that later events already made to it, two
//! different events at one sequence, and two events claiming the same predecessor (a fork).

use std::collections::BTreeMap;

use nexysync_domain::event::{Envelope, EventHash};
use nexysync_domain::ids::Seq;

/// How many sequences to remember; older ones are forgotten first.
const CAPACITY: usize = 16_384;

/// A link of the chain that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the event at seq {seq} has no link to a previous event (`prev`)")]
    MissingLink { seq: Seq },
    #[error("the event at seq {seq} links forward to seq {prev_seq}")]
    LinkNotBackwards { seq: Seq, prev_seq: Seq },
    #[error("the event at seq {seq} links to a hash that is not the hash of the event seen at seq {prev_seq}")]
    HashMismatch { seq: Seq, prev_seq: Seq },
    #[error("the event at seq {seq} is not the event that seq {linked_from} links to")]
    LinkedHashMismatch { seq: Seq, linked_from: Seq },
    #[error("two different events were served at seq {seq}")]
    Conflict { seq: Seq },
    #[error(
        "the events at seq {seq} and seq {other} both link to seq {prev_seq} (the log forked)"
    )]
    Fork { seq: Seq, other: Seq, prev_seq: Seq },
}

/// Hashes of verified events by sequence, and the links later events made.
#[derive(Debug, Default)]
pub struct ChainMemory {
    hashes: BTreeMap<Seq, EventHash>,
    /// `prev.seq` -> (the hash it must have, the seq of the event that said so).
    links: BTreeMap<Seq, (EventHash, Seq)>,
}

impl ChainMemory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `event`, served at `seq`, against everything remembered, and remembers it.
    /// Nothing is remembered when a check fails.
    pub fn observe(&mut self, seq: Seq, event: &Envelope) -> Result<EventHash, ChainError> {
        let hash = event.hash();
        if let Some(seen) = self.hashes.get(&seq) {
            if *seen != hash {
                return Err(ChainError::Conflict { seq });
            }
        }
        if let Some((expected, linked_from)) = self.links.get(&seq) {
            if *expected != hash {
                return Err(ChainError::LinkedHashMismatch {
                    seq,
                    linked_from: *linked_from,
                });
            }
        }
        let link = event.prev.ok_or(ChainError::MissingLink { seq })?;
        if link.seq >= seq {
            return Err(ChainError::LinkNotBackwards {
                seq,
                prev_seq: link.seq,
            });
        }
        if let Some(prev_hash) = self.hashes.get(&link.seq) {
            if *prev_hash != link.hash {
                return Err(ChainError::HashMismatch {
                    seq,
                    prev_seq: link.seq,
                });
            }
        }
        if let Some((claimed, other)) = self.links.get(&link.seq) {
            if *other != seq {
                return Err(ChainError::Fork {
                    seq,
                    other: *other,
                    prev_seq: link.seq,
                });
            }
            if *claimed != link.hash {
                return Err(ChainError::Conflict { seq });
            }
        }
        self.hashes.insert(seq, hash);
        self.links.insert(link.seq, (link.hash, seq));
        while self.hashes.len() > CAPACITY {
            self.hashes.pop_first();
        }
        while self.links.len() > CAPACITY {
            self.links.pop_first();
        }
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::test_events::{Project, Sent};
    use nexysync_domain::event::ChainLink;

    #[test]
    fn consecutive_events_with_intact_links_are_accepted_in_any_order() {
        let project = Project::new();
        let alice = project.agent("alice");
        let chain = project.chain(&alice, 3);
        let mut memory = ChainMemory::new();
        memory.observe(chain[2].seq, &chain[2].event).unwrap();
        memory.observe(chain[0].seq, &chain[0].event).unwrap();
        memory.observe(chain[1].seq, &chain[1].event).unwrap();
        // Seeing an event again is fine.
        memory.observe(chain[1].seq, &chain[1].event).unwrap();
    }

    #[test]
    fn an_event_altered_after_a_later_event_linked_to_it_is_caught() {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut chain = project.chain(&alice, 2);
        let mut memory = ChainMemory::new();
        memory.observe(chain[1].seq, &chain[1].event).unwrap();
        chain[0].event.at += 1;
        assert_eq!(
            memory.observe(chain[0].seq, &chain[0].event),
            Err(ChainError::LinkedHashMismatch {
                seq: chain[0].seq,
                linked_from: chain[1].seq
            })
        );
    }

    #[test]
    fn a_link_to_a_different_previous_event_is_caught() {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut chain = project.chain(&alice, 2);
        let mut memory = ChainMemory::new();
        memory.observe(chain[0].seq, &chain[0].event).unwrap();
        let other = project.message(&alice, Sent::broadcast(), "other").event;
        chain[1].event.prev = Some(ChainLink {
            seq: chain[0].seq,
            hash: other.hash(),
        });
        assert_eq!(
            memory.observe(chain[1].seq, &chain[1].event),
            Err(ChainError::HashMismatch {
                seq: chain[1].seq,
                prev_seq: chain[0].seq
            })
        );
    }

    #[test]
    fn two_events_at_one_seq_or_on_one_predecessor_are_caught() {
        let project = Project::new();
        let alice = project.agent("alice");
        let chain = project.chain(&alice, 2);
        let mut memory = ChainMemory::new();
        memory.observe(chain[1].seq, &chain[1].event).unwrap();

        let mut impostor = project.message(&alice, Sent::broadcast(), "impostor").event;
        impostor.prev = chain[1].event.prev;
        assert_eq!(
            memory.observe(chain[1].seq, &impostor),
            Err(ChainError::Conflict { seq: chain[1].seq })
        );
        assert!(matches!(
            memory.observe(Seq(chain[1].seq.0 + 1), &impostor),
            Err(ChainError::Fork { .. })
        ));
    }

    #[test]
    fn an_event_without_a_link_is_refused() {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut event = project.message(&alice, Sent::broadcast(), "hi");
        event.event.prev = None;
        assert_eq!(
            ChainMemory::new().observe(event.seq, &event.event),
            Err(ChainError::MissingLink { seq: event.seq })
        );
    }
}

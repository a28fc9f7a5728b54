//! Auditing a run of events at once: decoding, hashing and signature checks spread over
//! the machine's cores, the order-dependent rules applied in log order by the one
//! [`ProjectAuditor`]. The verdict is the sequential auditor's: every event verified, or
//! the broken rule of the lowest sequence.

use bytes::Bytes;
use nexysync_domain::audit::{AuditError, PreparedEvent, ProjectAuditor, SignatureCheck};
use nexysync_domain::event::{Envelope, EventHash};
use nexysync_domain::ids::Seq;

/// Events audited together: enough to keep every core busy, few enough to hold.
pub const BATCH: usize = 1024;
/// Signatures verified in one batch equation: past a few hundred the gain levels off
/// (512 to 2,048 measured no better).
const SIGNATURE_RUN: usize = 256;

/// An event that passed every rule.
#[derive(Debug)]
pub struct AuditedEvent {
    pub seq: Seq,
    pub event: Envelope,
    pub hash: EventHash,
}

/// The cores to spread an audit over.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The events of a batch decoded, put in their canonical form and hashed: the part of an
/// audit that needs no auditor, so it can run ahead of the one that does.
pub type Prepared = Vec<Result<PreparedEvent, AuditError>>;

/// The first stage of an audit of a batch (consecutive events of the project as stored),
/// on `threads` threads.
pub fn prepare(batch: Vec<(Seq, Bytes)>, threads: usize) -> Prepared {
    par_map(batch, threads, |(seq, stored)| {
        PreparedEvent::from_json(seq, &stored)
    })
}

/// The second stage: the rules in order with `auditor`, which has seen everything before
/// the batch, then the signatures on `threads` threads. After an error the auditor is
/// spent, as after [`ProjectAuditor::push`].
pub fn audit_prepared(
    auditor: &mut ProjectAuditor,
    prepared: Prepared,
    threads: usize,
) -> Result<Vec<AuditedEvent>, AuditError> {
    // The rules in order, up to the first broken one; the signatures of the events before
    // it still decide which failure comes first.
    let mut ready = Vec::with_capacity(prepared.len());
    let mut checks = Vec::with_capacity(prepared.len());
    let mut broken = None;
    for event in prepared {
        match event.and_then(|event| Ok((auditor.push_prepared(&event)?, event))) {
            Ok((check, event)) => {
                checks.push(check);
                ready.push(event);
            }
            Err(err) => {
                broken = Some(err);
                break;
            }
        }
    }
    let checked: Vec<(SignatureCheck, &PreparedEvent)> = checks.into_iter().zip(&ready).collect();
    let runs = checked.chunks(SIGNATURE_RUN).collect();
    let verdicts = par_map(runs, threads, SignatureCheck::verify_all);
    if let Some(forged) = verdicts.into_iter().find_map(Result::err) {
        return Err(forged);
    }
    if let Some(err) = broken {
        return Err(err);
    }
    Ok(ready
        .into_iter()
        .map(|prepared| AuditedEvent {
            seq: prepared.seq,
            hash: prepared.hash(),
            event: prepared.event,
        })
        .collect())
}

/// `items` mapped by `f` on up to `threads` threads, in order.
fn par_map<T: Send, U: Send>(items: Vec<T>, threads: usize, f: impl Fn(T) -> U + Sync) -> Vec<U> {
    let threads = threads.min(items.len()).max(1);
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let share = items.len().div_ceil(threads);
    let mut items = items.into_iter();
    let shares: Vec<Vec<T>> = (0..threads)
        .map(|_| items.by_ref().take(share).collect())
        .collect();
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = shares
            .into_iter()
            .map(|share| scope.spawn(move || share.into_iter().map(f).collect::<Vec<U>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("an audit worker panicked"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use nexysync_domain::audit::AuditError;
    use nexysync_domain::crypto::{AgentToken, SigningKey};
    use nexysync_domain::event::{
        Actor, AgentRegistered, ChainLink, Draft, EventBody, MessageSent, ProjectCreated,
    };
    use nexysync_domain::ids::{AgentId, AgentName, ProjectId, ProjectName};

    use super::*;

    /// Both stages, one after the other.
    fn audit_batch(
        auditor: &mut ProjectAuditor,
        batch: Vec<(Seq, Bytes)>,
        threads: usize,
    ) -> Result<Vec<AuditedEvent>, AuditError> {
        audit_prepared(auditor, prepare(batch, threads), threads)
    }

    /// A project, one agent, then `messages` messages of its, chained, as stored.
    fn history(messages: usize) -> (ProjectId, Vec<Envelope>) {
        let project = ProjectId::generate();
        let (owner, key, agent) = (
            SigningKey::generate(),
            SigningKey::generate(),
            AgentId::generate(),
        );
        let mut events = vec![
            Draft::new(
                project,
                Actor::Owner,
                EventBody::ProjectCreated(ProjectCreated {
                    name: ProjectName::parse("p").unwrap(),
                    owner_key: owner.public_key(),
                    retention: Default::default(),
                }),
            )
            .sign(&owner),
            Draft::new(
                project,
                Actor::Owner,
                EventBody::AgentRegistered(AgentRegistered {
                    agent,
                    name: AgentName::parse("ada").unwrap(),
                    signing_key: key.public_key(),
                    token_hash: AgentToken::generate().hash(),
                }),
            )
            .sign(&owner),
        ];
        for _ in 0..messages {
            let sent = MessageSent {
                to: None,
                reply_to: None,
                ttl_s: None,
                topic_ix: None,
            };
            events.push(
                Draft::new(project, Actor::Agent(agent), EventBody::MessageSent(sent)).sign(&key),
            );
        }
        (project, events)
    }

    /// `events` chained as the log would (seq 1, 2, …), as stored.
    fn stored(events: &mut [Envelope]) -> Vec<(Seq, Bytes)> {
        let mut prev: Option<ChainLink> = None;
        events
            .iter_mut()
            .enumerate()
            .map(|(i, event)| {
                event.prev = prev;
                let seq = Seq(i as u64 + 1);
                prev = Some(ChainLink {
                    seq,
                    hash: event.hash(),
                });
                (seq, Bytes::from(event.to_json()))
            })
            .collect()
    }

    #[test]
    fn a_sound_history_verifies_on_any_number_of_threads() {
        let (project, mut events) = history(300);
        let batch = stored(&mut events);
        for threads in [1, 2, 4] {
            let mut auditor = ProjectAuditor::new(project);
            let audited = audit_batch(&mut auditor, batch.clone(), threads).unwrap();
            assert_eq!(audited.len(), 302);
            assert_eq!(
                auditor.summary().head.map(|h| h.hash),
                Some(audited[301].hash)
            );
        }
    }

    #[test]
    fn the_lowest_broken_sequence_is_reported_whichever_rule_it_breaks() {
        // A forged signature at seq 41 also breaks the chain at seq 42 (its hash changed):
        // the chain is checked in order first, the signatures afterwards on other
        // threads, and still seq 41 is reported.
        let (project, mut events) = history(300);
        let mut batch = stored(&mut events);
        events[40].sig.flip_bit_for_test(3);
        batch[40].1 = Bytes::from(events[40].to_json());
        let mut auditor = ProjectAuditor::new(project);
        let failure = audit_batch(&mut auditor, batch, 2).unwrap_err();
        assert!(
            matches!(failure, AuditError::ForgedSignature { seq: Seq(41), .. }),
            "{failure:?}"
        );
        // A broken link alone, late in the batch, is reported at its own sequence.
        let (project, mut events) = history(300);
        let mut batch = stored(&mut events);
        batch[200].1 = Bytes::from(tampered_link(&events[200], &events[100]).to_json());
        let mut auditor = ProjectAuditor::new(project);
        let failure = audit_batch(&mut auditor, batch, 2).unwrap_err();
        assert_eq!(failure.seq(), Seq(201), "{failure:?}");
    }

    fn tampered_link(event: &Envelope, other: &Envelope) -> Envelope {
        let mut tampered = event.clone();
        tampered.prev = other.prev;
        tampered
    }

    #[test]
    fn par_map_keeps_the_order_whatever_the_threads() {
        let items: Vec<u32> = (0..1000).collect();
        for threads in [1, 2, 3, 8] {
            let doubled = par_map(items.clone(), threads, |n| n * 2);
            assert_eq!(doubled, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        }
        assert!(par_map(Vec::<u32>::new(), 4, |n| n).is_empty());
    }
}

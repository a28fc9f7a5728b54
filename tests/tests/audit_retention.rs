//! `nexysync audit verify` over the gaps retention leaves, against the real nats-server
//! and through the real binary: a gap covered by an honest tombstone verifies (live and
//! as a bundle); tampering done outside the product (a gap with no tombstone, a tombstone
//! that covers less than it claims, a tombstone's hash changed) is caught, naming the
//! sequence.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use nexysync_domain::crypto::{AgentToken, ProjectKey, SigningKey};
use nexysync_domain::event::{
    emoji_index, fields, Actor, AgentRegistered, Draft, Envelope, ErasedEvent, EventBody,
    EventsErased, MessageSent, ProjectCreated, Reaction,
};
use nexysync_domain::ids::{AgentId, AgentName, EventId, ProjectId, ProjectName, Seq};
use nexysync_log::EventLog;
use nexysync_tests::processes::{nexysync_output, CliOutput};
use nexysync_tests::{nats_url, TestEnv};

/// A project with alice's mortal message (1 s), her reaction to it, and a message after.
struct Mortal {
    id: ProjectId,
    /// (seq, event) of the mortal message and of the reaction.
    doomed: Vec<(Seq, Envelope)>,
    /// The message after them.
    after: Seq,
    home: tempfile::TempDir,
}

impl Mortal {
    async fn new(log: &EventLog) -> Self {
        let id = ProjectId::generate();
        let owner = SigningKey::generate();
        let keys = ProjectKey::generate().content_keys();
        let created = Draft::new(
            id,
            Actor::Owner,
            EventBody::ProjectCreated(ProjectCreated {
                name: ProjectName::parse("retained").unwrap(),
                owner_key: owner.public_key(),
                retention: Default::default(),
            }),
        )
        .sign(&owner);
        log.append(created).await.unwrap();
        let (alice, key) = (AgentId::generate(), SigningKey::generate());
        let registered = Draft::new(
            id,
            Actor::Owner,
            EventBody::AgentRegistered(AgentRegistered {
                agent: alice,
                name: AgentName::parse("alice").unwrap(),
                signing_key: key.public_key(),
                token_hash: AgentToken::generate().hash(),
            }),
        )
        .sign(&owner);
        log.append(registered).await.unwrap();
        let message = |ttl_s| {
            Draft::new(
                id,
                Actor::Agent(alice),
                EventBody::MessageSent(MessageSent {
                    to: None,
                    reply_to: None,
                    ttl_s,
                    topic_ix: None,
                }),
            )
            .seal(&keys, fields::BODY, b"short-lived")
            .sign(&key)
        };
        let mortal = message(Some(1));
        let mortal_id = mortal.id;
        let mortal_seq = log.append(mortal.clone()).await.unwrap().seq;
        let reaction = Draft::new(
            id,
            Actor::Agent(alice),
            EventBody::ReactionAdded(Reaction {
                message: mortal_id,
                emoji_ix: emoji_index(&keys, mortal_id, "👍"),
            }),
        )
        .seal(&keys, fields::EMOJI, "👍".as_bytes())
        .sign(&key);
        let reaction_seq = log.append(reaction).await.unwrap().seq;
        let after = log.append(message(None)).await.unwrap().seq;
        let mut doomed = Vec::new();
        for seq in [mortal_seq, reaction_seq] {
            let stored = log.stored_event(id, seq).await.unwrap().unwrap();
            doomed.push((seq, serde_json::from_slice(&stored).unwrap()));
        }
        Self {
            id,
            doomed,
            after,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// The tombstone the pruner would write for `entries`, dated after the expiry.
    fn tombstone(&self, entries: Vec<ErasedEvent>) -> Envelope {
        let at = self.doomed[0].1.at + 2_000;
        Envelope::tombstone(
            EventId::generate(),
            self.id,
            at,
            EventsErased { erased: entries },
        )
    }

    fn honest_entries(&self) -> Vec<ErasedEvent> {
        self.doomed
            .iter()
            .map(|(seq, event)| ErasedEvent::strip(*seq, event))
            .collect()
    }

    /// Appends `tombstone` (if any), then erases the doomed events: the pruner's order.
    async fn prune(&self, log: &EventLog, tombstone: Option<Envelope>) -> Option<Seq> {
        let at = match tombstone {
            Some(tombstone) => Some(log.append(tombstone).await.unwrap().seq),
            None => None,
        };
        for (seq, _) in &self.doomed {
            assert!(log.erase(*seq).await.unwrap(), "seq {seq} erased");
        }
        at
    }

    fn envs(&self, env: &TestEnv) -> Vec<(&'static str, String)> {
        let home = self.home.path().display().to_string();
        vec![
            ("NEXYSYNC_NATS_URL", nats_url()),
            ("NEXYSYNC_STREAM_PREFIX", env.prefix.clone()),
            ("NEXYSYNC_HOME", home.clone()),
            ("NEXYSYNC_DATA_DIR", home),
        ]
    }

    async fn verify(&self, env: &TestEnv) -> CliOutput {
        let id = self.id.to_string();
        nexysync_output(&["audit", "verify", "--project", &id], &self.envs(env)).await
    }
}

/// The run failed as an audit failure (status 2), naming `seq` and saying `rule`.
fn assert_caught_at(run: &CliOutput, seq: Seq, rule: &str) {
    assert_eq!(run.code, Some(2), "an audit failure: {run:?}");
    assert!(
        run.stderr.contains(&format!("seq {seq}")),
        "names seq {seq}: {}",
        run.stderr
    );
    assert!(run.stderr.contains(rule), "says `{rule}`: {}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_covered_by_an_honest_tombstone_verifies_live_and_as_a_bundle() {
    let env = TestEnv::new();
    let log = env.log().await;
    let mortal = Mortal::new(&log).await;
    mortal
        .prune(&log, Some(mortal.tombstone(mortal.honest_entries())))
        .await;
    let run = mortal.verify(&env).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains("2 expired event(s) were erased"),
        "{run:?}"
    );

    let bundle = mortal.home.path().join("bundle");
    let id = mortal.id.to_string();
    let envs = mortal.envs(&env);
    let exported = nexysync_output(
        &[
            "audit",
            "export",
            "--project",
            &id,
            "--out",
            bundle.to_str().unwrap(),
        ],
        &envs,
    )
    .await;
    assert_eq!(exported.code, Some(0), "{exported:?}");
    let verified = nexysync_output(
        &["audit", "verify", "--bundle", bundle.to_str().unwrap()],
        &envs,
    )
    .await;
    assert_eq!(verified.code, Some(0), "{verified:?}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_no_tombstone_covers_is_caught_at_the_event_after_it() {
    let env = TestEnv::new();
    let log = env.log().await;
    let mortal = Mortal::new(&log).await;
    mortal.prune(&log, None).await;
    let run = mortal.verify(&env).await;
    let reaction = mortal.doomed[1].0;
    assert_caught_at(
        &run,
        mortal.after,
        &format!("links to seq {reaction}, which is not in the log, and no retention tombstone covers it"),
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_that_covers_less_than_was_erased_is_caught() {
    let env = TestEnv::new();
    let log = env.log().await;
    let mortal = Mortal::new(&log).await;
    let mut entries = mortal.honest_entries();
    entries.pop(); // the reaction is erased, but not listed
    mortal.prune(&log, Some(mortal.tombstone(entries))).await;
    let run = mortal.verify(&env).await;
    let reaction = mortal.doomed[1].0;
    assert_caught_at(
        &run,
        mortal.after,
        &format!("links to seq {reaction}, which is not in the log"),
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_with_a_changed_hash_is_caught_naming_the_erased_sequence() {
    let env = TestEnv::new();
    let log = env.log().await;
    let mortal = Mortal::new(&log).await;
    let mut entries = mortal.honest_entries();
    // Another event's hash in place of the message's.
    entries[0].hash = entries[1].hash;
    let tombstone = mortal
        .prune(&log, Some(mortal.tombstone(entries)))
        .await
        .unwrap();
    let run = mortal.verify(&env).await;
    let message = mortal.doomed[0].0;
    assert_caught_at(
        &run,
        tombstone,
        &format!("lists a hash for seq {message} that is not the hash of the event it lists"),
    );
    env.cleanup().await;
}

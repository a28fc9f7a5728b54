//! `nexysync audit` against the real nats-server, through the real binary: an untouched
//! history verifies, replays decrypted and exports to a bundle that verifies alone; and
//! tampering done outside the product (an event deleted from the stream, one appended
//! with another key than its actor's, a byte changed, two events swapped, a manifest
//! edited, the last event cut off) is caught, naming the sequence.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nexysync_domain::crypto::{AgentToken, ProjectKey, SigningKey};
use nexysync_domain::event::{
    fields, Actor, AgentRegistered, ChainLink, Draft, Envelope, EventBody, MessageSent,
    ProjectCreated,
};
use nexysync_domain::ids::{AgentId, AgentName, ProjectId, ProjectName, Seq};
use nexysync_log::EventLog;
use nexysync_tests::processes::{nexysync, nexysync_output, CliOutput};
use nexysync_tests::{nats_url, TestEnv};
use serde_json::{json, Value};

const MESSAGES: usize = 6;

/// A project written to the log as the API writes it.
struct Seeded {
    id: ProjectId,
    key: ProjectKey,
    owner: SigningKey,
    alice: (AgentId, SigningKey, AgentToken),
    /// Sequence of every event, in order.
    seqs: Vec<Seq>,
    home: tempfile::TempDir,
}

impl Seeded {
    async fn new(log: &EventLog) -> Self {
        let id = ProjectId::generate();
        let owner = SigningKey::generate();
        let key = ProjectKey::generate();
        let mut seqs = Vec::new();
        let created = Draft::new(
            id,
            Actor::Owner,
            EventBody::ProjectCreated(ProjectCreated {
                name: ProjectName::parse("audited").unwrap(),
                owner_key: owner.public_key(),
                retention: Default::default(),
            }),
        )
        .sign(&owner);
        seqs.push(log.append(created).await.unwrap().seq);
        let mut agents = Vec::new();
        for name in ["alice", "bob"] {
            let (agent, signing, token) = (
                AgentId::generate(),
                SigningKey::generate(),
                AgentToken::generate(),
            );
            let registered = Draft::new(
                id,
                Actor::Owner,
                EventBody::AgentRegistered(AgentRegistered {
                    agent,
                    name: AgentName::parse(name).unwrap(),
                    signing_key: signing.public_key(),
                    token_hash: token.hash(),
                }),
            )
            .sign(&owner);
            seqs.push(log.append(registered).await.unwrap().seq);
            agents.push((agent, signing, token));
        }
        let bob = agents[1].0;
        let alice = agents.swap_remove(0);
        let keys = key.content_keys();
        for i in 0..MESSAGES {
            let message = Draft::new(
                id,
                Actor::Agent(alice.0),
                EventBody::MessageSent(MessageSent {
                    to: (i % 2 == 0).then_some(bob),
                    reply_to: None,
                    ttl_s: None,
                    topic_ix: None,
                }),
            )
            .seal(&keys, fields::BODY, format!("audit body {i}").as_bytes())
            .sign(&alice.1);
            seqs.push(log.append(message).await.unwrap().seq);
        }
        let seeded = Self {
            id,
            key,
            owner,
            alice,
            seqs,
            home: tempfile::tempdir().unwrap(),
        };
        seeded.write_project_file();
        seeded
    }

    /// The owner's project file, as `nexysync project create` writes it.
    fn write_project_file(&self) {
        let dir = self.home.path().join("projects");
        std::fs::create_dir_all(&dir).unwrap();
        let file = json!({
            "version": 1,
            "server": "http://127.0.0.1:1",
            "id": self.id,
            "name": "audited",
            "project_key": self.key.to_base64(),
            "owner_signing_key": self.owner.to_base64(),
        });
        std::fs::write(dir.join("audited.json"), file.to_string()).unwrap();
    }

    /// Alice's key file, as `nexysync agent add` writes it.
    fn write_key_file(&self, path: &Path) {
        let file = json!({
            "version": 1,
            "server": "http://127.0.0.1:1",
            "project": { "id": self.id, "name": "audited", "owner_key": self.owner.public_key() },
            "agent": { "id": self.alice.0, "name": "alice" },
            "token": self.alice.2.expose_secret(),
            "project_key": self.key.to_base64(),
            "signing_key": self.alice.1.to_base64(),
        });
        std::fs::write(path, file.to_string()).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
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
}

/// The run failed as an audit failure (status 2), naming `seq`.
fn assert_caught_at(run: &CliOutput, seq: u64, rule: &str) {
    assert_eq!(run.code, Some(2), "an audit failure: {run:?}");
    assert!(
        run.stderr.contains(&format!("seq {seq}")),
        "names seq {seq}: {}",
        run.stderr
    );
    assert!(run.stderr.contains(rule), "says `{rule}`: {}", run.stderr);
}

/// Exports the project and returns the bundle's directory.
async fn export(seeded: &Seeded, env: &TestEnv, root: &Path) -> std::path::PathBuf {
    let out = root.join("bundle");
    let id = seeded.id.to_string();
    let printed = nexysync(
        &[
            "audit",
            "export",
            "--project",
            &id,
            "--out",
            out.to_str().unwrap(),
        ],
        &seeded.envs(env),
    )
    .await;
    assert!(printed.contains(&format!("Exported {} events", seeded.seqs.len())));
    out
}

fn lines_of(bundle: &Path) -> Vec<String> {
    std::fs::read_to_string(bundle.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(bundle: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(bundle.join("events.jsonl"), text).unwrap();
}

async fn verify_bundle(seeded: &Seeded, env: &TestEnv, bundle: &Path) -> CliOutput {
    nexysync_output(
        &["audit", "verify", "--bundle", bundle.to_str().unwrap()],
        &seeded.envs(env),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_history_verifies_replays_decrypted_and_exports_a_bundle_that_verifies() {
    let env = TestEnv::new();
    let log = env.log().await;
    let seeded = Seeded::new(&log).await;
    let envs = seeded.envs(&env);
    let events = seeded.seqs.len();
    let head = seeded.seqs.last().unwrap().0;

    for project in [seeded.id.to_string(), "audited".to_owned()] {
        let printed = nexysync(&["audit", "verify", "--project", &project], &envs).await;
        assert!(printed.contains(&format!("events: {events}")), "{printed}");
        assert!(printed.contains("agents: 2"), "{printed}");
        assert!(
            printed.contains(&format!("head:   seq {head}")),
            "{printed}"
        );
    }

    let root = tempfile::tempdir().unwrap();
    let key_file = root.path().join("key");
    seeded.write_key_file(&key_file);
    let jsonl = nexysync(
        &[
            "audit",
            "replay",
            "--key-file",
            key_file.to_str().unwrap(),
            "--format",
            "jsonl",
        ],
        &envs,
    )
    .await;
    let replayed: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replayed.len(), events);
    assert_eq!(replayed[0]["kind"], "project_created");
    assert_eq!(replayed[3]["actor_name"], "alice");
    assert_eq!(replayed[3]["to_name"], "bob");
    assert_eq!(replayed[3]["body"], "audit body 0");
    assert_eq!(
        replayed[events - 1]["body"],
        format!("audit body {}", MESSAGES - 1)
    );

    // The owner's project file reads too, and --since only prints from there on.
    let project_file = seeded.home.path().join("projects/audited.json");
    let since = seeded.seqs[4].0.to_string();
    let text = nexysync(
        &[
            "audit",
            "replay",
            "--project",
            "audited",
            "--key-file",
            project_file.to_str().unwrap(),
            "--since",
            &since,
        ],
        &envs,
    )
    .await;
    assert!(!text.contains("audit body 0"), "{text}");
    assert!(text.contains("alice -> everyone"), "{text}");
    assert!(text.contains("| audit body 1"), "{text}");

    let bundle = export(&seeded, &env, root.path()).await;
    assert_eq!(lines_of(&bundle).len(), events);
    // The bundle stands alone: no NATS at all.
    let mut offline = envs.clone();
    offline[0].1 = "nats://127.0.0.1:1".into();
    let printed = nexysync(
        &["audit", "verify", "--bundle", bundle.to_str().unwrap()],
        &offline,
    )
    .await;
    assert!(printed.contains("manifest matches"), "{printed}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_deleted_straight_from_the_stream_is_caught_at_the_event_after_it() {
    let env = TestEnv::new();
    let log = env.log().await;
    let seeded = Seeded::new(&log).await;
    let (deleted, next) = (seeded.seqs[5].0, seeded.seqs[6].0);
    let stream = log
        .jetstream()
        .get_stream(format!("{}_events", env.prefix))
        .await
        .unwrap();
    assert!(stream.delete_message(deleted).await.unwrap());

    let run = nexysync_output(
        &["audit", "verify", "--project", &seeded.id.to_string()],
        &seeded.envs(&env),
    )
    .await;
    assert_caught_at(&run, next, &format!("links to seq {deleted}"));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_appended_with_a_key_that_is_not_the_actors_is_caught() {
    let env = TestEnv::new();
    let log = env.log().await;
    let seeded = Seeded::new(&log).await;
    // Published straight to the subject, chained properly: only the signature is wrong.
    let subject = format!("{}.events.{}", env.prefix, seeded.id);
    let last = log
        .jetstream()
        .get_stream(format!("{}_events", env.prefix))
        .await
        .unwrap()
        .get_last_raw_message_by_subject(&subject)
        .await
        .unwrap();
    let previous: Envelope = serde_json::from_slice(&last.payload).unwrap();
    let mallory = SigningKey::generate();
    let mut forged = Draft::new(
        seeded.id,
        Actor::Agent(seeded.alice.0),
        EventBody::MessageSent(MessageSent {
            to: None,
            reply_to: None,
            ttl_s: None,
            topic_ix: None,
        }),
    )
    .seal(
        &seeded.key.content_keys(),
        fields::BODY,
        b"alice never said this",
    )
    .sign(&mallory);
    forged.prev = Some(ChainLink {
        seq: Seq(last.sequence),
        hash: previous.hash(),
    });
    let ack = log
        .jetstream()
        .publish(subject, forged.to_json().into())
        .await
        .unwrap()
        .await
        .unwrap();

    let run = nexysync_output(
        &["audit", "verify", "--project", &seeded.id.to_string()],
        &seeded.envs(&env),
    )
    .await;
    assert_caught_at(&run, ack.sequence, "not signed by the key registered");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_with_a_byte_changed_is_caught_naming_the_sequence() {
    let env = TestEnv::new();
    let log = env.log().await;
    let seeded = Seeded::new(&log).await;
    let root = tempfile::tempdir().unwrap();
    let bundle = export(&seeded, &env, root.path()).await;

    let mut lines = lines_of(&bundle);
    let target = 4;
    let at = lines[target].find("\"c\":\"").unwrap() + 5;
    let mut bytes = lines[target].clone().into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    lines[target] = String::from_utf8(bytes).unwrap();
    write_lines(&bundle, &lines);

    let run = verify_bundle(&seeded, &env, &bundle).await;
    assert_caught_at(
        &run,
        seeded.seqs[target].0,
        "not signed by the key registered",
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_with_two_events_swapped_is_caught_naming_the_sequence() {
    let env = TestEnv::new();
    let log = env.log().await;
    let seeded = Seeded::new(&log).await;
    let root = tempfile::tempdir().unwrap();
    let bundle = export(&seeded, &env, root.path()).await;

    let mut lines = lines_of(&bundle);
    lines.swap(4, 5);
    write_lines(&bundle, &lines);

    let run = verify_bundle(&seeded, &env, &bundle).await;
    // seq[5]'s line comes first and links past seq[3]: that could be a retention gap, so
    // it is held open (ADR 0012); seq[4]'s line after it is out of order.
    assert_caught_at(
        &run,
        seeded.seqs[4].0,
        &format!(
            "comes after seq {}: the log is out of order",
            seeded.seqs[5].0
        ),
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_with_a_tampered_manifest_or_a_cut_off_end_is_caught() {
    let env = TestEnv::new();
    let log = env.log().await;
    let seeded = Seeded::new(&log).await;
    let root = tempfile::tempdir().unwrap();
    let bundle = export(&seeded, &env, root.path()).await;
    let manifest_path = bundle.join("manifest.json");
    let original: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();

    // Each claim of the manifest is checked against the events.
    for (field, value) in [
        ("events", json!(seeded.seqs.len() + 1)),
        ("last_seq", json!(seeded.seqs.last().unwrap().0 + 1)),
        ("head_hash", json!(hex::encode([7u8; 32]))),
        ("events_sha256", json!(hex::encode([7u8; 32]))),
    ] {
        let mut manifest = original.clone();
        manifest[field] = value;
        std::fs::write(&manifest_path, manifest.to_string()).unwrap();
        let run = verify_bundle(&seeded, &env, &bundle).await;
        assert_eq!(run.code, Some(2), "{field}: {run:?}");
        assert!(
            run.stderr.contains(&format!("manifest says {field}")),
            "{field}: {}",
            run.stderr
        );
    }

    // The last event cut off: every remaining link holds, the manifest does not.
    std::fs::write(&manifest_path, original.to_string()).unwrap();
    let mut lines = lines_of(&bundle);
    lines.pop();
    write_lines(&bundle, &lines);
    let run = verify_bundle(&seeded, &env, &bundle).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("manifest says events"),
        "{}",
        run.stderr
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_with_keys_that_trust_another_owner_is_refused() {
    let env = TestEnv::new();
    let log = env.log().await;
    let seeded = Seeded::new(&log).await;
    let root = tempfile::tempdir().unwrap();
    let key_file = root.path().join("key");
    seeded.write_key_file(&key_file);
    let mut file: Value = serde_json::from_slice(&std::fs::read(&key_file).unwrap()).unwrap();
    file["project"]["owner_key"] = json!(SigningKey::generate().public_key());
    std::fs::write(&key_file, file.to_string()).unwrap();

    let run = nexysync_output(
        &["audit", "replay", "--key-file", key_file.to_str().unwrap()],
        &seeded.envs(&env),
    )
    .await;
    assert_caught_at(&run, seeded.seqs[0].0, "another owner key");
    assert!(run.stdout.is_empty(), "nothing printed: {}", run.stdout);
    env.cleanup().await;
}

/// Appends alice's reaction, read mark, pin, unpin and deletion of her first message.
async fn append_message_state(
    seeded: &mut Seeded,
    log: &EventLog,
) -> nexysync_domain::ids::EventId {
    use nexysync_domain::event::{emoji_index, MessageTarget, Reaction};
    let message = log
        .read_project(seeded.id, Seq(seeded.seqs[3].0 - 1))
        .await
        .unwrap();
    let message = futures::StreamExt::next(&mut Box::pin(message))
        .await
        .unwrap()
        .unwrap()
        .envelope()
        .unwrap()
        .id;
    let keys = seeded.key.content_keys();
    let reaction = Reaction {
        message,
        emoji_ix: emoji_index(&keys, message, "🚀"),
    };
    let target = MessageTarget { message };
    for body in [
        EventBody::ReactionAdded(reaction.clone()),
        EventBody::ReactionRemoved(reaction),
        EventBody::MessageRead(target.clone()),
        EventBody::MessagePinned(target.clone()),
        EventBody::MessageUnpinned(target.clone()),
        EventBody::MessageDeleted(target),
    ] {
        let mut draft = Draft::new(seeded.id, Actor::Agent(seeded.alice.0), body.clone());
        if matches!(body, EventBody::ReactionAdded(_)) {
            draft = draft.seal(&keys, fields::EMOJI, "🚀".as_bytes());
        }
        let event = draft.sign(&seeded.alice.1);
        seeded.seqs.push(log.append(event).await.unwrap().seq);
    }
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_reads_pins_and_a_deletion_verify_and_replay_decrypted() {
    let env = TestEnv::new();
    let log = env.log().await;
    let mut seeded = Seeded::new(&log).await;
    let message = append_message_state(&mut seeded, &log).await;
    let envs = seeded.envs(&env);
    let events = seeded.seqs.len();
    let printed = nexysync(&["audit", "verify", "--project", "audited"], &envs).await;
    assert!(printed.contains(&format!("events: {events}")), "{printed}");

    let root = tempfile::tempdir().unwrap();
    let key_file = root.path().join("key");
    seeded.write_key_file(&key_file);
    let key_arg = key_file.to_str().unwrap();
    let jsonl = nexysync(
        &[
            "audit",
            "replay",
            "--key-file",
            key_arg,
            "--format",
            "jsonl",
        ],
        &envs,
    )
    .await;
    let replayed: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let state = &replayed[events - 6..];
    let kinds: Vec<&str> = state.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "reaction_added",
            "reaction_removed",
            "message_read",
            "message_pinned",
            "message_unpinned",
            "message_deleted"
        ]
    );
    assert_eq!(state[0]["emoji"], "🚀");
    assert_eq!(state[0]["emoji_matches_index"], true);
    assert_eq!(state[1]["emoji_ix"], state[0]["emoji_ix"]);
    for line in state {
        assert_eq!(line["message"], message.to_string());
        assert_eq!(line["actor_name"], "alice");
    }
    let text = nexysync(&["audit", "replay", "--key-file", key_arg], &envs).await;
    assert!(
        text.contains(&format!("alice reacted 🚀 to {message}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("alice deleted message {message}")),
        "{text}"
    );
    // The log keeps what was said: the auditor still reads the deleted message's body.
    assert!(text.contains("| audit body 0"), "{text}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_appended_for_another_agent_than_the_sender_is_caught() {
    let env = TestEnv::new();
    let log = env.log().await;
    let seeded = Seeded::new(&log).await;
    // Mallory is registered by the owner; her deletion of alice's message is well signed,
    // but the API would never have appended it.
    let mallory = (AgentId::generate(), SigningKey::generate());
    let registered = Draft::new(
        seeded.id,
        Actor::Owner,
        EventBody::AgentRegistered(AgentRegistered {
            agent: mallory.0,
            name: AgentName::parse("mallory").unwrap(),
            signing_key: mallory.1.public_key(),
            token_hash: AgentToken::generate().hash(),
        }),
    )
    .sign(&seeded.owner);
    log.append(registered).await.unwrap();
    let first = log
        .read_project(seeded.id, Seq(seeded.seqs[3].0 - 1))
        .await
        .unwrap();
    let message = futures::StreamExt::next(&mut Box::pin(first))
        .await
        .unwrap()
        .unwrap()
        .envelope()
        .unwrap()
        .id;
    let deletion = Draft::new(
        seeded.id,
        Actor::Agent(mallory.0),
        EventBody::MessageDeleted(nexysync_domain::event::MessageTarget { message }),
    )
    .sign(&mallory.1);
    let seq = log.append(deletion).await.unwrap().seq;
    let run = nexysync_output(
        &["audit", "verify", "--project", &seeded.id.to_string()],
        &seeded.envs(&env),
    )
    .await;
    assert_caught_at(&run, seq.0, "is not its sender");
    env.cleanup().await;
}

#[tokio::test]
async fn a_profile_update_verifies_and_replays_decrypted() {
    let env = TestEnv::new();
    let log = env.log().await;
    let mut seeded = Seeded::new(&log).await;
    let keys = seeded.key.content_keys();
    let profile = Draft::new(
        seeded.id,
        Actor::Agent(seeded.alice.0),
        EventBody::AgentProfileUpdated(Default::default()),
    )
    .seal(&keys, fields::ROLE, b"auditor-visible role")
    .seal(&keys, fields::DESCRIPTION, b"keeps the books")
    .sign(&seeded.alice.1);
    seeded.seqs.push(log.append(profile).await.unwrap().seq);
    let envs = seeded.envs(&env);
    let events = seeded.seqs.len();

    let printed = nexysync(&["audit", "verify", "--project", "audited"], &envs).await;
    assert!(printed.contains(&format!("events: {events}")), "{printed}");

    let root = tempfile::tempdir().unwrap();
    let key_file = root.path().join("key");
    seeded.write_key_file(&key_file);
    let key_file = key_file.to_str().unwrap();
    let jsonl = nexysync(
        &[
            "audit",
            "replay",
            "--key-file",
            key_file,
            "--format",
            "jsonl",
        ],
        &envs,
    )
    .await;
    let last: Value = serde_json::from_str(jsonl.lines().last().unwrap()).unwrap();
    assert_eq!(last["kind"], "agent_profile_updated");
    assert_eq!(last["actor_name"], "alice");
    assert_eq!(last["role"], "auditor-visible role");
    assert_eq!(last["description"], "keeps the books");
    let text = nexysync(&["audit", "replay", "--key-file", key_file], &envs).await;
    assert!(
        text.contains("alice set its role: auditor-visible role"),
        "{text}"
    );
    assert!(text.contains("description: keeps the books"), "{text}");
    env.cleanup().await;
}

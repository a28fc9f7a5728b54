//! Golden files: the stored shape of each event kind, version 1, frozen.
//!
//! `schemas/golden/` holds a tiny project's log (created, one agent registered, one
//! message), chained and signed. Old shapes must keep parsing, verifying and hashing the
//! same for as long as they can be in a log. Regenerate (only when adding a kind) with
//! `NEXYSYNC_BLESS=1 cargo test -p nexysync-domain --test golden`.
//!
//! The KV kinds came later: `kv_set.v1.json` and `kv_deleted.v1.json` continue the same
//! chain (seq 4 and 5) without touching the older files. The golden agent's private key
//! was not kept, so they are signed by a fixed test key ([`KV_AGENT_KEY`]). Regenerate
//! only them with `NEXYSYNC_BLESS_KV=1`.
//!
//! `ref_shared.v1.json` continues the chain at seq 6 in the same way (same actor, same
//! fixed key); regenerate only it with `NEXYSYNC_BLESS_REF=1`.
//!
//! The message-state files ([`STATE_FILES`]: a reaction added and taken back, the message
//! marked read, pinned, unpinned, then deleted by its sender) continue it at seq 7 to 12,
//! all about the golden message (seq 3), same actor and key; regenerate only them with
//! `NEXYSYNC_BLESS_STATE=1`. `agent_profile_updated.v1.json` (role and description
//! sealed) continues it at seq 13 the same way; regenerate only it with
//! `NEXYSYNC_BLESS_PROFILE=1`.
//! `file_shared.v1.json` and `file_deleted.v1.json` continue it at seq 14 and 15 (same
//! actor, same key); regenerate only them with `NEXYSYNC_BLESS_FILE=1`.
//!
//! `project_created.v1.json` is version 1 of its kind, read through the upcast to the
//! current type; its bytes, signature and hash are still the stored ones. Version 2
//! (with a retention policy) starts a second, tiny chain: `project_created.v2.json` (seq 1)
//! and `retention_set.v1.json` (seq 2), signed by [`V2_OWNER_KEY`]; regenerate only them
//! with `NEXYSYNC_BLESS_V2=1`. `events_erased.v1.json` is the pruner's tombstone at seq 4
//! of that chain, for a message at seq 3 that no file holds (regenerate it with
//! `NEXYSYNC_BLESS_ERASED=1`).

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use nexysync_domain::crypto::{AgentToken, ProjectKey, SigningKey};
use nexysync_domain::event::{
    emoji_index, fields, Actor, AgentProfileUpdated, AgentRegistered, ChainLink, ChainVerifier,
    Draft, Envelope, ErasedEvent, EventBody, EventsErased, FileDeleted, FileShared, KvDeleted,
    KvSet, MessageSent, MessageTarget, ProjectCreated, Reaction, RefShared, RetentionPolicy,
    KV_NAMESPACE,
};
use nexysync_domain::ids::{AgentId, AgentName, EventId, ProjectId, ProjectName, Seq};

const FILES: [&str; 3] = [
    "project_created.v1.json",
    "agent_registered.v1.json",
    "message_sent.v1.json",
];
const KV_FILES: [&str; 2] = ["kv_set.v1.json", "kv_deleted.v1.json"];
const REF_FILES: [&str; 1] = ["ref_shared.v1.json"];
const STATE_FILES: [&str; 6] = [
    "reaction_added.v1.json",
    "reaction_removed.v1.json",
    "message_read.v1.json",
    "message_pinned.v1.json",
    "message_unpinned.v1.json",
    "message_deleted.v1.json",
];
/// The golden reaction's emoji.
const GOLDEN_EMOJI: &str = "🚀";
const PROFILE_FILES: [&str; 1] = ["agent_profile_updated.v1.json"];
const FILE_FILES: [&str; 2] = ["file_shared.v1.json", "file_deleted.v1.json"];
const V2_FILES: [&str; 2] = ["project_created.v2.json", "retention_set.v1.json"];
/// A tombstone continuing the version 2 chain at seq 4: the pruner erased seq 3, a
/// message with a one-minute TTL signed by [`KV_AGENT_KEY`], which no file holds any more.
const ERASED_FILE: &str = "events_erased.v1.json";
/// The owner key of the version 2 golden project (32-byte seed); it signs nothing else.
const V2_OWNER_KEY: &str = "Z29sZGVuLXYyLW93bmVyLXNpZ25pbmcta2V5LTMyYiE=";
/// The signing key of the KV golden events (32-byte seed); it signs nothing else.
const KV_AGENT_KEY: &str = "Z29sZGVuLWt2LWFnZW50LXNpZ25pbmcta2V5LTMyYiE=";
/// The golden project's key; it protects nothing but these examples.
const PROJECT_KEY: &str = "Z29sZGVuLWZpbGVzLXByb2plY3Qta2V5LTMyLWJ5dGU=";

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/golden")
}

fn bless() {
    let keys = ProjectKey::from_base64(PROJECT_KEY).unwrap().content_keys();
    let project = ProjectId::generate();
    let owner = SigningKey::generate();
    let agent = AgentId::generate();
    let agent_key = SigningKey::generate();
    let mut events = vec![
        Draft::new(
            project,
            Actor::Owner,
            EventBody::ProjectCreated(ProjectCreated {
                name: ProjectName::parse("golden").unwrap(),
                owner_key: owner.public_key(),
                retention: Default::default(),
            }),
        )
        .sign_at_version(&owner, 1),
        Draft::new(
            project,
            Actor::Owner,
            EventBody::AgentRegistered(AgentRegistered {
                agent,
                name: AgentName::parse("alice").unwrap(),
                signing_key: agent_key.public_key(),
                token_hash: AgentToken::generate().hash(),
            }),
        )
        .sign(&owner),
        Draft::new(
            project,
            Actor::Agent(agent),
            EventBody::MessageSent(MessageSent {
                to: None,
                reply_to: None,
                ttl_s: Some(3600),
                topic_ix: Some(keys.blind_index("topic", "golden")),
            }),
        )
        .seal(&keys, fields::BODY, b"hello from the golden files")
        .seal(&keys, fields::TOPIC, b"golden")
        .sign(&agent_key),
    ];
    let mut prev: Option<ChainLink> = None;
    for (i, event) in events.iter_mut().enumerate() {
        event.prev = prev;
        prev = Some(ChainLink {
            seq: Seq(i as u64 + 1),
            hash: event.hash(),
        });
    }
    std::fs::create_dir_all(golden_dir()).unwrap();
    for (file, event) in FILES.iter().zip(&events) {
        let pretty = serde_json::to_string_pretty(event).unwrap();
        std::fs::write(golden_dir().join(file), pretty + "\n").unwrap();
    }
}

/// Builds the KV events after the stored chain, leaving the older files as they are.
fn bless_kv() {
    let keys = ProjectKey::from_base64(PROJECT_KEY).unwrap().content_keys();
    let older = load_files(&FILES);
    let message = &older[2];
    let agent_key = SigningKey::from_base64(KV_AGENT_KEY).unwrap();
    let key_ix = keys.blind_index(KV_NAMESPACE, "lease:src/golden.rs");
    let mut events = vec![
        Draft::new(
            message.project,
            message.actor,
            EventBody::KvSet(KvSet {
                key_ix: key_ix.clone(),
                expected_revision: Some(0),
                ttl_s: Some(600),
            }),
        )
        .seal(&keys, fields::KEY, b"lease:src/golden.rs")
        .seal(&keys, fields::VALUE, b"alice until 12:30")
        .sign(&agent_key),
        Draft::new(
            message.project,
            message.actor,
            EventBody::KvDeleted(KvDeleted {
                key_ix,
                expected_revision: Some(4),
            }),
        )
        .sign(&agent_key),
    ];
    let mut prev = ChainLink {
        seq: Seq(3),
        hash: message.hash(),
    };
    for (i, event) in events.iter_mut().enumerate() {
        event.prev = Some(prev);
        prev = ChainLink {
            seq: Seq(i as u64 + 4),
            hash: event.hash(),
        };
    }
    for (file, event) in KV_FILES.iter().zip(&events) {
        let pretty = serde_json::to_string_pretty(event).unwrap();
        std::fs::write(golden_dir().join(file), pretty + "\n").unwrap();
    }
}

/// Builds the code-reference event after the KV events, leaving every older file as it is.
fn bless_ref() {
    let keys = ProjectKey::from_base64(PROJECT_KEY).unwrap().content_keys();
    let mut older = load_files(&FILES);
    older.extend(load_files(&KV_FILES));
    let last = &older[4];
    let agent_key = SigningKey::from_base64(KV_AGENT_KEY).unwrap();
    let mut event = Draft::new(
        last.project,
        last.actor,
        EventBody::RefShared(RefShared {
            to: None,
            start_line: 12,
            end_line: 14,
        }),
    )
    .seal(&keys, fields::PATH, b"src/golden.rs")
    .seal(&keys, fields::SNIPPET, b"fn golden() -> u32 {\n    42\n}")
    .seal(&keys, fields::LANGUAGE, b"rust")
    .seal(&keys, fields::COMMIT, b"main")
    .seal(&keys, fields::NOTE, b"the answer lives here")
    .sign(&agent_key);
    event.prev = Some(ChainLink {
        seq: Seq(5),
        hash: last.hash(),
    });
    let pretty = serde_json::to_string_pretty(&event).unwrap();
    std::fs::write(golden_dir().join(REF_FILES[0]), pretty + "\n").unwrap();
}

/// Builds the message-state events after the code reference, leaving every older file
/// as it is.
fn bless_state() {
    let keys = ProjectKey::from_base64(PROJECT_KEY).unwrap().content_keys();
    let mut older = load_files(&FILES);
    older.extend(load_files(&KV_FILES));
    older.extend(load_files(&REF_FILES));
    let message = older[2].id;
    let agent_key = SigningKey::from_base64(KV_AGENT_KEY).unwrap();
    let reaction = Reaction {
        message,
        emoji_ix: emoji_index(&keys, message, GOLDEN_EMOJI),
    };
    let target = MessageTarget { message };
    let bodies = [
        EventBody::ReactionAdded(reaction.clone()),
        EventBody::ReactionRemoved(reaction),
        EventBody::MessageRead(target.clone()),
        EventBody::MessagePinned(target.clone()),
        EventBody::MessageUnpinned(target.clone()),
        EventBody::MessageDeleted(target),
    ];
    let mut last = older[5].clone();
    for (i, (file, body)) in STATE_FILES.iter().zip(bodies).enumerate() {
        let mut draft = Draft::new(last.project, last.actor, body);
        if i == 0 {
            draft = draft.seal(&keys, fields::EMOJI, GOLDEN_EMOJI.as_bytes());
        }
        let mut event = draft.sign(&agent_key);
        event.prev = Some(ChainLink {
            seq: Seq(6 + i as u64),
            hash: last.hash(),
        });
        let pretty = serde_json::to_string_pretty(&event).unwrap();
        std::fs::write(golden_dir().join(file), pretty + "\n").unwrap();
        last = event;
    }
}

/// Builds the profile event after the message-state events, leaving every older file as
/// it is.
fn bless_profile() {
    let keys = ProjectKey::from_base64(PROJECT_KEY).unwrap().content_keys();
    let mut older = load_files(&FILES);
    older.extend(load_files(&KV_FILES));
    older.extend(load_files(&REF_FILES));
    older.extend(load_files(&STATE_FILES));
    let last = &older[11];
    let agent_key = SigningKey::from_base64(KV_AGENT_KEY).unwrap();
    let mut event = Draft::new(
        last.project,
        last.actor,
        EventBody::AgentProfileUpdated(AgentProfileUpdated {}),
    )
    .seal(&keys, fields::ROLE, b"reviewer")
    .seal(&keys, fields::DESCRIPTION, b"reads every golden diff")
    .sign(&agent_key);
    event.prev = Some(ChainLink {
        seq: Seq(12),
        hash: last.hash(),
    });
    let pretty = serde_json::to_string_pretty(&event).unwrap();
    std::fs::write(golden_dir().join(PROFILE_FILES[0]), pretty + "\n").unwrap();
}

/// Builds the file events after the profile, leaving every older file as it is.
fn bless_file() {
    let keys = ProjectKey::from_base64(PROJECT_KEY).unwrap().content_keys();
    let mut older = load_files(&FILES);
    older.extend(load_files(&KV_FILES));
    older.extend(load_files(&REF_FILES));
    older.extend(load_files(&STATE_FILES));
    older.extend(load_files(&PROFILE_FILES));
    let last = &older[12];
    let agent_key = SigningKey::from_base64(KV_AGENT_KEY).unwrap();
    use nexysync_domain::crypto::file_stream::{ciphertext_len, FILE_CHUNK_SIZE};
    let mut shared = Draft::new(
        last.project,
        last.actor,
        EventBody::FileShared(FileShared {
            to: None,
            size: 42,
            ciphertext_size: ciphertext_len(42, FILE_CHUNK_SIZE).unwrap(),
            digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            chunk_size: FILE_CHUNK_SIZE,
        }),
    )
    .seal(&keys, fields::NAME, b"golden.txt")
    .seal(&keys, fields::MEDIA_TYPE, b"text/plain")
    .sign(&agent_key);
    shared.prev = Some(ChainLink {
        seq: Seq(13),
        hash: last.hash(),
    });
    let mut deleted = Draft::new(
        last.project,
        last.actor,
        EventBody::FileDeleted(FileDeleted { file: shared.id }),
    )
    .sign(&agent_key);
    deleted.prev = Some(ChainLink {
        seq: Seq(14),
        hash: shared.hash(),
    });
    for (file, event) in FILE_FILES.iter().zip([&shared, &deleted]) {
        let pretty = serde_json::to_string_pretty(event).unwrap();
        std::fs::write(golden_dir().join(file), pretty + "\n").unwrap();
    }
}

/// Builds the version 2 project and its policy change, leaving every other file as it is.
fn bless_v2() {
    let owner = SigningKey::from_base64(V2_OWNER_KEY).unwrap();
    let project = ProjectId::generate();
    let mut events = vec![
        Draft::new(
            project,
            Actor::Owner,
            EventBody::ProjectCreated(ProjectCreated {
                name: ProjectName::parse("golden-v2").unwrap(),
                owner_key: owner.public_key(),
                retention: RetentionPolicy {
                    default_ttl_s: Some(7 * 24 * 3600),
                    max_ttl_s: Some(30 * 24 * 3600),
                },
            }),
        )
        .sign(&owner),
        Draft::new(
            project,
            Actor::Owner,
            EventBody::RetentionSet(RetentionPolicy {
                default_ttl_s: Some(12 * 3600),
                max_ttl_s: None,
            }),
        )
        .sign(&owner),
    ];
    let mut prev: Option<ChainLink> = None;
    for (i, event) in events.iter_mut().enumerate() {
        event.prev = prev;
        prev = Some(ChainLink {
            seq: Seq(i as u64 + 1),
            hash: event.hash(),
        });
    }
    for (file, event) in V2_FILES.iter().zip(&events) {
        let pretty = serde_json::to_string_pretty(event).unwrap();
        std::fs::write(golden_dir().join(file), pretty + "\n").unwrap();
    }
}

/// Builds the tombstone after the version 2 chain, leaving every other file as it is.
fn bless_erased() {
    let v2 = load_files(&V2_FILES);
    let last = &v2[1];
    let agent_key = SigningKey::from_base64(KV_AGENT_KEY).unwrap();
    let keys = ProjectKey::from_base64(PROJECT_KEY).unwrap().content_keys();
    let mut message = Draft::new(
        last.project,
        Actor::Agent(AgentId::generate()),
        EventBody::MessageSent(MessageSent {
            to: None,
            reply_to: None,
            ttl_s: Some(60),
            topic_ix: None,
        }),
    )
    .seal(&keys, fields::BODY, b"a golden message that expired")
    .sign(&agent_key);
    message.prev = Some(ChainLink {
        seq: Seq(2),
        hash: last.hash(),
    });
    let erased = ErasedEvent::strip(Seq(3), &message);
    let mut tombstone = Envelope::tombstone(
        EventId::generate(),
        last.project,
        message.at + 61_000,
        EventsErased {
            erased: vec![erased],
        },
    );
    tombstone.prev = Some(ChainLink {
        seq: Seq(3),
        hash: message.hash(),
    });
    let pretty = serde_json::to_string_pretty(&tombstone).unwrap();
    std::fs::write(golden_dir().join(ERASED_FILE), pretty + "\n").unwrap();
}

fn load() -> Vec<Envelope> {
    let mut events = load_files(&FILES);
    events.extend(load_files(&KV_FILES));
    events.extend(load_files(&REF_FILES));
    events.extend(load_files(&STATE_FILES));
    events.extend(load_files(&PROFILE_FILES));
    events.extend(load_files(&FILE_FILES));
    events
}

fn load_files(files: &[&str]) -> Vec<Envelope> {
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(golden_dir().join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
        })
        .collect()
}

#[test]
fn golden_events_parse_verify_chain_and_open() {
    if std::env::var("NEXYSYNC_BLESS").is_ok_and(|v| v == "1") {
        bless();
    }
    if std::env::var("NEXYSYNC_BLESS_KV").is_ok_and(|v| v == "1") {
        bless_kv();
    }
    if std::env::var("NEXYSYNC_BLESS_REF").is_ok_and(|v| v == "1") {
        bless_ref();
    }
    if std::env::var("NEXYSYNC_BLESS_STATE").is_ok_and(|v| v == "1") {
        bless_state();
    }
    if std::env::var("NEXYSYNC_BLESS_PROFILE").is_ok_and(|v| v == "1") {
        bless_profile();
    }
    if std::env::var("NEXYSYNC_BLESS_FILE").is_ok_and(|v| v == "1") {
        bless_file();
    }
    if std::env::var("NEXYSYNC_BLESS_V2").is_ok_and(|v| v == "1") {
        bless_v2();
    }
    if std::env::var("NEXYSYNC_BLESS_ERASED").is_ok_and(|v| v == "1") {
        bless_erased();
    }
    let events = load();
    let EventBody::ProjectCreated(created) = &events[0].body else {
        panic!("the first golden event creates the project")
    };
    assert_eq!(events[0].kind_v, 1, "the golden project is version 1");
    assert_eq!(
        created.retention,
        RetentionPolicy::default(),
        "version 1 is upcast with no retention policy"
    );
    events[0].verify_signature(&created.owner_key).unwrap();
    let EventBody::AgentRegistered(registered) = &events[1].body else {
        panic!("the second golden event registers an agent")
    };
    events[1].verify_signature(&created.owner_key).unwrap();
    events[2].verify_signature(&registered.signing_key).unwrap();

    let mut chain = ChainVerifier::from_genesis();
    for (i, event) in events.iter().enumerate() {
        chain.push(Seq(i as u64 + 1), event).unwrap();
    }

    let keys = ProjectKey::from_base64(PROJECT_KEY).unwrap().content_keys();
    let body = events[2].open(&keys, fields::BODY).unwrap().unwrap();
    assert_eq!(body, b"hello from the golden files");
    let topic = events[2].open(&keys, fields::TOPIC).unwrap().unwrap();
    assert_eq!(topic, b"golden");

    let kv_key = SigningKey::from_base64(KV_AGENT_KEY).unwrap().public_key();
    events[3].verify_signature(&kv_key).unwrap();
    events[4].verify_signature(&kv_key).unwrap();
    let EventBody::KvSet(set) = &events[3].body else {
        panic!("the fourth golden event sets a key")
    };
    assert_eq!(
        set.key_ix,
        keys.blind_index(KV_NAMESPACE, "lease:src/golden.rs")
    );
    let key = events[3].open(&keys, fields::KEY).unwrap().unwrap();
    assert_eq!(key, b"lease:src/golden.rs");
    let value = events[3].open(&keys, fields::VALUE).unwrap().unwrap();
    assert_eq!(value, b"alice until 12:30");
    assert!(matches!(events[4].body, EventBody::KvDeleted(_)));

    events[5].verify_signature(&kv_key).unwrap();
    let EventBody::RefShared(shared) = &events[5].body else {
        panic!("the sixth golden event shares a code reference")
    };
    assert_eq!((shared.start_line, shared.end_line), (12, 14));
    let path = events[5].open(&keys, fields::PATH).unwrap().unwrap();
    assert_eq!(path, b"src/golden.rs");
    let snippet = events[5].open(&keys, fields::SNIPPET).unwrap().unwrap();
    assert_eq!(snippet, b"fn golden() -> u32 {\n    42\n}");

    let message = events[2].id;
    for event in &events[6..12] {
        event.verify_signature(&kv_key).unwrap();
        assert_eq!(event.body.target_message(), Some(message));
    }
    let EventBody::ReactionAdded(added) = &events[6].body else {
        panic!("the seventh golden event adds a reaction")
    };
    assert_eq!(added.emoji_ix, emoji_index(&keys, message, GOLDEN_EMOJI));
    let emoji = events[6].open(&keys, fields::EMOJI).unwrap().unwrap();
    assert_eq!(emoji, GOLDEN_EMOJI.as_bytes());
    let EventBody::ReactionRemoved(removed) = &events[7].body else {
        panic!("the eighth golden event takes the reaction back")
    };
    assert_eq!(removed.emoji_ix, added.emoji_ix);
    assert!(events[7].sealed.is_empty());
    assert!(matches!(events[8].body, EventBody::MessageRead(_)));
    assert!(matches!(events[9].body, EventBody::MessagePinned(_)));
    assert!(matches!(events[10].body, EventBody::MessageUnpinned(_)));
    assert!(matches!(events[11].body, EventBody::MessageDeleted(_)));

    events[12].verify_signature(&kv_key).unwrap();
    assert!(matches!(events[12].body, EventBody::AgentProfileUpdated(_)));
    let role = events[12].open(&keys, fields::ROLE).unwrap().unwrap();
    assert_eq!(role, b"reviewer");
    let description = events[12]
        .open(&keys, fields::DESCRIPTION)
        .unwrap()
        .unwrap();
    assert_eq!(description, b"reads every golden diff");

    events[13].verify_signature(&kv_key).unwrap();
    events[14].verify_signature(&kv_key).unwrap();
    let EventBody::FileShared(file) = &events[13].body else {
        panic!("the fourteenth golden event shares a file")
    };
    assert!(file.is_well_formed());
    assert_eq!(file.size, 42);
    let name = events[13].open(&keys, fields::NAME).unwrap().unwrap();
    assert_eq!(name, b"golden.txt");
    let EventBody::FileDeleted(deleted) = &events[14].body else {
        panic!("the fifteenth golden event deletes the file")
    };
    assert_eq!(deleted.file, events[13].id);
}

#[test]
fn golden_project_created_v2_carries_its_policy_and_verifies() {
    let events = load_files(&V2_FILES);
    let EventBody::ProjectCreated(created) = &events[0].body else {
        panic!("the v2 golden chain starts with project_created")
    };
    assert_eq!(events[0].kind_v, 2);
    assert_eq!(
        created.retention,
        RetentionPolicy {
            default_ttl_s: Some(7 * 24 * 3600),
            max_ttl_s: Some(30 * 24 * 3600),
        }
    );
    let owner = SigningKey::from_base64(V2_OWNER_KEY).unwrap().public_key();
    assert_eq!(created.owner_key, owner);
    events[0].verify_signature(&owner).unwrap();
    events[1].verify_signature(&owner).unwrap();
    let EventBody::RetentionSet(policy) = &events[1].body else {
        panic!("the second v2 golden event sets the policy")
    };
    assert_eq!(policy.default_ttl_s, Some(12 * 3600));
    let mut auditor = nexysync_domain::audit::ProjectAuditor::new(events[0].project);
    for (i, event) in events.iter().enumerate() {
        auditor.push(Seq(i as u64 + 1), event).unwrap();
    }
    auditor.finish().unwrap();
    assert_eq!(auditor.retention(), *policy);
}

#[test]
fn golden_tombstone_proves_the_event_it_erased_without_its_content() {
    let tombstone = load_files(&[ERASED_FILE]).remove(0);
    assert_eq!(tombstone.actor, Actor::Pruner);
    assert_eq!(tombstone.project, load_files(&V2_FILES)[0].project);
    let EventBody::EventsErased(erased) = &tombstone.body else {
        panic!("the tombstone golden file is an events_erased")
    };
    let [entry] = erased.erased.as_slice() else {
        panic!("the golden tombstone erased one event")
    };
    assert!(entry.event.sealed.is_empty(), "no ciphertext is kept");
    assert!(entry.sealed.contains_key(fields::BODY), "its digest is");
    let signed = entry.signing_bytes();
    assert_eq!(entry.event.hash_with_signing_bytes(&signed), entry.hash);
    let agent = SigningKey::from_base64(KV_AGENT_KEY).unwrap().public_key();
    agent.verify(&signed, &entry.event.sig).unwrap();
    // The tombstone links to the erased event: the chain runs through it.
    assert_eq!(
        tombstone.prev,
        Some(ChainLink {
            seq: entry.seq,
            hash: entry.hash
        })
    );
    let text = std::fs::read_to_string(golden_dir().join(ERASED_FILE)).unwrap();
    assert_eq!(
        serde_json::to_string_pretty(&tombstone).unwrap() + "\n",
        text
    );
}

#[test]
fn golden_project_created_v1_signs_as_stored_not_as_upcast() {
    let mut v1 = load_files(&FILES[..1]).remove(0);
    let EventBody::ProjectCreated(created) = &v1.body else {
        panic!("project_created")
    };
    let owner = created.owner_key;
    // Read as version 2 (what the upcast gives), the same fields would sign differently:
    // only the stored version's shape verifies.
    v1.kind_v = 2;
    assert!(v1.verify_signature(&owner).is_err());
}

#[test]
fn golden_events_keep_their_exact_shape() {
    let files = FILES
        .iter()
        .chain(&KV_FILES)
        .chain(&REF_FILES)
        .chain(&STATE_FILES)
        .chain(&PROFILE_FILES)
        .chain(&FILE_FILES)
        .chain(&V2_FILES);
    let mut events = load();
    events.extend(load_files(&V2_FILES));
    for (file, event) in files.zip(events) {
        let text = std::fs::read_to_string(golden_dir().join(file)).unwrap();
        let again = serde_json::to_string_pretty(&event).unwrap() + "\n";
        assert_eq!(text, again, "{file} no longer serialises as stored");
    }
}

//! Golden files: the stored shape of each event kind, version 1, frozen.
//!
//! `schemas/golden/` holds a tiny project's log (created, one agent registered, one
//! message), chained and signed. Old shapes must keep parsing, verifying and hashing the
//! same for as long as they can be in a log. Regenerate (only when adding a kind) with
//! `NEXYSYNC_BLESS=1 cargo test -p nexysync-domain --test golden`.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use nexysync_domain::crypto::{AgentToken, ProjectKey, SigningKey};
use nexysync_domain::event::{
    fields, Actor, AgentRegistered, ChainLink, ChainVerifier, Draft, Envelope, EventBody,
    MessageSent, ProjectCreated,
};
use nexysync_domain::ids::{AgentId, AgentName, ProjectId, ProjectName, Seq};

const FILES: [&str; 3] = [
    "project_created.v1.json",
    "agent_registered.v1.json",
    "message_sent.v1.json",
];
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
            }),
        )
        .sign(&owner),
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

fn load() -> Vec<Envelope> {
    FILES
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
    let events = load();
    let EventBody::ProjectCreated(created) = &events[0].body else {
        panic!("the first golden event creates the project")
    };
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
}

#[test]
fn golden_events_keep_their_exact_shape() {
    for (file, event) in FILES.iter().zip(load()) {
        let text = std::fs::read_to_string(golden_dir().join(file)).unwrap();
        let again = serde_json::to_string_pretty(&event).unwrap() + "\n";
        assert_eq!(text, again, "{file} no longer serialises as stored");
    }
}

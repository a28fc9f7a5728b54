//! Message-state events through the projector against real NATS and Postgres: the read
//! models follow every toggle, and applying the log again from the start (as after a
//! lost checkpoint) changes nothing.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nexysync_domain::crypto::{AgentToken, ProjectKey, SigningKey};
use nexysync_domain::event::{
    emoji_index, fields, Actor, AgentRegistered, Draft, Envelope, EventBody, MessageSent,
    MessageTarget, ProjectCreated, Reaction,
};
use nexysync_domain::ids::{AgentId, AgentName, EventId, ProjectId, ProjectName};
use nexysync_projections::{db, Projector};
use nexysync_tests::{eventually, TestEnv};
use sqlx::PgPool;

/// Every row of message state, in a stable order, as text.
async fn snapshot(pool: &PgPool) -> Vec<String> {
    let queries = [
        "SELECT message_id::text || ' ' || agent_id::text || ' ' || emoji_ix || ' ' || seq
         FROM message_reactions ORDER BY 1",
        "SELECT agent_id::text || ' ' || message_id::text || ' ' || seq FROM message_reads ORDER BY 1",
        "SELECT id::text || ' ' || pinned || ' ' || COALESCE(deleted_seq, 0) || ' ' || envelope::text
         FROM messages ORDER BY seq",
        "SELECT id::text || ' ' || kind || ' ' || seq FROM message_updates ORDER BY seq",
        "SELECT message_count::text FROM projects",
    ];
    let mut rows = Vec::new();
    for sql in queries {
        rows.extend(
            sqlx::query_scalar::<_, String>(sql)
                .fetch_all(pool)
                .await
                .unwrap(),
        );
    }
    rows
}

async fn project_until(pool: &PgPool, log: &nexysync_log::EventLog, last: u64) {
    let task = tokio::spawn(Projector::new(pool.clone(), log.clone()).run());
    eventually(
        "the projector to catch up",
        Duration::from_secs(15),
        || async {
            let reached: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(last_seq), 0) FROM projector_checkpoints")
                    .fetch_one(pool)
                    .await
                    .unwrap();
            (reached as u64 >= last).then_some(())
        },
    )
    .await;
    task.abort();
    let _ = task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_state_follows_every_toggle_and_a_second_pass_changes_nothing() {
    let env = TestEnv::new();
    let log = env.log().await;
    let pool = db::connect_and_migrate(&env.database_url(), 4)
        .await
        .unwrap();
    let project = ProjectId::generate();
    let owner = SigningKey::generate();
    let keys = ProjectKey::generate().content_keys();
    let created = Draft::new(
        project,
        Actor::Owner,
        EventBody::ProjectCreated(ProjectCreated {
            name: ProjectName::parse("state").unwrap(),
            owner_key: owner.public_key(),
            retention: Default::default(),
        }),
    )
    .sign(&owner);
    log.append(created).await.unwrap();
    let mut agents = Vec::new();
    for name in ["alice", "bob"] {
        let (id, key) = (AgentId::generate(), SigningKey::generate());
        let registered = Draft::new(
            project,
            Actor::Owner,
            EventBody::AgentRegistered(AgentRegistered {
                agent: id,
                name: AgentName::parse(name).unwrap(),
                signing_key: key.public_key(),
                token_hash: AgentToken::generate().hash(),
            }),
        )
        .sign(&owner);
        log.append(registered).await.unwrap();
        agents.push((id, key));
    }
    let (alice, alice_key) = &agents[0];
    let (bob, bob_key) = &agents[1];
    let mut messages = Vec::new();
    for i in 0..2 {
        let message = Draft::new(
            project,
            Actor::Agent(*alice),
            EventBody::MessageSent(MessageSent {
                to: None,
                reply_to: None,
                ttl_s: None,
                topic_ix: None,
            }),
        )
        .seal(&keys, fields::BODY, format!("message {i}").as_bytes())
        .sign(alice_key);
        messages.push(message.id);
        log.append(message).await.unwrap();
    }
    let (kept, deleted) = (messages[0], messages[1]);
    let by = |agent: AgentId, key: &SigningKey, body: EventBody| -> Envelope {
        let mut draft = Draft::new(project, Actor::Agent(agent), body.clone());
        if matches!(body, EventBody::ReactionAdded(_)) {
            draft = draft.seal(&keys, fields::EMOJI, "👍".as_bytes());
        }
        draft.sign(key)
    };
    let reaction = |message: EventId| Reaction {
        message,
        emoji_ix: emoji_index(&keys, message, "👍"),
    };
    let target = |message: EventId| MessageTarget { message };
    let events = [
        by(*bob, bob_key, EventBody::ReactionAdded(reaction(kept))),
        by(*bob, bob_key, EventBody::ReactionRemoved(reaction(kept))),
        by(*bob, bob_key, EventBody::ReactionAdded(reaction(kept))),
        by(*bob, bob_key, EventBody::ReactionAdded(reaction(deleted))),
        by(*bob, bob_key, EventBody::MessageRead(target(kept))),
        by(*bob, bob_key, EventBody::MessagePinned(target(kept))),
        by(*alice, alice_key, EventBody::MessageUnpinned(target(kept))),
        by(*alice, alice_key, EventBody::MessagePinned(target(kept))),
        by(*bob, bob_key, EventBody::MessagePinned(target(deleted))),
        // Bob is not the sender: the read models ignore his deletion.
        by(*bob, bob_key, EventBody::MessageDeleted(target(kept))),
        by(
            *alice,
            alice_key,
            EventBody::MessageDeleted(target(deleted)),
        ),
    ];
    for event in events {
        log.append(event).await.unwrap();
    }
    let last = log.last_seq().await.unwrap();
    project_until(&pool, &log, last).await;

    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM message_reactions").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM message_reads").await, 1);
    assert_eq!(
        count("SELECT COUNT(*) FROM messages WHERE pinned").await,
        1,
        "the kept message is pinned; the deleted one's pin went with it"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM messages WHERE deleted_seq IS NOT NULL").await,
        1
    );
    assert_eq!(count("SELECT COUNT(*) FROM message_updates").await, 11);
    let before = snapshot(&pool).await;

    // As if the checkpoint were lost: everything is applied again, and nothing changes.
    sqlx::query("UPDATE projector_checkpoints SET last_seq = 0")
        .execute(&pool)
        .await
        .unwrap();
    project_until(&pool, &log, last).await;
    assert_eq!(snapshot(&pool).await, before);
    pool.close().await;
    env.cleanup().await;
}

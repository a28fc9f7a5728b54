//! The projector against real NATS and Postgres: killed mid-batch again and again, it
//! still applies every event exactly once.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nexysync_domain::crypto::{AgentToken, ProjectKey, SigningKey};
use nexysync_domain::event::{
    fields, Actor, AgentRegistered, Draft, EventBody, MessageSent, ProjectCreated,
};
use nexysync_domain::ids::{AgentId, AgentName, ProjectId, ProjectName, Seq};
use nexysync_projections::{db, Projector, StoredJson};
use nexysync_tests::{eventually, TestEnv};

const MESSAGES: usize = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_mid_batch_loses_and_duplicates_nothing() {
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
            name: ProjectName::parse("crashy").unwrap(),
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
    let (bob, _) = &agents[1];
    for i in 0..MESSAGES {
        let message = Draft::new(
            project,
            Actor::Agent(*alice),
            EventBody::MessageSent(MessageSent {
                to: if i % 2 == 0 { Some(*bob) } else { None },
                reply_to: None,
                ttl_s: None,
                topic_ix: None,
            }),
        )
        .seal(&keys, fields::BODY, format!("message {i}").as_bytes())
        .sign(alice_key);
        log.append(message).await.unwrap();
    }
    let last = log.last_seq().await.unwrap();

    // Kill the projector at random moments until it has caught up.
    let checkpoint = || async {
        sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(last_seq), 0) FROM projector_checkpoints")
            .fetch_one(&pool)
            .await
            .unwrap() as u64
    };
    // Each round lives a little longer than the last one that made no progress, so the
    // kills land part-way through catching up whatever the machine's speed.
    let mut kills_mid_way = 0;
    let mut lifetime_ms = 5;
    let mut rounds = 0;
    loop {
        let before = checkpoint().await;
        if before >= last {
            break;
        }
        rounds += 1;
        assert!(rounds < 1000, "the projector makes no progress");
        let task = tokio::spawn(Projector::new(pool.clone(), log.clone()).run());
        tokio::time::sleep(Duration::from_millis(
            lifetime_ms + rand::random::<u64>() % 10,
        ))
        .await;
        task.abort();
        let _ = task.await;
        let reached = checkpoint().await;
        if reached == before {
            lifetime_ms += 5;
        } else if reached < last {
            kills_mid_way += 1;
        }
    }
    assert!(
        kills_mid_way >= 1,
        "the projector was killed while catching up"
    );

    // Once more, live, to be sure a restart at the end changes nothing.
    let task = tokio::spawn(Projector::new(pool.clone(), log.clone()).run());
    eventually(
        "a restarted projector to settle",
        Duration::from_secs(10),
        || async { (checkpoint().await == last).then_some(()) },
    )
    .await;
    task.abort();

    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap() as usize
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM messages").await, MESSAGES);
    assert_eq!(
        count("SELECT message_count FROM projects").await,
        MESSAGES,
        "no message applied twice"
    );
    assert_eq!(count("SELECT COUNT(*) FROM agents").await, 2);
    // Every message reaches bob's inbox: the direct ones as entries, the broadcasts (from
    // alice, after bob registered) read in place.
    assert_eq!(
        count("SELECT COUNT(*) FROM inbox_entries").await,
        MESSAGES / 2
    );
    let reads = nexysync_projections::ReadModels::new(pool.clone());
    let mut inbox = Vec::new();
    while let Some(after) = inbox
        .last()
        .map_or(Some(Seq(0)), |m: &StoredJson| Some(m.seq))
    {
        let page = reads.inbox(*bob, after, 500).await.unwrap();
        if page.is_empty() {
            break;
        }
        inbox.extend(page);
    }
    assert_eq!(inbox.len(), MESSAGES, "bob's inbox, a page at a time");
    assert!(
        inbox.windows(2).all(|w| w[0].seq < w[1].seq),
        "in log order, once each"
    );
    pool.close().await;
    env.cleanup().await;
}

//! A message id is used once. Beyond the log's deduplication window the API decides on
//! the read models whether an id is taken: an id erased by retention, or another
//! project's, is refused with `message_id_taken`, and nothing is appended. And should an
//! event reusing one reach the log anyway (appended around the API), the projector
//! applies it without failing: a read model statement that fails on what a client wrote
//! would stop every project's projection. (And the pruner, finding the erasure done on
//! its next run, goes on.)

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nexysync_domain::event::{fields, Actor, Draft, Envelope, EventBody, MessageSent};
use nexysync_domain::ids::EventId;
use nexysync_projections::PrunerSettings;
use nexysync_tests::agents::{TestAgent, TestProject};
use nexysync_tests::{eventually, TestEnv};
use uuid::Uuid;

/// A message id made ten minutes ago: beyond JetStream's deduplication window.
fn old_id() -> EventId {
    let millis = chrono_now() as u64 - 10 * 60_000;
    let at = uuid::Timestamp::from_unix(
        uuid::NoContext,
        millis / 1000,
        (millis % 1000) as u32 * 1_000_000,
    );
    EventId::try_from(Uuid::new_v7(at)).unwrap()
}

/// A reply of `agent`'s to `parent` with the id `id` (and its time), sealed and signed.
fn reply_with_id(
    agent: &TestAgent,
    project: &TestProject,
    id: EventId,
    parent: EventId,
    ttl_s: Option<u32>,
) -> Envelope {
    let mut draft = Draft::new(
        agent.project,
        Actor::Agent(agent.id),
        EventBody::MessageSent(MessageSent {
            to: None,
            reply_to: Some(parent),
            ttl_s,
            topic_ix: None,
        }),
    );
    draft.id = id;
    draft.at = id.unix_millis() as i64;
    draft
        .seal(&project.keys(), fields::BODY, b"a reply")
        .sign(&agent.key)
}

/// Waits until `query`, a boolean `SELECT`, answers true.
async fn until_true(pool: &sqlx::PgPool, what: &str, query: &str) {
    eventually(what, Duration::from_secs(30), || async move {
        let holds: bool = sqlx::query_scalar(query).fetch_one(pool).await.ok()?;
        holds.then_some(())
    })
    .await
}

/// What the copy touches: the messages, inbox entries and thread edges, as text.
async fn read_models(pool: &sqlx::PgPool) -> Vec<String> {
    let mut dump = Vec::new();
    for table in [
        "messages",
        "inbox_entries",
        "thread_edges",
        "expired_messages",
    ] {
        dump.push(
            sqlx::query_scalar(&format!(
                "SELECT COALESCE(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM {table} t"
            ))
            .fetch_one(pool)
            .await
            .unwrap(),
        );
    }
    dump
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_erased_by_retention_or_of_another_project_is_refused_and_the_projector_goes_on() {
    let env = TestEnv::new();
    let mut settings = env.settings();
    settings.pruner = Some(PrunerSettings {
        interval: Duration::from_millis(200),
        grace: Duration::ZERO,
        catch_up: Duration::from_secs(10),
    });
    let api = env.spawn_api_with(settings).await;
    let project = TestProject::create(&api, "reuse").await;
    let alice = project.add_agent(&api, "alice").await;
    let _bob = project.add_agent(&api, "bob").await;
    let parent = alice
        .send(&api, &project, None, None, "the parent")
        .await
        .id;

    // A reply that expired as it was sent: the pruner erases it, leaving its place in the
    // thread. Made long enough ago for the log to have forgotten its id, it goes in around
    // the API, which refuses new content that old.
    let id = old_id();
    let mortal = reply_with_id(&alice, &project, id, parent, Some(1));
    env.log().await.append(mortal).await.unwrap();
    let pool = env.pool().await;
    let erased = format!("SELECT EXISTS (SELECT 1 FROM expired_messages WHERE id = '{id}')");
    until_true(&pool, "the reply erased", &erased).await;

    // The pruner's next run finds the erasure done (the tombstone's projection recorded it
    // as pending) and goes on.
    let none_pending = "SELECT NOT EXISTS (SELECT 1 FROM pending_erasures)";
    until_true(&pool, "no erasure pending", none_pending).await;

    // Its id again, in its project: refused, nothing appended.
    let head = env.log().await.last_seq().await.unwrap();
    let again = reply_with_id(&alice, &project, id, parent, None);
    let (status, answer) = alice.post(&api, &again).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "message_id_taken", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("fresh id"), "{message}");

    // The same id from another project, replying to a message of its own: refused too.
    let other = TestProject::create(&api, "other").await;
    let carol = other.add_agent(&api, "carol").await;
    let dave = other.add_agent(&api, "dave").await;
    let carols_parent = carol
        .send(&api, &other, None, None, "carol's parent")
        .await
        .id;
    let elsewhere = reply_with_id(&carol, &other, id, carols_parent, None);
    let (status, answer) = carol.post(&api, &elsewhere).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "message_id_taken", "{answer}");
    let log = env.log().await;
    assert_eq!(
        log.last_seq().await.unwrap(),
        head + 4,
        "only the other project, carol, dave and carol's parent appended"
    );

    // Appended around the API, amid a run of messages long enough for a rebuild to copy
    // it in: the projector applies the copy (its thread edge stays the erased reply's)
    // and goes on to what follows.
    for i in 0..300 {
        let event = match i {
            150 => elsewhere.clone(),
            _ => carol.message(&other, None, None, &format!("m{i}")),
        };
        log.append(event).await.unwrap();
    }
    let after = carol
        .send(&api, &other, None, None, "after the copy")
        .await
        .seq
        .0;
    let (status, answer) = dave
        .get(
            &api,
            &format!("/v1/messages?since_seq={}&min_seq={after}", after - 1),
        )
        .await;
    assert_eq!(
        status, 200,
        "the projection went on past the copy: {answer}"
    );
    assert_eq!(answer["messages"].as_array().unwrap().len(), 1, "{answer}");

    // A rebuild makes the same read models: its copy of the run fails on the edge and the
    // run is written again with the live statement.
    let before = read_models(&pool).await;
    nexysync_projections::rebuild(&env.database_url(), &log, |_| {})
        .await
        .unwrap();
    assert_eq!(read_models(&pool).await, before);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn new_content_dated_before_the_deduplication_window_is_refused_and_a_retry_answered() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "dated").await;
    let alice = project.add_agent(&api, "alice").await;
    let parent = alice
        .send(&api, &project, None, None, "the parent")
        .await
        .id;
    let log = env.log().await;
    let head = log.last_seq().await.unwrap();

    // Dated ten minutes back, it would count for the day of its `at` (ADR 0007): a day
    // already past, by as much as the sender likes, never reaching today's quota.
    let backdated = reply_with_id(&alice, &project, old_id(), parent, None);
    let (status, answer) = alice.post(&api, &backdated).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "event_too_old", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("fresh id"), "{message}");
    assert_eq!(log.last_seq().await.unwrap(), head, "nothing appended");

    // The same event whose first attempt went through, that long ago: its retry is
    // answered with the original sequence.
    let first = log.append(backdated.clone()).await.unwrap();
    let projected = format!(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE id = '{}')",
        backdated.id
    );
    until_true(&env.pool().await, "the first attempt projected", &projected).await;
    let (status, answer) = alice.post(&api, &backdated).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["duplicate"], true, "{answer}");
    assert_eq!(answer["seq"], first.seq.0, "{answer}");
    assert_eq!(log.last_seq().await.unwrap(), first.seq.0);
    api.stop().await;
    env.cleanup().await;
}

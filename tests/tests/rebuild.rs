//! Rebuilding the read models from the log with no downtime, against real NATS and
//! Postgres: readers see no error and never an older state, writers keep writing, and a
//! server that finds read models of an older version rebuilds them before serving.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nexysync_domain::event::{fields, Actor, Draft, EventBody, MessageSent, RetentionPolicy};
use nexysync_projections::db::{self, SchemaVersion, LIVE_SCHEMA};
use nexysync_tests::files::upload;
use nexysync_tests::processes::nexysync_output;
use nexysync_tests::{eventually, nats_url, TestAgent, TestApi, TestEnv, TestProject};

const BEFORE: usize = 400;
const DURING: usize = 100;

async fn inbox_len(agent: &TestAgent, api: &TestApi) -> Result<usize, String> {
    let (status, page) = agent.get(api, "/v1/messages?limit=500").await;
    if status != 200 {
        return Err(format!("{status} {page}"));
    }
    let mut count = page["messages"].as_array().unwrap().len();
    let mut cursor = page["next_since_seq"].as_u64().unwrap();
    let mut more = page["has_more"].as_bool().unwrap();
    while more {
        let (status, page) = agent
            .get(api, &format!("/v1/messages?limit=500&since_seq={cursor}"))
            .await;
        if status != 200 {
            return Err(format!("{status} {page}"));
        }
        count += page["messages"].as_array().unwrap().len();
        cursor = page["next_since_seq"].as_u64().unwrap();
        more = page["has_more"].as_bool().unwrap();
    }
    Ok(count)
}

/// Every row of the live read models that the log decides, as text, table by table:
/// all tables but the checkpoints (wall-clock time), presence (its own stream), pending
/// uploads (not in the log: a rebuild carries them over, tested on their own) and the
/// unread cache (`inbox_read_through`, which the live projector fills and a rebuild leaves
/// empty).
async fn read_models_dump(env: &TestEnv) -> Vec<(String, String)> {
    let pool = env.pool().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = $1 AND table_type = 'BASE TABLE'
           AND table_name NOT IN ('projector_checkpoints', 'pending_uploads', 'inbox_read_through',
                                  '_sqlx_migrations')
           AND table_name NOT LIKE 'presence%'
         ORDER BY 1",
    )
    .bind(LIVE_SCHEMA)
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut dump = Vec::new();
    for table in tables {
        let rows: String = sqlx::query_scalar(&format!(
            "SELECT COALESCE(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM {LIVE_SCHEMA}.{table} t"
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        dump.push((table, rows));
    }
    dump
}

/// The live read models' constraints (validated or not) and indexes, as text: a rebuild
/// sets some aside while it loads and must leave them all as the migrations made them.
async fn schema_dump(env: &TestEnv) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT format('%s %s %s valid=%s', t.relname, c.conname, pg_get_constraintdef(c.oid), c.convalidated)
         FROM pg_constraint c
         JOIN pg_class t ON t.oid = c.conrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = $1
         UNION ALL
         SELECT indexdef FROM pg_indexes WHERE schemaname = $1
         ORDER BY 1",
    )
    .bind(LIVE_SCHEMA)
    .fetch_all(&env.pool().await)
    .await
    .unwrap()
}

/// Waits for the live projector to reach the log's head; answers the head and
/// [`read_models_dump`] then.
async fn live_read_models_at_head(env: &TestEnv) -> (u64, Vec<(String, String)>) {
    let head = env.log().await.last_seq().await.unwrap();
    eventually(
        "the live read models at the log's head",
        Duration::from_secs(30),
        || async move {
            let checkpoint: i64 = sqlx::query_scalar("SELECT last_seq FROM projector_checkpoints")
                .fetch_one(&env.pool().await)
                .await
                .ok()?;
            (checkpoint as u64 >= head).then_some(())
        },
    )
    .await;
    (head, read_models_dump(env).await)
}

async fn schema_exists(env: &TestEnv, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(name)
        .fetch_one(&env.pool().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_see_no_error_and_no_older_state_while_the_read_models_are_rebuilt() {
    let env = TestEnv::new();
    let api = Arc::new(env.spawn_api().await);
    let project = TestProject::create(&api, "rebuilt").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = Arc::new(project.add_agent(&api, "bob").await);
    let mut last = None;
    for i in 0..BEFORE {
        last = Some(
            alice
                .send(&api, &project, Some(&bob), None, &format!("m{i}"))
                .await,
        );
    }
    let last = last.unwrap();
    bob.get(&api, &format!("/v1/messages?limit=1&min_seq={}", last.seq))
        .await;

    // A reader that never stops during the rebuild: every answer a 200, never fewer
    // messages than the answer before.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn({
        let (api, bob, stop) = (api.clone(), bob.clone(), stop.clone());
        async move {
            let (mut reads, mut seen) = (0usize, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let count = inbox_len(&bob, &api).await.unwrap_or_else(|e| {
                    panic!("a read failed during the rebuild: {e}");
                });
                assert!(count >= seen, "a read went back from {seen} to {count}");
                seen = count;
                reads += 1;
            }
            (reads, seen)
        }
    });
    let log = env.log().await;
    let url = env.database_url();
    let rebuild =
        tokio::spawn(async move { nexysync_projections::rebuild(&url, &log, |_| {}).await });
    for i in 0..DURING {
        alice
            .send(&api, &project, Some(&bob), None, &format!("d{i}"))
            .await;
    }
    let report = rebuild.await.unwrap().unwrap();
    assert!(report.events as usize >= BEFORE, "{report:?}");

    // Everything written before and during the rebuild is there, projected once.
    let all = eventually(
        "every message in the rebuilt read models",
        Duration::from_secs(20),
        || {
            let (api, bob) = (api.clone(), bob.clone());
            async move {
                let count = inbox_len(&bob, &api).await.ok()?;
                (count == BEFORE + DURING).then_some(count)
            }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let (reads, seen) = reader.await.unwrap();
    assert!(reads > 0);
    assert!(seen <= all);
    let count: i64 = sqlx::query_scalar("SELECT message_count FROM projects")
        .fetch_one(&env.pool().await)
        .await
        .unwrap();
    assert_eq!(count as usize, BEFORE + DURING, "each message counted once");

    // The old schema is gone and the new one is this build's version.
    assert!(!schema_exists(&env, "read_models_retired").await);
    assert!(!schema_exists(&env, "read_models_next").await);
    let version = db::version_of(&env.pool().await, LIVE_SCHEMA)
        .await
        .unwrap();
    assert_eq!(
        version,
        SchemaVersion::Current {
            version: db::expected_version()
        }
    );
    Arc::try_unwrap(api).unwrap().stop().await;
    env.cleanup().await;
}

/// A history that takes every path of a rebuild's loader: runs of messages longer than
/// one batch written side by side, short runs applied in order with what surrounds them,
/// and between them the other kinds of event (which wait for the runs before them), an
/// agent who joins midway (broadcasts before it do not
/// reach it), replies, topics, messages that expire by their own TTL or (after a retention
/// change midway) by the project's, state changes on messages of earlier runs, a deletion,
/// and the projects' counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_makes_the_same_read_models_as_the_live_projector() {
    let env = TestEnv::new();
    let api = Arc::new(env.spawn_api().await);
    let project = Arc::new(TestProject::create(&api, "same").await);
    let alice = Arc::new(project.add_agent(&api, "alice").await);
    let bob = Arc::new(project.add_agent(&api, "bob").await);
    let mut carol = None;
    let mut last = None;
    for round in 0..ROUNDS {
        if round == ROUNDS / 2 {
            carol = Some(project.add_agent(&api, "carol").await);
        }
        // A round of messages sent at once: a run in the log.
        let sends = (0..SENDERS).map(|i| {
            let (api, project, alice, bob) =
                (api.clone(), project.clone(), alice.clone(), bob.clone());
            async move {
                let sent = MessageSent {
                    to: (i % 3 != 0).then_some(bob.id),
                    reply_to: if i % 5 == 4 { last } else { None },
                    // Some expire on their own, the others (after the retention
                    // change) by the project's default.
                    ttl_s: (i % 7 == 3).then_some(3_600 + i as u32),
                    topic_ix: None,
                };
                let topic = (i % 4 == 1).then(|| format!("t{}", i % 3));
                let body = format!("r{round} m{i}");
                let message = alice.message_sent(&project, sent, &body, topic.as_deref());
                let (status, answer) = alice.post(&api, &message).await;
                assert_eq!(status, 201, "{answer}");
                message.id
            }
        });
        let ids = futures::future::join_all(sends).await;
        last = ids.last().copied();
        if round < ROUNDS / 2 && round % 4 == 0 {
            // Short runs: applied in order with the events around them.
            let (status, answer) = alice
                .kv_write(
                    &api,
                    &alice.kv_set(&project, "progress", &format!("{round}"), None, None),
                )
                .await;
            assert_eq!(status, 201, "{answer}");
        }
        if round % 20 == 10 {
            let first = ids[0];
            for (agent, event) in [
                (&bob, bob.reaction_added(&project, first, "👍")),
                (&bob, bob.on_message(first, EventBody::MessageRead)),
                (&alice, alice.on_message(first, EventBody::MessagePinned)),
            ] {
                let (status, answer) = agent.update(&api, &event).await;
                assert!(status < 300, "{status} {answer}");
            }
            let (status, answer) = bob
                .kv_write(
                    &api,
                    &bob.kv_set(&project, &format!("k{round}"), "v", None, None),
                )
                .await;
            assert_eq!(status, 201, "{answer}");
            let shared =
                alice.ref_shared(&project, Some(&bob), "src/main.rs", (1, 9), "fn main() {}");
            let (status, answer) = alice.share_ref(&api, &shared).await;
            assert_eq!(status, 201, "{answer}");
        }
        if round == ROUNDS * 3 / 4 {
            let policy = RetentionPolicy {
                default_ttl_s: Some(86_400),
                max_ttl_s: None,
            };
            let (status, answer) = project.set_retention(&api, policy).await;
            assert!(status < 300, "{status} {answer}");
        }
        if round == ROUNDS - 1 {
            let (status, answer) = alice
                .update(&api, &alice.on_message(ids[1], EventBody::MessageDeleted))
                .await;
            assert!(status < 300, "{status} {answer}");
        }
    }
    let carol = carol.unwrap();
    let expected = ROUNDS * SENDERS;
    let (head, live) = live_read_models_at_head(&env).await;
    assert!(
        inbox_len(&carol, &api).await.unwrap() > 0,
        "broadcasts after carol joined reach her"
    );
    let schema = schema_dump(&env).await;
    assert!(schema.len() > 20, "{schema:#?}");

    let report = nexysync_projections::rebuild(&env.database_url(), &env.log().await, |_| {})
        .await
        .unwrap();
    assert_eq!(report.switched_at.0, head, "{report:?}");
    let rebuilt = read_models_dump(&env).await;
    assert_eq!(live.len(), rebuilt.len());
    for ((table, before), (_, after)) in live.iter().zip(&rebuilt) {
        assert!(
            before == after,
            "{table} differs after the rebuild:\nlive:\n{before}\nrebuilt:\n{after}"
        );
    }
    let messages = live.iter().find(|(table, _)| table == "messages").unwrap();
    assert_eq!(messages.1.lines().count(), expected);
    assert_eq!(
        schema_dump(&env).await,
        schema,
        "constraints and indexes made again"
    );
    Arc::try_unwrap(api).ok().unwrap().stop().await;
    env.cleanup().await;
}

/// The API's own rows of `pending_uploads` (uploads not committed yet, blobs queued for
/// the sweeper), as text.
async fn pending_uploads_dump(env: &TestEnv) -> Vec<String> {
    sqlx::query_scalar(&format!(
        "SELECT t::text FROM {LIVE_SCHEMA}.pending_uploads t ORDER BY id"
    ))
    .fetch_all(&env.pool().await)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_upload_in_flight_and_a_blob_queued_for_the_sweeper_outlive_a_rebuild() {
    let env = TestEnv::new();
    let (api, cdn) = env.spawn_api_and_cdn().await;
    let project = TestProject::create(&api, "in-flight").await;
    let alice = project.add_agent(&api, "alice").await;
    // Shared, then deleted: its blob stays queued for the sweeper until its upload URLs
    // have expired.
    let gone = alice.seal_file(&project, None, "gone.txt", b"deleted before the rebuild");
    alice.share_file(&api, &gone).await;
    let (status, deleted) = alice
        .post_json(&api, "/v1/files/delete", &alice.file_deleted(gone.id()))
        .await;
    assert_eq!(status, 201, "{deleted}");
    // Declared, not uploaded yet.
    let flying = alice.seal_file(&project, None, "flying.txt", b"uploaded after the rebuild");
    let (status, ticket) = alice.declare_file(&api, &flying).await;
    assert_eq!(status, 201, "{ticket}");
    let before = pending_uploads_dump(&env).await;
    assert_eq!(before.len(), 2, "{before:#?}");

    nexysync_projections::rebuild(&env.database_url(), &env.log().await, |_| {})
        .await
        .unwrap();
    assert_eq!(pending_uploads_dump(&env).await, before);
    let (status, body) = upload(&api, &ticket, flying.ciphertext.clone()).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = alice.commit_file(&api, flying.id()).await;
    assert_eq!(
        status, 201,
        "the upload declared before the rebuild commits: {body}"
    );
    // The commit is answered once appended; the projector removes its upload after.
    let env_ref = &env;
    eventually(
        "the committed upload gone and the sweep still queued",
        Duration::from_secs(30),
        || async move { (pending_uploads_dump(env_ref).await.len() == 1).then_some(()) },
    )
    .await;
    assert_eq!(cdn.files_on_disk().len(), 1);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_switch_that_cannot_lock_the_apis_own_rows_fails_clearly_and_switches_nothing() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "locked").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    alice.send(&api, &project, Some(&bob), None, "before").await;
    let (_, before) = live_read_models_at_head(&env).await;
    // A transaction left open by hand on the table, as in an operator's `psql`.
    let pool = env.pool().await;
    let mut holder = pool.begin().await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE {LIVE_SCHEMA}.pending_uploads IN ROW EXCLUSIVE MODE"
    ))
    .execute(&mut *holder)
    .await
    .unwrap();

    let refused = nexysync_projections::rebuild(&env.database_url(), &env.log().await, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("could not lock") && refused.contains("run the rebuild again"),
        "{refused}"
    );
    assert_eq!(read_models_dump(&env).await, before, "nothing was switched");
    assert_eq!(
        inbox_len(&bob, &api).await.unwrap(),
        1,
        "the API still serves"
    );

    holder.rollback().await.unwrap();
    nexysync_projections::rebuild(&env.database_url(), &env.log().await, |_| {})
        .await
        .unwrap();
    assert_eq!(read_models_dump(&env).await, before);
    alice.send(&api, &project, Some(&bob), None, "after").await;
    let inbox = eventually("bob's second message", Duration::from_secs(30), || async {
        inbox_len(&bob, &api).await.ok().filter(|n| *n == 2)
    })
    .await;
    assert_eq!(inbox, 2);
    api.stop().await;
    env.cleanup().await;
}

/// `count` messages from `from` to `to`, appended to the log one after the other (much
/// faster than through the API, whose checks these need not pass).
async fn append_many(
    env: &TestEnv,
    project: &TestProject,
    from: &TestAgent,
    to: &TestAgent,
    count: usize,
) {
    let log = env.log().await;
    for i in 0..count {
        log.append(from.message(project, Some(to), None, &format!("n{i}")))
            .await
            .unwrap();
    }
}

/// `count` messages from `from` to `to`, [`SENDERS`] at a time.
async fn send_many(
    api: &TestApi,
    project: &TestProject,
    from: &TestAgent,
    to: &TestAgent,
    count: usize,
) {
    for start in (0..count).step_by(SENDERS) {
        let sends = (start..count.min(start + SENDERS)).map(|i| async move {
            from.send(api, project, Some(to), None, &format!("n{i}"))
                .await
        });
        futures::future::join_all(sends).await;
    }
}

/// The log deduplicates event ids per project, so a message of another project can be
/// appended under an id already taken (the API refuses one it finds taken, but only looks
/// when it must: appended here around it); the read models keep the first, live or rebuilt.
/// The two land in different runs of the rebuild, which the loader then writes one after
/// the other (whether they would otherwise race is up to timing, not forced here); the
/// copy's run is long enough to be written with `COPY`, which fails on the taken id, so the
/// run is written again with the live projector's statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_id_reused_by_another_project_leaves_the_first_message_in_place_after_a_rebuild()
{
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let first = TestProject::create(&api, "first").await;
    let (alice, bob) = (
        first.add_agent(&api, "alice").await,
        first.add_agent(&api, "bob").await,
    );
    let second = TestProject::create(&api, "second").await;
    let (dave, erin) = (
        second.add_agent(&api, "dave").await,
        second.add_agent(&api, "erin").await,
    );
    // Around the end of a rebuild's first run (10,000 messages), so that the two copies
    // land in different runs. So many go straight to the log, as the API would append them.
    append_many(&env, &first, &alice, &bob, 9_985).await;
    let original = alice
        .send(&api, &first, Some(&bob), None, "the original")
        .await;
    send_many(&api, &first, &alice, &bob, 20).await;
    let mut copy = Draft::new(
        second.id,
        Actor::Agent(dave.id),
        EventBody::MessageSent(MessageSent {
            to: Some(erin.id),
            reply_to: None,
            ttl_s: None,
            topic_ix: None,
        }),
    );
    copy.id = original.id;
    let copy = copy
        .seal(&second.keys(), fields::BODY, b"the copy")
        .sign(&dave.key);
    let (status, answer) = dave.post(&api, &copy).await;
    assert_eq!(status, 409, "the API finds the id taken: {answer}");
    assert_eq!(answer["error"]["code"], "message_id_taken", "{answer}");
    env.log().await.append(copy).await.unwrap();
    send_many(&api, &second, &dave, &erin, 400).await;

    let (_, live) = live_read_models_at_head(&env).await;
    nexysync_projections::rebuild(&env.database_url(), &env.log().await, |_| {})
        .await
        .unwrap();
    let rebuilt = read_models_dump(&env).await;
    for ((table, before), (_, after)) in live.iter().zip(&rebuilt) {
        assert!(before == after, "{table} differs after the rebuild");
    }
    let path = format!("/v1/messages/{}", original.id);
    let (status, answer) = bob.get(&api, &path).await;
    assert_eq!(
        status, 200,
        "the first project's message is still there: {answer}"
    );
    let (status, _) = erin.get(&api, &path).await;
    assert_eq!(status, 404, "the copy never reached the second project");
    api.stop().await;
    env.cleanup().await;
}

/// Rounds of [`SENDERS`] messages sent at once, in [`a_rebuild_makes_the_same_read_models_as_the_live_projector`].
const ROUNDS: usize = 100;
const SENDERS: usize = 30;

/// Makes the live read models look as if an older build had made them: its latest
/// migration not applied.
async fn age_the_read_models(env: &TestEnv) {
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&env.pool().await)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_server_finding_older_read_models_rebuilds_them_before_it_serves() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "upgraded").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    for i in 0..20 {
        alice
            .send(&api, &project, Some(&bob), None, &format!("m{i}"))
            .await;
    }
    api.stop().await;
    age_the_read_models(&env).await;

    // Without projectors, the server refuses and says what to run.
    let mut settings = env.settings();
    settings.run_projectors = false;
    let refused = nexysync_api::Application::build(settings)
        .await
        .unwrap_err();
    assert!(
        format!("{refused:#}").contains("nexysync projections rebuild"),
        "{refused:#}"
    );

    // With them, it rebuilds first, then serves everything.
    let api = env.spawn_api().await;
    assert_eq!(
        db::version_of(&env.pool().await, LIVE_SCHEMA)
            .await
            .unwrap(),
        SchemaVersion::Current {
            version: db::expected_version()
        }
    );
    assert_eq!(inbox_len(&bob, &api).await.unwrap(), 20);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn projections_status_and_rebuild_work_from_the_command_line() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "operated").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let sent = alice.send(&api, &project, Some(&bob), None, "hello").await;
    bob.get(&api, &format!("/v1/messages?min_seq={}", sent.seq))
        .await;
    let envs = [
        ("NEXYSYNC_NATS_URL", nats_url()),
        ("DATABASE_URL", env.database_url()),
        ("NEXYSYNC_STREAM_PREFIX", env.prefix.clone()),
        ("NEXYSYNC_HOME", std::env::temp_dir().display().to_string()),
    ];

    let status = nexysync_output(&["projections", "status", "--json"], &envs).await;
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    let models: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(models[0]["name"], "read_models");
    assert_eq!(models[0]["current"], true);
    assert_eq!(models[0]["checkpoint"], sent.seq.0);
    assert_eq!(models[0]["lag"], 0);

    let unknown = nexysync_output(&["projections", "rebuild", "inboxes"], &envs).await;
    assert_eq!(unknown.code, Some(1));
    assert!(unknown.stderr.contains("read_models"), "{}", unknown.stderr);

    let rebuilt = nexysync_output(&["projections", "rebuild"], &envs).await;
    assert_eq!(rebuilt.code, Some(0), "{}", rebuilt.stderr);
    assert!(
        rebuilt.stdout.contains("readers switched"),
        "{}",
        rebuilt.stdout
    );
    let (status, page) = bob.get(&api, "/v1/messages").await;
    assert_eq!(status, 200);
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    api.stop().await;
    env.cleanup().await;
}

//! Rebuilding the read models from the log with no downtime, against real NATS and
//! Postgres: readers see no error and never an older state, writers keep writing, and a
//! server that finds read models of an older version rebuilds them before serving.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nexysync_projections::db::{self, SchemaVersion, LIVE_SCHEMA};
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

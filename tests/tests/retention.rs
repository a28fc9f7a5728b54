//! Retention end to end through the real binaries (`nexysync up` with a fast pruner, two
//! agents on their own `nexysync-mcp`): a message with a short TTL disappears from every
//! read path the moment it expires; once the pruner ran, its ciphertext and its
//! reaction's are gone from the NATS store and from a pg_dump, the thread shows where it
//! was, and `nexysync audit verify` still passes over the gap. Then the project's
//! default and maximum TTL, and a policy change that applies to later messages only.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nexysync_domain::event::{Envelope, EventBody};
use nexysync_domain::ids::{ProjectId, Seq};
use nexysync_log::{EventLog, Prefix};
use nexysync_tests::eventually;
use nexysync_tests::processes::{nexysync, nexysync_output};
use nexysync_tests::system::{contains, LocalSystem, McpAgent};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(30);

/// A fast pruner: every second, erasing as soon as a message expired.
fn fast_pruner() -> Vec<(&'static str, String)> {
    vec![
        ("NEXYSYNC_PRUNE_INTERVAL_S", "1".into()),
        ("NEXYSYNC_PRUNE_GRACE_S", "0".into()),
    ]
}

fn project_id(system: &LocalSystem, name: &str) -> ProjectId {
    let path = system.dir("home").join(format!("projects/{name}.json"));
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    ProjectId::parse(file["id"].as_str().unwrap()).unwrap()
}

async fn open_log(system: &LocalSystem) -> EventLog {
    let client = async_nats::connect(&system.nats.url).await.unwrap();
    EventLog::open(client, Prefix::parse("nexysync").unwrap())
        .await
        .unwrap()
}

/// The base64 ciphertext of `field` in the stored event at `seq`.
async fn ciphertext(log: &EventLog, project: ProjectId, seq: Seq, field: &str) -> String {
    let stored = log.stored_event(project, seq).await.unwrap().unwrap();
    let value: Value = serde_json::from_slice(&stored).unwrap();
    value["sealed"][field]["c"].as_str().unwrap().to_owned()
}

/// The project's events after `after`, as stored now.
async fn events_after(log: &EventLog, project: ProjectId, after: Seq) -> Vec<(Seq, Envelope)> {
    let last = log.last_seq().await.unwrap();
    let mut out = Vec::new();
    for seq in after.0 + 1..=last {
        if let Some(stored) = log.stored_event(project, Seq(seq)).await.unwrap() {
            out.push((Seq(seq), serde_json::from_slice(&stored).unwrap()));
        }
    }
    out
}

fn ids(answer: &Value) -> Vec<String> {
    answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// What a resumed `GET /v1/stream?since_seq=0` sends before `ready`.
async fn stream_backlog(system: &LocalSystem, agent: &str) -> String {
    let key = system.dir(agent).join(".nexysync/key");
    let key: Value = serde_json::from_str(&std::fs::read_to_string(key).unwrap()).unwrap();
    let token = key["token"].as_str().unwrap();
    let mut response = reqwest::Client::new()
        .get(format!("{}/v1/stream?since_seq=0", system.server.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    while !text.contains("event: ready") {
        let chunk = tokio::time::timeout(DEADLINE, response.chunk())
            .await
            .expect("the stream answers")
            .unwrap()
            .expect("the stream stays open until ready");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

/// The read models' rows of the message at `seq`: its own and its inbox entries.
async fn rows_at(system: &LocalSystem, seq: Seq) -> (i64, i64) {
    let pool = sqlx::PgPool::connect(&system.database_url()).await.unwrap();
    let count = |table: &str| format!("SELECT count(*) FROM read_models.{table} WHERE seq = $1");
    let mut counts = [0i64; 2];
    for (n, table) in counts.iter_mut().zip(["messages", "inbox_entries"]) {
        *n = sqlx::query_scalar(&count(table))
            .bind(seq.0 as i64)
            .fetch_one(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    (counts[0], counts[1])
}

async fn send(agent: &McpAgent, arguments: Value) -> (String, Seq) {
    let sent = agent.message(arguments).await;
    let id = sent["id"].as_str().unwrap().to_owned();
    (id, Seq(sent["seq"].as_u64().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_message_vanishes_at_once_then_is_erased_and_the_audit_still_verifies() {
    let system = LocalSystem::start(&fast_pruner()).await;
    system.create_project("demo").await;
    let alice = system.add_agent("demo", "alice").await;
    let bob = system.add_agent("demo", "bob").await;
    let project = project_id(&system, "demo");
    let log = open_log(&system).await;

    let (root, _) = send(
        &alice,
        json!({"action": "broadcast", "body": "the plan, kept"}),
    )
    .await;
    // Long enough to react to it and reply to it before it expires.
    let (mortal, mortal_seq) = send(
        &bob,
        json!({"action": "send", "to": "alice", "body": "gone soon", "reply_to": root, "ttl_s": 5}),
    )
    .await;
    eventually("alice to have the message", DEADLINE, || async {
        let answer = alice.message(json!({"action": "check", "since": 0})).await;
        ids(&answer).contains(&mortal).then_some(())
    })
    .await;
    alice
        .message(json!({"action": "react", "id": mortal, "emoji": "👍"}))
        .await;
    let (child, _) = send(
        &alice,
        json!({"action": "send", "to": "bob", "body": "answering the mortal one", "reply_to": mortal}),
    )
    .await;
    let body_c = ciphertext(&log, project, mortal_seq, "body").await;
    let reaction = eventually("the reaction in the log", DEADLINE, || async {
        events_after(&log, project, mortal_seq)
            .await
            .into_iter()
            .find(|(_, e)| matches!(e.body, EventBody::ReactionAdded(_)))
    })
    .await;
    let emoji_c = ciphertext(&log, project, reaction.0, "emoji").await;
    let dump = system.pg_dump().await;
    assert!(
        contains(&dump, body_c.as_bytes()),
        "stored before it expires"
    );

    // Expired: refused by `read` at once, whether or not the pruner ran yet.
    let refused = eventually("the message to expire", DEADLINE, || async {
        let result = alice
            .raw("ns_message", json!({"action": "read", "id": mortal}))
            .await;
        (result.is_error == Some(true)).then_some(result)
    })
    .await;
    assert!(format!("{refused:?}").contains("message_not_found"));
    let inbox = alice
        .message(json!({"action": "check", "since": 0, "limit": 100}))
        .await;
    assert!(!ids(&inbox).contains(&mortal), "not in the inbox: {inbox}");
    let thread = alice
        .message(json!({"action": "thread", "id": child}))
        .await;
    assert!(
        !ids(&thread).contains(&mortal),
        "not in the thread: {thread}"
    );
    assert_eq!(
        thread["expired"][0]["id"], mortal,
        "a placeholder: {thread}"
    );
    assert!(ids(&thread).contains(&root) && ids(&thread).contains(&child));
    let backlog = stream_backlog(&system, "alice").await;
    assert!(!backlog.contains(&mortal), "not resumed: {backlog}");
    assert!(
        alice
            .refused(
                "ns_message",
                json!({"action": "react", "id": mortal, "emoji": "🎉"})
            )
            .await
            .contains("message_not_found"),
        "nothing more derives from it"
    );

    // The pruner's tombstone, then the erasure.
    let tombstone = eventually("the pruner's tombstone", DEADLINE, || async {
        events_after(&log, project, mortal_seq)
            .await
            .into_iter()
            .find(|(_, e)| matches!(e.body, EventBody::EventsErased(_)))
    })
    .await;
    let EventBody::EventsErased(erased) = &tombstone.1.body else {
        unreachable!()
    };
    let erased_seqs: Vec<Seq> = erased.erased.iter().map(|e| e.seq).collect();
    assert_eq!(erased_seqs, [mortal_seq, reaction.0]);
    eventually("the erased events gone from the log", DEADLINE, || async {
        let message = log.stored_event(project, mortal_seq).await.unwrap();
        let reacted = log.stored_event(project, reaction.0).await.unwrap();
        (message.is_none() && reacted.is_none()).then_some(())
    })
    .await;
    let dump = eventually("the read models to drop it", DEADLINE, || async {
        let dump = system.pg_dump().await;
        (!contains(&dump, body_c.as_bytes())).then_some(dump)
    })
    .await;
    assert!(!contains(&dump, emoji_c.as_bytes()), "reaction gone too");
    assert_eq!(
        rows_at(&system, mortal_seq).await,
        (0, 0),
        "its inbox entry too"
    );
    let thread = alice
        .message(json!({"action": "thread", "id": child}))
        .await;
    assert_eq!(thread["expired"][0]["id"], mortal, "still a placeholder");
    assert_eq!(ids(&thread), [root.clone(), child.clone()]);

    let verified = nexysync(&["audit", "verify", "--project", "demo"], &system.envs).await;
    assert!(verified.contains("erased by retention"), "{verified}");
    // Rebuilt from the log, which no longer holds it: the same placeholder, no content.
    nexysync(&["projections", "rebuild"], &system.envs).await;
    let thread = alice
        .message(json!({"action": "thread", "id": child}))
        .await;
    assert_eq!(
        thread["expired"][0]["id"], mortal,
        "a placeholder after a rebuild"
    );
    assert_eq!(ids(&thread), [root.clone(), child.clone()]);
    assert!(!contains(&system.pg_dump().await, body_c.as_bytes()));
    let replay = nexysync_output(
        &[
            "audit",
            "export",
            "--project",
            "demo",
            "--out",
            system.dir("x").join("bundle").to_str().unwrap(),
        ],
        &system.envs,
    )
    .await;
    assert_eq!(replay.code, Some(0), "{replay:?}");
    let bundle = nexysync_output(
        &[
            "audit",
            "verify",
            "--bundle",
            system.dir("x").join("bundle").to_str().unwrap(),
        ],
        &system.envs,
    )
    .await;
    assert_eq!(bundle.code, Some(0), "{bundle:?}");

    alice.stop().await;
    bob.stop().await;
    drop(log);
    for (path, bytes) in system.stop().await {
        for (what, secret) in [("message", &body_c), ("reaction", &emoji_c)] {
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "the {what}'s ciphertext is still in {}",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_project_default_and_maximum_apply_and_a_new_default_only_to_later_messages() {
    let system = LocalSystem::start(&fast_pruner()).await;
    nexysync(
        &[
            "project",
            "create",
            "kept",
            "--server",
            &system.server.url,
            "--default-ttl",
            "1h",
            "--max-ttl",
            "2h",
        ],
        &system.envs,
    )
    .await;
    let alice = system.add_agent("kept", "alice").await;
    let bob = system.add_agent("kept", "bob").await;

    let refused = alice
        .refused(
            "ns_message",
            json!({"action": "broadcast", "body": "too long", "ttl_s": 3 * 3600}),
        )
        .await;
    assert!(refused.contains("ttl_above_maximum"), "{refused}");
    assert!(
        refused.contains("maximum of 7200 seconds"),
        "names the maximum: {refused}"
    );

    // Under the 1h default: still there after a later message expired.
    let (early, _) = send(
        &alice,
        json!({"action": "broadcast", "body": "by default 1h"}),
    )
    .await;
    let set = nexysync(
        &[
            "project",
            "retention",
            "kept",
            "--server",
            &system.server.url,
            "--default-ttl",
            "2s",
        ],
        &system.envs,
    )
    .await;
    assert!(set.contains("Retention of project `kept` set"), "{set}");
    let (late, late_seq) = send(
        &alice,
        json!({"action": "broadcast", "body": "by default 2s"}),
    )
    .await;
    // Projected long before its 2 s run out (a broadcast has no inbox entry).
    eventually("the broadcast projected", DEADLINE, || async {
        (rows_at(&system, late_seq).await == (1, 0)).then_some(())
    })
    .await;
    eventually(
        "the later message to expire by the new default",
        DEADLINE,
        || async {
            let answer = bob.message(json!({"action": "check", "since": 0})).await;
            (!ids(&answer).contains(&late)).then_some(())
        },
    )
    .await;
    // Erased by the pruner.
    eventually("the pruner to erase it", DEADLINE, || async {
        (rows_at(&system, late_seq).await == (0, 0)).then_some(())
    })
    .await;
    let answer = bob.message(json!({"action": "check", "since": 0})).await;
    assert!(
        ids(&answer).contains(&early),
        "the earlier one keeps its 1h: {answer}"
    );
    // The new policy has no maximum: a long TTL is accepted now.
    alice
        .message(json!({"action": "broadcast", "body": "long", "ttl_s": 3 * 3600}))
        .await;
    let verified = nexysync(&["audit", "verify", "--project", "kept"], &system.envs).await;
    assert!(verified.contains("Verified project"), "{verified}");

    alice.stop().await;
    bob.stop().await;
    system.stop().await;
}

//! ns_meta end to end through the real binaries: `nexysync up`, provisioning with the
//! CLI, and one `nexysync-mcp` process per agent over stdio, calling ns_meta whoami,
//! update_role, agents, presence and quota; a quota set through the environment is what
//! `quota` reports, and exceeding it is a clear error from ns_message. Then the NATS
//! store and a `pg_dump` are searched for the role and description: neither may be there.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nexysync_tests::processes::{nexysync, RunningServer, ThrowawayNats};
use nexysync_tests::system::McpAgent as Agent;
use nexysync_tests::{eventually, postgres_server_url, unique_name};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_use_ns_meta_through_the_real_binaries() {
    nexysync_tests::init_logging();
    let root = tempfile::tempdir().unwrap();
    let dir = |name: &str| {
        let path = root.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    };
    let nats = ThrowawayNats::start(&dir("nats")).await;
    let database = unique_name("meta");
    let data_dir = dir("data");
    let envs = vec![
        ("NEXYSYNC_NATS_URL", nats.url.clone()),
        (
            "DATABASE_URL",
            format!("{}/{database}", postgres_server_url()),
        ),
        ("NEXYSYNC_HOME", dir("home").display().to_string()),
        ("NEXYSYNC_DATA_DIR", data_dir.display().to_string()),
        ("NEXYSYNC_ADMIN_TOKEN", String::new()),
        ("NEXYSYNC_QUOTA_MESSAGES_PER_DAY", "2".into()),
    ];
    let server = RunningServer::start(&envs, &data_dir).await;
    nexysync(
        &["project", "create", "demo", "--server", &server.url],
        &envs,
    )
    .await;
    for name in ["alice", "bob"] {
        let agent_dir = dir(name).display().to_string();
        nexysync(&["agent", "add", "demo", name, "--dir", &agent_dir], &envs).await;
    }
    let alice = Agent::start(&dir("alice")).await;
    let bob = Agent::start(&dir("bob")).await;

    let me = alice.call("ns_meta", json!({"action": "whoami"})).await;
    assert_eq!(me["agent_name"], "alice");
    assert_eq!(me["project_name"], "demo");
    let canary = format!("canary-{}", hex::encode(rand::random::<[u8; 8]>()));
    let role = format!("planner {canary}");
    alice
        .call(
            "ns_meta",
            json!({"action": "update_role", "role": role, "description": format!("{canary} splits the work")}),
        )
        .await;

    let agents = eventually(
        "bob to see alice's role with both online",
        DEADLINE,
        || async {
            let answer = bob.call("ns_meta", json!({"action": "agents"})).await;
            let agents = answer["agents"].as_array()?.clone();
            let alice = agents.iter().find(|a| a["name"] == "alice")?;
            (alice["role"] == role.as_str() && agents.iter().all(|a| a["online"] == true))
                .then_some(agents)
        },
    )
    .await;
    assert_eq!(agents.len(), 2);
    let presence = bob.call("ns_meta", json!({"action": "presence"})).await;
    let online: Vec<&str> = presence["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["online"] == true)
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(online, ["alice", "bob"]);

    for body in ["one", "two"] {
        alice
            .call(
                "ns_message",
                json!({"action": "send", "to": "bob", "body": body}),
            )
            .await;
    }
    let refused = alice
        .raw(
            "ns_message",
            json!({"action": "send", "to": "bob", "body": "three"}),
        )
        .await;
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    let text = format!("{refused:?}");
    assert!(text.contains("quota_exceeded"), "{text}");
    assert!(text.contains("messages_per_day"), "{text}");
    let quota = bob.call("ns_meta", json!({"action": "quota"})).await;
    assert_eq!(quota["limits"]["messages_per_day"], 2);
    assert_eq!(quota["usage"]["messages_today"], 2);
    assert!(quota["messages_reset_at"]
        .as_str()
        .unwrap()
        .ends_with("T00:00:00Z"));

    for agent in [alice, bob] {
        let _ = agent.client.cancel().await;
    }
    let dump = tokio::process::Command::new("pg_dump")
        .arg(format!("{}/{database}", postgres_server_url()))
        .output()
        .await
        .expect("pg_dump runs");
    assert!(dump.status.success());
    server.stop().await;
    nats.stop().await;
    let mut stored = vec![(root.path().join("pg_dump"), dump.stdout)];
    let mut pending = vec![root.path().join("nats")];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                stored.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    assert!(
        stored.iter().any(|(_, bytes)| bytes.len() > 1000),
        "the NATS store holds the events"
    );
    for (path, bytes) in &stored {
        assert!(
            !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "the role canary is in {}",
            path.display()
        );
    }
    let pool = sqlx::PgPool::connect(&format!("{}/postgres", postgres_server_url()))
        .await
        .unwrap();
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    ))
    .execute(&pool)
    .await
    .unwrap();
}

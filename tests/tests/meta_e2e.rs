//! ns_meta end to end through the real binaries: `nexysync up`, provisioning with the
//! CLI, and one `nexysync-mcp` process per agent over stdio, calling ns_meta whoami,
//! update_role, agents, presence and quota; a quota set through the environment is what
//! `quota` reports, and exceeding it is a clear error from ns_message. Then the NATS
//! store and a `pg_dump` are searched for the role and description: neither may be there.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nexysync_tests::eventually;
use nexysync_tests::system::{contains, LocalSystem};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_use_ns_meta_through_the_real_binaries() {
    let system = LocalSystem::start(&[("NEXYSYNC_QUOTA_MESSAGES_PER_DAY", "2".into())]).await;
    system.create_project("demo").await;
    let alice = system.add_agent("demo", "alice").await;
    let bob = system.add_agent("demo", "bob").await;

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
        agent.stop().await;
    }
    let dump = system.pg_dump().await;
    let mut stored = system.stop().await;
    assert!(
        stored.iter().any(|(_, bytes)| bytes.len() > 1000),
        "the NATS store holds the events"
    );
    stored.push(("pg_dump".into(), dump));
    for (path, bytes) in &stored {
        assert!(
            !contains(bytes, canary.as_bytes()),
            "the role canary is in {}",
            path.display()
        );
    }
}

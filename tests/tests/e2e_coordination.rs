//! Coordination through the real binaries (`nexysync up`, `nexysync agent add`, one
//! `nexysync-mcp` per agent over stdio): a lease taken with compare-and-set, refused to
//! another agent with the holder's revision, gone by itself when its TTL passes; presence
//! that changes when an agent's `nexysync-mcp` goes away; and an agent of another project
//! refused every resource kind of this one, learning nothing of it.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nexysync_tests::system::{LocalSystem, McpAgent};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(30);
const LEASE: &str = "lease:src/main.rs";

fn online(answer: &Value, name: &str) -> Option<bool> {
    answer["agents"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == name)
        .and_then(|a| a["online"].as_bool())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_refused_to_another_agent_then_expires_by_itself() {
    let system = LocalSystem::start(&[]).await;
    system.create_project("demo").await;
    let alice = system.add_agent("demo", "alice").await;
    let bob = system.add_agent("demo", "bob").await;

    let lease = |holder: &str| json!({"action": "set", "key": LEASE, "value": holder, "expected_revision": 0, "ttl_s": 2});
    let taken = alice.call("ns_kv", lease("alice")).await;
    let revision = taken["revision"].as_u64().unwrap();

    // Bob finds it held: the conflict names the revision he would have to match.
    let refused = bob.refused("ns_kv", lease("bob")).await;
    assert!(refused.contains("revision_mismatch"), "{refused}");
    assert!(refused.contains(&revision.to_string()), "{refused}");
    let held = bob
        .call("ns_kv", json!({"action": "get", "key": LEASE}))
        .await;
    assert_eq!(held["entry"]["value"], "alice", "{held}");

    // Nobody releases it: its TTL does, and then Bob takes it.
    bob.call_until(
        "ns_kv",
        json!({"action": "get", "key": LEASE}),
        DEADLINE,
        |answer| answer["found"] == false,
    )
    .await;
    let mine = bob.call("ns_kv", lease("bob")).await;
    assert!(mine["revision"].as_u64().unwrap() > revision);

    for agent in [alice, bob] {
        agent.stop().await;
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_goes_offline_for_the_others_when_its_mcp_server_stops() {
    let system = LocalSystem::start(&[]).await;
    system.create_project("demo").await;
    let alice = system.add_agent("demo", "alice").await;
    let bob = system.add_agent("demo", "bob").await;

    let presence = json!({"action": "presence"});
    alice
        .call_until("ns_meta", presence.clone(), DEADLINE, |a| {
            online(a, "bob") == Some(true)
        })
        .await;
    bob.stop().await;
    alice
        .call_until("ns_meta", presence, DEADLINE, |a| {
            online(a, "bob") == Some(false)
        })
        .await;
    alice.stop().await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_of_another_project_can_read_or_change_nothing_of_this_one() {
    let system = LocalSystem::start(&[]).await;
    system.create_project("demo").await;
    system.create_project("other").await;
    let alice = system.add_agent("demo", "alice").await;
    let bob = system.add_agent("demo", "bob").await;
    let mallory = system.add_agent("other", "mallory").await;

    let canary = format!("canary-{}", hex::encode(rand::random::<[u8; 8]>()));
    let sent = alice
        .call(
            "ns_message",
            json!({"action": "broadcast", "body": format!("{canary} plan")}),
        )
        .await;
    let message = sent["id"].as_str().unwrap().to_owned();
    let shared = alice
        .call(
            "ns_ref",
            json!({"action": "share", "path": "src/main.rs", "start_line": 1, "end_line": 1,
                   "snippet": format!("// {canary}")}),
        )
        .await;
    let reference = shared["id"].as_str().unwrap().to_owned();
    alice
        .call(
            "ns_kv",
            json!({"action": "set", "key": LEASE, "value": canary.clone()}),
        )
        .await;
    let uploaded = alice
        .call(
            "ns_file",
            json!({"action": "upload", "content": format!("{canary} file"), "name": "plan.md"}),
        )
        .await;
    let file = uploaded["id"].as_str().unwrap().to_owned();
    bob.call_until(
        "ns_message",
        json!({"action": "check", "since": 0}),
        DEADLINE,
        |a| a["messages"].as_array().is_some_and(|m| !m.is_empty()),
    )
    .await;

    // Every read and change of this project's things by another project's agent is
    // refused, and names nothing of them.
    for (tool, arguments) in [
        ("ns_message", json!({"action": "read", "id": message})),
        ("ns_message", json!({"action": "thread", "id": message})),
        (
            "ns_message",
            json!({"action": "react", "id": message, "emoji": "👍"}),
        ),
        ("ns_message", json!({"action": "ack", "id": message})),
        ("ns_message", json!({"action": "pin", "id": message})),
        ("ns_message", json!({"action": "delete", "id": message})),
        (
            "ns_message",
            json!({"action": "send", "to": "alice", "body": "hi"}),
        ),
        ("ns_ref", json!({"action": "get", "id": reference})),
        ("ns_file", json!({"action": "read", "id": file})),
        ("ns_file", json!({"action": "delete", "id": file})),
    ] {
        let refused = mallory.refused(tool, arguments).await;
        assert!(!refused.contains(&canary), "{refused}");
    }
    let kv = mallory
        .call("ns_kv", json!({"action": "get", "key": LEASE}))
        .await;
    assert_eq!(kv["found"], false, "{kv}");
    for (tool, arguments) in [
        ("ns_message", json!({"action": "check", "since": 0})),
        ("ns_ref", json!({"action": "list"})),
        ("ns_kv", json!({"action": "list"})),
        ("ns_file", json!({"action": "list"})),
        ("ns_meta", json!({"action": "agents"})),
        ("ns_meta", json!({"action": "presence"})),
    ] {
        let answer = mallory.call(tool, arguments).await.to_string();
        for secret in [canary.as_str(), "alice", "bob", &message, &reference, &file] {
            assert!(!answer.contains(secret), "{tool} shows {secret}: {answer}");
        }
    }

    // Alice's message is untouched by all that.
    let read = bob
        .call("ns_message", json!({"action": "read", "id": message}))
        .await;
    assert_eq!(read["body"], format!("{canary} plan"), "{read}");
    assert_ne!(read["deleted"], true, "{read}");
    assert_ne!(read["pinned"], true, "{read}");
    let listed = bob.call("ns_file", json!({"action": "list"})).await;
    assert!(
        listed.to_string().contains(&file),
        "the file is still there: {listed}"
    );
    assert!(
        read.get("reactions").is_none_or(|r| r == &json!([])),
        "{read}"
    );
    let agents: Vec<McpAgent> = vec![alice, bob, mallory];
    for agent in agents {
        agent.stop().await;
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_kv_lists_and_deletes_and_a_login_work_through_the_real_binary() {
    let system = LocalSystem::start(&[]).await;
    system.create_project("demo").await;
    let alice = system.add_agent("demo", "alice").await;
    let bob = system.add_agent("demo", "bob").await;

    // ns_ref: share, then the other agent lists and gets it whole.
    let shared = alice
        .call(
            "ns_ref",
            json!({"action": "share", "path": "src/lib.rs", "start_line": 3, "end_line": 4,
                   "snippet": "fn a() {}\nfn b() {}", "language": "rust", "to": "bob"}),
        )
        .await;
    let id = shared["id"].as_str().unwrap().to_owned();
    let listed = bob
        .call_until("ns_ref", json!({"action": "list"}), DEADLINE, |a| {
            a["refs"].as_array().is_some_and(|r| !r.is_empty())
        })
        .await;
    assert_eq!(listed["refs"][0]["ref"]["id"], id.as_str(), "{listed}");
    let got = bob.call("ns_ref", json!({"action": "get", "id": id})).await;
    assert_eq!(got["ref"]["snippet"], "fn a() {}\nfn b() {}", "{got}");
    assert_eq!(got["ref"]["from"], "alice", "{got}");

    // ns_kv: set, list, delete with the revision; then it is gone for everyone.
    let set = alice
        .call(
            "ns_kv",
            json!({"action": "set", "key": "build:main", "value": "green"}),
        )
        .await;
    let revision = set["revision"].as_u64().unwrap();
    let listed = bob
        .call_until("ns_kv", json!({"action": "list"}), DEADLINE, |a| {
            a["entries"].as_array().is_some_and(|e| !e.is_empty())
        })
        .await;
    assert_eq!(
        listed["entries"][0]["entry"]["key"], "build:main",
        "{listed}"
    );
    alice
        .call(
            "ns_kv",
            json!({"action": "delete", "key": "build:main", "expected_revision": revision}),
        )
        .await;
    bob.call_until(
        "ns_kv",
        json!({"action": "get", "key": "build:main"}),
        DEADLINE,
        |a| a["found"] == false,
    )
    .await;

    // ns_auth login: bob's server switches to alice's key file and acts as her.
    let alice_key = system.dir("alice").join(".nexysync/key");
    let login = bob
        .call(
            "ns_auth",
            json!({"action": "login", "path": alice_key.display().to_string()}),
        )
        .await;
    assert!(login.to_string().contains("alice"), "{login}");
    let status = bob.call("ns_auth", json!({"action": "status"})).await;
    assert!(status.to_string().contains("alice"), "{status}");

    for agent in [alice, bob] {
        agent.stop().await;
    }
    system.stop().await;
}

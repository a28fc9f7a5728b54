//! Message state end to end through the real binaries: `nexysync up`, two agents each on
//! their own `nexysync-mcp` over stdio. React (twice takes it back), ack and
//! `unread_only`, pin and unpin, delete (the thread shows the deleted node); then the
//! server's storage is searched for the canary reaction and message text.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use nexysync_tests::eventually;
use nexysync_tests::system::{contains, LocalSystem};
use serde_json::{json, Value};

const DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

fn ids(answer: &Value) -> Vec<String> {
    answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_react_ack_pin_and_delete_through_the_real_binaries() {
    let system = LocalSystem::start(&[]).await;
    system.create_project("demo").await;
    let alice = system.add_agent("demo", "alice").await;
    let bob = system.add_agent("demo", "bob").await;
    let canary = format!("canary-{}", hex::encode(rand::random::<[u8; 8]>()));
    // The reaction is a short label rather than an emoji, so it can be searched for.
    let label = format!("{canary}-react");

    let plan = alice
        .message(json!({"action": "broadcast", "body": format!("{canary} the plan")}))
        .await;
    let plan_id = plan["id"].as_str().unwrap().to_owned();
    let notes = alice
        .message(json!({"action": "broadcast", "body": format!("{canary} notes")}))
        .await;
    let notes_id = notes["id"].as_str().unwrap().to_owned();
    let unread = eventually("bob to have both messages unread", DEADLINE, || async {
        let answer = bob
            .message(json!({"action": "check", "unread_only": true}))
            .await;
        (ids(&answer).len() == 2).then_some(answer)
    })
    .await;
    assert_eq!(ids(&unread), [plan_id.clone(), notes_id.clone()]);

    // React twice with the same emoji: the second takes it back.
    let reacted = bob
        .message(json!({"action": "react", "id": plan_id, "emoji": "👍"}))
        .await;
    assert_eq!(reacted["reaction"], "added");
    let read = eventually("alice to see bob's reaction", DEADLINE, || async {
        let answer = alice
            .message(json!({"action": "read", "id": plan_id}))
            .await;
        answer.get("reactions").is_some().then_some(answer)
    })
    .await;
    assert_eq!(read["reactions"][0]["emoji"], "👍");
    assert_eq!(read["reactions"][0]["by"], "bob");
    let again = bob
        .message(json!({"action": "react", "id": plan_id, "emoji": "👍"}))
        .await;
    assert_eq!(again["reaction"], "removed");
    eventually("alice to see the reaction gone", DEADLINE, || async {
        let answer = alice
            .message(json!({"action": "read", "id": plan_id}))
            .await;
        answer.get("reactions").is_none().then_some(())
    })
    .await;
    bob.message(json!({"action": "react", "id": notes_id, "emoji": label}))
        .await;

    // Ack one; unread_only shows the other.
    bob.message(json!({"action": "ack", "id": plan_id})).await;
    let unread = bob
        .message(json!({"action": "check", "unread_only": true}))
        .await;
    assert_eq!(ids(&unread), std::slice::from_ref(&notes_id));

    // Pin, then unpin.
    bob.message(json!({"action": "pin", "id": notes_id})).await;
    eventually("alice to see the pin", DEADLINE, || async {
        let answer = alice
            .message(json!({"action": "read", "id": notes_id}))
            .await;
        (answer["pinned"] == true).then_some(())
    })
    .await;
    bob.message(json!({"action": "unpin", "id": notes_id}))
        .await;
    let read = bob.message(json!({"action": "read", "id": notes_id})).await;
    assert!(read.get("pinned").is_none(), "{read}");
    assert_eq!(read["reactions"][0]["emoji"], label);

    // Bob replies to the plan; bob may not delete it, alice may; the thread keeps it.
    let reply = bob
        .message(
            json!({"action": "broadcast", "body": format!("{canary} agreed"), "reply_to": plan_id}),
        )
        .await;
    let refused = bob
        .raw("ns_message", json!({"action": "delete", "id": plan_id}))
        .await;
    assert_eq!(refused.is_error, Some(true));
    assert!(
        format!("{refused:?}").contains("not_the_sender"),
        "{refused:?}"
    );
    alice
        .message(json!({"action": "delete", "id": plan_id}))
        .await;
    let thread = eventually("bob to see the deleted node", DEADLINE, || async {
        let answer = bob
            .message(json!({"action": "thread", "id": reply["id"]}))
            .await;
        (answer["messages"][0]["deleted"] == true).then_some(answer)
    })
    .await;
    let nodes = thread["messages"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{thread}");
    assert_eq!(nodes[0]["id"], plan_id);
    assert_eq!(nodes[0]["from"], "alice");
    assert!(nodes[0].get("body").is_none(), "{thread}");
    assert_eq!(nodes[1]["body"], format!("{canary} agreed"));

    alice.stop().await;
    bob.stop().await;
    let dump = system.pg_dump().await;
    let mut stored = system.stop().await;
    assert!(contains(&dump, b"message_reactions"));
    stored.push(("pg_dump".into(), dump));
    for (path, bytes) in &stored {
        assert!(
            !contains(bytes, canary.as_bytes()),
            "the canary is in {}",
            path.display()
        );
    }
}

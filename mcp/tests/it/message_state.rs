//! `ns_message` react, ack, pin, unpin and delete as agents use them, each through its own
//! in-process MCP server against the real API: the toggle, `check` with `unread_only`,
//! what `read` and `thread` show, helpful errors, and another project's agent refused.

use serde_json::{json, Value};

use nexysync_tests::eventually;

use crate::mcp_session::{is_error, structured, text_of, McpSession};
use crate::provision::{self, DEADLINE};

async fn ok(session: &McpSession, arguments: Value) -> Value {
    let answer = session.call("ns_message", arguments).await;
    assert!(!is_error(&answer), "{}", text_of(&answer));
    structured(&answer)
}

/// `read` of `id` by `session`, once `until` holds of the answer (another agent's write
/// reaches the read models a moment later).
async fn read_until(session: &McpSession, id: &str, until: fn(&Value) -> bool) -> Value {
    eventually("the message to show the update", DEADLINE, || async {
        let data = ok(session, json!({"action": "read", "id": id})).await;
        until(&data).then_some(data)
    })
    .await
}

async fn refused(session: &McpSession, arguments: Value) -> String {
    let answer = session.call("ns_message", arguments).await;
    assert!(is_error(&answer), "{}", text_of(&answer));
    text_of(&answer)
}

#[tokio::test]
async fn agents_react_ack_pin_and_delete_through_ns_message() {
    let (env, api, project) = provision::start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;

    let first = ok(&alice, json!({"action": "broadcast", "body": "first"})).await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    let second = ok(
        &alice,
        json!({"action": "broadcast", "body": "second", "reply_to": first_id}),
    )
    .await;
    let second_id = second["id"].as_str().unwrap().to_owned();

    // React, and react again with the same emoji to take it back.
    let reacted = ok(
        &bob,
        json!({"action": "react", "id": first_id, "emoji": "👍"}),
    )
    .await;
    assert_eq!(reacted["reaction"], "added");
    let shown = read_until(&alice, &first_id, |m| m.get("reactions").is_some()).await;
    assert_eq!(
        shown["reactions"],
        json!([{"emoji": "👍", "by": "bob", "at": shown["reactions"][0]["at"]}])
    );
    let taken_back = ok(
        &bob,
        json!({"action": "react", "id": first_id, "emoji": "👍"}),
    )
    .await;
    assert_eq!(taken_back["reaction"], "removed");
    read_until(&alice, &first_id, |m| m.get("reactions").is_none()).await;

    // Ack one; unread_only lists the other.
    let unread = eventually("bob to see both messages", DEADLINE, || async {
        let data = ok(&bob, json!({"action": "check", "unread_only": true})).await;
        (data["messages"].as_array().map_or(0, Vec::len) == 2).then_some(data)
    })
    .await;
    assert_eq!(unread["messages"][0]["id"], first_id);
    ok(&bob, json!({"action": "ack", "id": first_id})).await;
    let unread = ok(&bob, json!({"action": "check", "unread_only": true})).await;
    let ids: Vec<&Value> = unread["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["id"])
        .collect();
    assert_eq!(ids, [&json!(second_id)]);
    let again = refused(&bob, json!({"action": "ack", "id": first_id})).await;
    assert!(again.contains("already_read"), "{again}");

    // Pin and unpin.
    ok(&bob, json!({"action": "pin", "id": second_id})).await;
    read_until(&alice, &second_id, |m| m["pinned"] == true).await;
    ok(&alice, json!({"action": "unpin", "id": second_id})).await;
    let shown = ok(&alice, json!({"action": "read", "id": second_id})).await;
    assert!(shown.get("pinned").is_none(), "{shown}");

    // Only the sender deletes; the thread keeps a deleted node.
    let not_mine = refused(&bob, json!({"action": "delete", "id": first_id})).await;
    assert!(not_mine.contains("not_the_sender"), "{not_mine}");
    ok(&alice, json!({"action": "delete", "id": first_id})).await;
    let thread = eventually("bob to see the deletion", DEADLINE, || async {
        let data = ok(&bob, json!({"action": "thread", "id": second_id})).await;
        (data["messages"][0]["deleted"] == true).then_some(data)
    })
    .await;
    let nodes = thread["messages"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{thread}");
    assert_eq!(nodes[0]["id"], first_id);
    assert_eq!(nodes[0]["deleted"], true);
    assert_eq!(nodes[0]["from"], "alice");
    assert!(nodes[0].get("body").is_none(), "{thread}");
    assert_eq!(nodes[1]["body"], "second");
    let gone = refused(
        &bob,
        json!({"action": "react", "id": first_id, "emoji": "🎉"}),
    )
    .await;
    assert!(gone.contains("message_deleted"), "{gone}");

    drop((alice, bob));
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn bad_state_calls_and_another_projects_agent_get_helpful_errors() {
    let (env, api, project) = provision::start().await;
    let other = provision::Project::create(&api, "other").await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let eve = McpSession::start(Some(other.agent(&api, "eve").await)).await;
    let sent = ok(&alice, json!({"action": "broadcast", "body": "ours"})).await;
    let id = sent["id"].as_str().unwrap().to_owned();

    let no_emoji = refused(&alice, json!({"action": "react", "id": id})).await;
    assert!(no_emoji.contains("`emoji` is required"), "{no_emoji}");
    let spaced = refused(
        &alice,
        json!({"action": "react", "id": id, "emoji": "two words"}),
    )
    .await;
    assert!(spaced.contains("invalid_emoji"), "{spaced}");
    let no_id = refused(&alice, json!({"action": "pin"})).await;
    assert!(no_id.contains("`id` is required"), "{no_id}");
    let not_pinned = refused(&alice, json!({"action": "unpin", "id": id})).await;
    assert!(not_pinned.contains("not_pinned"), "{not_pinned}");

    for arguments in [
        json!({"action": "react", "id": id, "emoji": "😈"}),
        json!({"action": "ack", "id": id}),
        json!({"action": "pin", "id": id}),
        json!({"action": "unpin", "id": id}),
        json!({"action": "delete", "id": id}),
        json!({"action": "read", "id": id}),
    ] {
        let text = refused(&eve, arguments).await;
        assert!(text.contains("message_not_found"), "{text}");
        assert!(!text.contains("ours"), "{text}");
    }

    drop((alice, eve));
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_reaction_to_my_message_wakes_my_wait_for_updates_verified() {
    let (env, api, project) = provision::start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;
    let sent = ok(
        &alice,
        json!({"action": "send", "to": "bob", "body": "ready?"}),
    )
    .await;
    let id = sent["id"].as_str().unwrap().to_owned();
    // Alice's stream is live before Bob reacts: an update is pushed, never replayed.
    ok(
        &alice,
        json!({"action": "wait", "kinds": ["update"], "timeout_s": 1}),
    )
    .await;

    ok(&bob, json!({"action": "react", "id": id, "emoji": "🚀"})).await;
    let woken = eventually("alice's wait to return the reaction", DEADLINE, || async {
        let data = ok(
            &alice,
            json!({"action": "wait", "kinds": ["update"], "timeout_s": 5}),
        )
        .await;
        (data["timed_out"] == false).then_some(data)
    })
    .await;
    let update = &woken["updates"][0];
    assert_eq!(update["change"], "reaction_added", "{woken}");
    assert_eq!(update["emoji"], "🚀", "{woken}");
    assert_eq!(update["by"], "bob", "{woken}");
    assert_eq!(update["message"], id.as_str(), "{woken}");
    assert!(woken.get("messages").is_none(), "{woken}");

    drop((alice, bob));
    api.stop().await;
    env.cleanup().await;
}

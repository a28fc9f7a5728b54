//! The MCP tools as an AI agent uses them: agents, each with its own in-process MCP
//! server, talking through the real API.

use serde_json::{json, Value};

use nexysync_mcp::key_file::KeyFile;
use nexysync_mcp::NexySyncMcp;

use crate::mcp_session::{is_error, structured, test_stream_options, text_of, McpSession};
use crate::provision::{self, closed_address};

fn wait(timeout_s: u32) -> Value {
    json!({"action": "wait", "timeout_s": timeout_s})
}

fn bodies(answer: &Value) -> Vec<String> {
    answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_message_sent_through_one_mcp_server_wakes_a_wait_on_another() {
    let (env, api, project) = provision::start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;

    let waiting = tokio::spawn(async move {
        let result = bob.call("ns_message", wait(30)).await;
        (result, bob)
    });
    let sent = alice
        .call(
            "ns_message",
            json!({"action": "send", "to": "bob", "body": "are you there?"}),
        )
        .await;
    assert!(!is_error(&sent), "{}", text_of(&sent));
    let (waited, bob) = waiting.await.unwrap();

    assert!(!is_error(&waited), "{}", text_of(&waited));
    let data = structured(&waited);
    assert_eq!(data["timed_out"], false);
    assert_eq!(data["messages"][0]["id"], structured(&sent)["id"]);
    assert_eq!(data["messages"][0]["from"], "alice");
    assert_eq!(data["messages"][0]["to"], "bob");
    assert_eq!(data["messages"][0]["body"], "are you there?");
    assert_eq!(data["next_since"], structured(&sent)["seq"]);

    drop((alice, bob));
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_wait_with_nothing_to_deliver_times_out_cleanly() {
    let (env, api, project) = provision::start().await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;

    let waited = bob.call("ns_message", wait(1)).await;
    assert!(!is_error(&waited), "{}", text_of(&waited));
    let data = structured(&waited);
    assert_eq!(data["timed_out"], true);
    assert_eq!(data["messages"], json!([]));
    assert_eq!(data["has_more"], false);
    assert_eq!(data["next_since"], 0);
    assert!(
        text_of(&waited).contains("timed_out"),
        "{}",
        text_of(&waited)
    );
    // The session goes on as before.
    let status = bob.call("ns_auth", json!({"action": "status"})).await;
    assert!(!is_error(&status), "{}", text_of(&status));

    drop(bob);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn two_agents_talk_send_wait_check_read_and_thread() {
    let (env, api, project) = provision::start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;

    let waiting = tokio::spawn(async move {
        let result = bob.call("ns_message", wait(10)).await;
        (result, bob)
    });
    let sent = alice
        .call(
            "ns_message",
            json!({"action": "send", "to": "bob", "body": "can you review PR 12?", "topic": "review"}),
        )
        .await;
    assert!(!is_error(&sent), "{}", text_of(&sent));
    assert!(text_of(&sent).starts_with("sent "), "{}", text_of(&sent));
    let id = structured(&sent)["id"].as_str().unwrap().to_owned();

    let (waited, bob) = waiting.await.unwrap();
    assert!(!is_error(&waited), "{}", text_of(&waited));
    let data = structured(&waited);
    assert_eq!(data["timed_out"], false);
    assert_eq!(data["messages"][0]["id"], id);
    assert_eq!(data["messages"][0]["from"], "alice");
    assert_eq!(data["messages"][0]["body"], "can you review PR 12?");
    assert_eq!(data["messages"][0]["topic"], "review");
    // The text a model reads carries the message too.
    assert!(text_of(&waited).contains("can you review PR 12?"));

    // Already delivered by wait: a check without a cursor has nothing new.
    let checked = bob.call("ns_message", json!({"action": "check"})).await;
    assert!(!is_error(&checked), "{}", text_of(&checked));
    assert_eq!(structured(&checked)["messages"], json!([]));
    // With an explicit cursor, the inbox is read again from there, at once.
    let checked = bob
        .call("ns_message", json!({"action": "check", "since": 0}))
        .await;
    assert_eq!(structured(&checked)["messages"][0]["id"], id);
    // The whole message, just pushed, reads at once too.
    let read = bob
        .call("ns_message", json!({"action": "read", "id": id}))
        .await;
    assert!(!is_error(&read), "{}", text_of(&read));
    assert_eq!(structured(&read)["body"], "can you review PR 12?");

    let reply = bob
        .call(
            "ns_message",
            json!({"action": "send", "to": "alice", "body": "on it", "reply_to": id}),
        )
        .await;
    assert!(!is_error(&reply), "{}", text_of(&reply));
    let answered = alice.call("ns_message", wait(10)).await;
    assert_eq!(bodies(&structured(&answered)), ["on it"]);
    assert_eq!(structured(&answered)["messages"][0]["reply_to"], id);
    let thread = alice
        .call("ns_message", json!({"action": "thread", "id": id}))
        .await;
    assert!(!is_error(&thread), "{}", text_of(&thread));
    assert_eq!(structured(&thread)["root"], id);
    assert_eq!(
        bodies(&structured(&thread)),
        ["can you review PR 12?", "on it"]
    );

    drop((alice, bob));
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_broadcast_reaches_everyone_but_its_sender() {
    let (env, api, project) = provision::start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;
    let carol = McpSession::start(Some(project.agent(&api, "carol").await)).await;
    let sent = alice
        .call(
            "ns_message",
            json!({"action": "broadcast", "body": "standup in 5"}),
        )
        .await;
    assert!(text_of(&sent).contains("to everyone"), "{}", text_of(&sent));
    for agent in [&bob, &carol] {
        let got = agent.call("ns_message", wait(10)).await;
        assert_eq!(structured(&got)["messages"][0]["body"], "standup in 5");
        assert_eq!(structured(&got)["messages"][0]["broadcast"], true);
    }
    let own = alice
        .call("ns_message", json!({"action": "wait", "timeout_s": 0}))
        .await;
    assert_eq!(structured(&own)["timed_out"], true);

    drop((alice, bob, carol));
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn long_bodies_are_cut_in_lists_and_whole_in_read() {
    let (env, api, project) = provision::start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;
    let long = "x".repeat(10_000);
    let sent = alice
        .call(
            "ns_message",
            json!({"action": "send", "to": "bob", "body": long}),
        )
        .await;
    assert!(!is_error(&sent), "{}", text_of(&sent));
    let id = structured(&sent)["id"].clone();
    let waited = bob.call("ns_message", wait(10)).await;
    let checked = bob
        .call("ns_message", json!({"action": "check", "since": 0}))
        .await;
    let full = bob
        .call(
            "ns_message",
            json!({"action": "check", "since": 0, "full": true}),
        )
        .await;
    let thread = bob
        .call("ns_message", json!({"action": "thread", "id": id}))
        .await;
    for (listed, shown) in [
        (&structured(&waited), 200),
        (&structured(&checked), 200),
        (&structured(&thread), 200),
        (&structured(&full), 4000),
    ] {
        let listed = &listed["messages"][0];
        assert_eq!(listed["id"], id);
        assert_eq!(listed["body_truncated"], true);
        assert_eq!(listed["body_len"], 10_000);
        assert_eq!(listed["body"].as_str().unwrap().len(), shown);
        // Only the full form carries timestamps.
        assert_eq!(listed.get("sent_at").is_some(), shown == 4000);
    }
    assert!(text_of(&checked).contains("`full: true` shows more"));
    assert!(text_of(&waited).contains("long texts are cut"));
    let read = bob
        .call("ns_message", json!({"action": "read", "id": id}))
        .await;
    assert_eq!(structured(&read)["body"].as_str().unwrap().len(), 10_000);

    drop((alice, bob));
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn mistakes_get_answers_that_say_how_to_fix_them() {
    let (env, api, project) = provision::start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    project.agent(&api, "bob").await;
    for (args, expected) in [
        (
            json!({"action": "send", "to": "zed", "body": "hi"}),
            "known agents: alice, bob",
        ),
        (json!({"action": "send", "body": "hi"}), "`to` is required"),
        (json!({"action": "send", "to": "bob"}), "`body` is required"),
        (
            json!({"action": "broadcast", "to": "bob", "body": "hi"}),
            "drop `to`",
        ),
        (json!({"action": "read", "id": "not-an-id"}), "message id"),
        (json!({"action": "read"}), "`id` is required"),
        (
            json!({"action": "send", "to": "bob", "body": "hi", "ttl_s": 0}),
            "ttl_s",
        ),
    ] {
        let result = alice.call("ns_message", args.clone()).await;
        assert!(is_error(&result), "{args}");
        assert!(
            text_of(&result).contains(expected),
            "{args}: {}",
            text_of(&result)
        );
    }
    let unknown = nexysync_domain::ids::EventId::generate().to_string();
    for action in ["read", "thread"] {
        let missing = alice
            .call("ns_message", json!({"action": action, "id": unknown}))
            .await;
        assert!(is_error(&missing), "{action}");
        assert_eq!(structured(&missing)["error"]["code"], "message_not_found");
    }
    // A reply to a message that does not exist is refused by the server, with its code.
    let orphan = alice
        .call(
            "ns_message",
            json!({"action": "send", "to": "bob", "body": "hi", "reply_to": unknown}),
        )
        .await;
    assert!(is_error(&orphan), "{}", text_of(&orphan));
    assert_eq!(
        structured(&orphan)["error"]["code"],
        "reply_to_unknown_message"
    );

    drop(alice);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn status_says_who_i_am_and_whether_the_server_answers() {
    let (env, api, project) = provision::start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let status = alice.call("ns_auth", json!({"action": "status"})).await;
    assert!(!is_error(&status), "{}", text_of(&status));
    let data = structured(&status);
    assert_eq!(data["agent"]["name"], "alice");
    assert_eq!(data["project"]["name"], "demo");
    assert_eq!(data["server_reachable"], true);
    assert!(data.get("server_error").is_none(), "{data}");

    let mut key = project.agent(&api, "dave").await;
    let closed = closed_address();
    key.server = format!("http://{closed}");
    let offline = McpSession::start(Some(key)).await;
    let status = offline.call("ns_auth", json!({"action": "status"})).await;
    assert!(!is_error(&status));
    assert_eq!(structured(&status)["server_reachable"], false);
    assert!(text_of(&status).contains("NOT reachable"));
    let check = offline.call("ns_message", json!({"action": "check"})).await;
    assert!(is_error(&check));
    let text = text_of(&check);
    assert!(
        text.contains(&closed.to_string()) && text.contains("make up"),
        "{text}"
    );

    drop((alice, offline));
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn status_says_when_the_server_refuses_the_token() {
    let (env, api, project) = provision::start().await;
    let mut key = project.agent(&api, "alice").await;
    key.token = nexysync_domain::crypto::AgentToken::generate();
    let alice = McpSession::start(Some(key)).await;
    let status = alice.call("ns_auth", json!({"action": "status"})).await;
    assert!(!is_error(&status), "{}", text_of(&status));
    assert_eq!(structured(&status)["server_reachable"], true);
    assert!(
        text_of(&status).contains("refused this agent"),
        "{}",
        text_of(&status)
    );
    let check = alice.call("ns_message", json!({"action": "check"})).await;
    assert!(is_error(&check));
    assert_eq!(structured(&check)["error"]["code"], "unauthorized");
    assert!(
        text_of(&check).contains("nexysync agent add"),
        "{}",
        text_of(&check)
    );

    drop(alice);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn login_switches_to_another_key_file() {
    let (env, api, project) = provision::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = KeyFile::path_in(dir.path());
    KeyFile::write_new(&path, &project.agent(&api, "erin").await, false).unwrap();
    let server = NexySyncMcp::with_options(None, None, test_stream_options())
        .with_cwd(dir.path().to_owned());
    let session = McpSession::with_server(server).await;

    let login = session
        .call(
            "ns_auth",
            json!({"action": "login", "path": ".nexysync/key"}),
        )
        .await;
    assert!(!is_error(&login), "{}", text_of(&login));
    assert!(text_of(&login).contains("logged in as erin"));
    let status = session.call("ns_auth", json!({"action": "status"})).await;
    assert_eq!(structured(&status)["agent"]["name"], "erin");
    assert_eq!(structured(&status)["key_file"], path.display().to_string());

    drop(session);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn login_refuses_a_key_file_the_server_does_not_vouch_for() {
    let (env, api, project) = provision::start().await;
    let alice = project.agent(&api, "alice").await;
    let dir = tempfile::tempdir().unwrap();
    let session = McpSession::start(Some(alice.clone())).await;

    // A token the server does not know.
    let mut stale = project.agent(&api, "frank").await;
    stale.token = nexysync_domain::crypto::AgentToken::generate();
    let stale_path = dir.path().join("stale.key");
    KeyFile::write_new(&stale_path, &stale, false).unwrap();
    // A signing key the owner did not register for this agent.
    let mut swapped = project.agent(&api, "grace").await;
    swapped.signing_key = nexysync_domain::crypto::SigningKey::generate();
    let swapped_path = dir.path().join("swapped.key");
    KeyFile::write_new(&swapped_path, &swapped, false).unwrap();

    for (path, code) in [
        (stale_path, "unauthorized"),
        (swapped_path, "not_registered"),
    ] {
        let login = session
            .call(
                "ns_auth",
                json!({"action": "login", "path": path.display().to_string()}),
            )
            .await;
        assert!(is_error(&login), "{}", text_of(&login));
        assert_eq!(structured(&login)["error"]["code"], code);
        assert!(
            text_of(&login).contains("the key in use did not change"),
            "{}",
            text_of(&login)
        );
    }
    let status = session.call("ns_auth", json!({"action": "status"})).await;
    assert_eq!(structured(&status)["agent"]["name"], "alice");

    drop(session);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_restarted_server_neither_repeats_nor_skips_messages() {
    let (env, api, project) = provision::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = KeyFile::path_in(dir.path());
    KeyFile::write_new(&path, &project.agent(&api, "bob").await, false).unwrap();
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let send = |body: &str| json!({"action": "send", "to": "bob", "body": body});

    let sent = alice.call("ns_message", send("first")).await;
    assert!(!is_error(&sent), "{}", text_of(&sent));
    let bob = McpSession::with_server(NexySyncMcp::discover(None, dir.path())).await;
    let got = bob.call("ns_message", wait(10)).await;
    assert_eq!(bodies(&structured(&got)), ["first"]);
    drop(bob);

    let sent = alice.call("ns_message", send("while away")).await;
    assert!(!is_error(&sent), "{}", text_of(&sent));
    let bob = McpSession::with_server(NexySyncMcp::discover(None, dir.path())).await;
    let got = bob.call("ns_message", wait(10)).await;
    assert_eq!(bodies(&structured(&got)), ["while away"]);

    drop((alice, bob));
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn an_agent_waiting_for_a_message_can_still_send() {
    let (env, api, project) = provision::start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;
    let peer = bob.client.peer().clone();
    let waiting = tokio::spawn(async move {
        peer.call_tool(
            rmcp::model::CallToolRequestParams::new("ns_message")
                .with_arguments(wait(20).as_object().cloned().unwrap()),
        )
        .await
        .unwrap()
    });
    let sent = tokio::time::timeout(
        provision::DEADLINE,
        bob.call(
            "ns_message",
            json!({"action": "send", "to": "alice", "body": "still here"}),
        ),
    )
    .await
    .expect("a send is not held up by a pending wait");
    assert!(!is_error(&sent), "{}", text_of(&sent));
    alice
        .call(
            "ns_message",
            json!({"action": "send", "to": "bob", "body": "welcome back"}),
        )
        .await;
    let waited = waiting.await.unwrap();
    assert_eq!(structured(&waited)["messages"][0]["body"], "welcome back");

    drop((alice, bob));
    api.stop().await;
    env.cleanup().await;
}

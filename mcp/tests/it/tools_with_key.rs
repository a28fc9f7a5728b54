//! The MCP tools as an AI agent uses them, two agents talking through the in-memory API.

use serde_json::json;

use nexysync_mcp::key_file::KeyFile;
use nexysync_mcp::NexySyncMcp;

use crate::fake_api::FakeApi;
use crate::mcp_session::{is_error, structured, test_stream_options, text_of, McpSession};

#[tokio::test]
async fn two_agents_talk_send_wait_check_read_and_thread() {
    let api = FakeApi::start().await;
    let alice = McpSession::start(Some(api.add_agent("alice"))).await;
    let bob = McpSession::start(Some(api.add_agent("bob"))).await;

    let waiting = tokio::spawn(async move {
        let result = bob
            .call("ns_message", json!({"action": "wait", "timeout_s": 10}))
            .await;
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
    assert_eq!(structured(&checked)["messages"], json!([]));
    // With an explicit cursor, the inbox is read again from there.
    let checked = bob
        .call("ns_message", json!({"action": "check", "since": 0}))
        .await;
    assert_eq!(structured(&checked)["messages"][0]["id"], id);

    let reply = bob
        .call(
            "ns_message",
            json!({"action": "send", "to": "alice", "body": "on it", "reply_to": id}),
        )
        .await;
    assert!(!is_error(&reply), "{}", text_of(&reply));
    let thread = alice
        .call("ns_message", json!({"action": "thread", "id": id}))
        .await;
    let bodies: Vec<_> = structured(&thread)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies, ["can you review PR 12?", "on it"]);

    let read = bob
        .call("ns_message", json!({"action": "read", "id": id}))
        .await;
    assert_eq!(structured(&read)["body"], "can you review PR 12?");
}

#[tokio::test]
async fn a_broadcast_reaches_everyone_but_its_sender() {
    let api = FakeApi::start().await;
    let alice = McpSession::start(Some(api.add_agent("alice"))).await;
    let bob = McpSession::start(Some(api.add_agent("bob"))).await;
    let carol = McpSession::start(Some(api.add_agent("carol"))).await;
    let sent = alice
        .call(
            "ns_message",
            json!({"action": "broadcast", "body": "standup in 5"}),
        )
        .await;
    assert!(text_of(&sent).contains("to everyone"), "{}", text_of(&sent));
    for agent in [&bob, &carol] {
        let got = agent
            .call("ns_message", json!({"action": "wait", "timeout_s": 10}))
            .await;
        assert_eq!(structured(&got)["messages"][0]["body"], "standup in 5");
        assert_eq!(structured(&got)["messages"][0]["broadcast"], true);
    }
    let own = alice
        .call("ns_message", json!({"action": "wait", "timeout_s": 0}))
        .await;
    assert_eq!(structured(&own)["timed_out"], true);
}

#[tokio::test]
async fn long_bodies_are_cut_in_lists_and_whole_in_read() {
    let api = FakeApi::start().await;
    let alice = McpSession::start(Some(api.add_agent("alice"))).await;
    let bob = McpSession::start(Some(api.add_agent("bob"))).await;
    let long = "x".repeat(10_000);
    let sent = alice
        .call(
            "ns_message",
            json!({"action": "send", "to": "bob", "body": long}),
        )
        .await;
    let id = structured(&sent)["id"].clone();
    let checked = bob.call("ns_message", json!({"action": "check"})).await;
    let listed = &structured(&checked)["messages"][0];
    assert_eq!(listed["body_truncated"], true);
    assert_eq!(listed["body_len"], 10_000);
    assert_eq!(listed["body"].as_str().unwrap().len(), 4000);
    let read = bob
        .call("ns_message", json!({"action": "read", "id": id}))
        .await;
    assert_eq!(structured(&read)["body"].as_str().unwrap().len(), 10_000);
}

#[tokio::test]
async fn mistakes_get_answers_that_say_how_to_fix_them() {
    let api = FakeApi::start().await;
    let alice = McpSession::start(Some(api.add_agent("alice"))).await;
    api.add_agent("bob");
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
    let missing = alice
        .call(
            "ns_message",
            json!({"action": "read", "id": nexysync_domain::ids::EventId::generate().to_string()}),
        )
        .await;
    assert!(is_error(&missing));
    assert_eq!(structured(&missing)["error"]["code"], "message_not_found");
}

#[tokio::test]
async fn status_says_who_i_am_and_whether_the_server_answers() {
    let api = FakeApi::start().await;
    let alice = McpSession::start(Some(api.add_agent("alice"))).await;
    let status = alice.call("ns_auth", json!({"action": "status"})).await;
    assert!(!is_error(&status), "{}", text_of(&status));
    let data = structured(&status);
    assert_eq!(data["agent"]["name"], "alice");
    assert_eq!(data["project"]["name"], "demo");
    assert_eq!(data["server_reachable"], true);

    let mut key = api.add_agent("dave");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
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
}

#[tokio::test]
async fn login_switches_to_another_key_file() {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = KeyFile::path_in(dir.path());
    KeyFile::write_new(&path, &api.add_agent("erin"), false).unwrap();
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
}

#[tokio::test]
async fn a_restarted_server_neither_repeats_nor_skips_messages() {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = KeyFile::path_in(dir.path());
    KeyFile::write_new(&path, &api.add_agent("bob"), false).unwrap();
    let alice = McpSession::start(Some(api.add_agent("alice"))).await;
    let send = |body: &str| json!({"action": "send", "to": "bob", "body": body});

    alice.call("ns_message", send("first")).await;
    let bob = McpSession::with_server(NexySyncMcp::discover(None, dir.path())).await;
    let got = bob
        .call("ns_message", json!({"action": "wait", "timeout_s": 10}))
        .await;
    assert_eq!(structured(&got)["messages"][0]["body"], "first");
    drop(bob);

    alice.call("ns_message", send("while away")).await;
    let bob = McpSession::with_server(NexySyncMcp::discover(None, dir.path())).await;
    let got = bob
        .call("ns_message", json!({"action": "wait", "timeout_s": 10}))
        .await;
    let bodies: Vec<_> = structured(&got)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(bodies, [json!("while away")]);
}

#[tokio::test]
async fn an_agent_waiting_for_a_message_can_still_send() {
    let api = FakeApi::start().await;
    let alice = McpSession::start(Some(api.add_agent("alice"))).await;
    let bob = McpSession::start(Some(api.add_agent("bob"))).await;
    let peer = bob.client.peer().clone();
    let waiting = tokio::spawn(async move {
        let wait = json!({"action": "wait", "timeout_s": 20});
        peer.call_tool(
            rmcp::model::CallToolRequestParams::new("ns_message")
                .with_arguments(wait.as_object().cloned().unwrap()),
        )
        .await
        .unwrap()
    });
    let sent = tokio::time::timeout(
        std::time::Duration::from_secs(5),
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
}

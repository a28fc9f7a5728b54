//! What an AI tool sees before any key is provisioned, and when it calls tools wrongly.

use serde_json::json;

use crate::mcp_session::{is_error, structured, text_of, McpSession};

#[tokio::test]
async fn the_server_offers_exactly_ns_auth_and_ns_message() {
    let session = McpSession::start(None).await;
    let tools = session.client.list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ns_auth",
            "ns_file",
            "ns_kv",
            "ns_message",
            "ns_meta",
            "ns_ref"
        ]
    );
    let message = tools.iter().find(|t| t.name == "ns_message").unwrap();
    let schema = serde_json::to_value(&*message.input_schema).unwrap();
    assert_eq!(
        schema["properties"]["action"]["enum"],
        json!([
            "send",
            "broadcast",
            "check",
            "read",
            "thread",
            "wait",
            "react",
            "ack",
            "pin",
            "unpin",
            "delete"
        ]),
        "{schema}"
    );
    assert!(schema["properties"]["body"]["description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
}

#[tokio::test]
async fn every_tool_without_a_key_explains_how_to_provision_one() {
    let session = McpSession::start(None).await;
    for (tool, args) in [
        ("ns_message", json!({"action": "check"})),
        (
            "ns_message",
            json!({"action": "send", "to": "bob", "body": "hi"}),
        ),
        ("ns_auth", json!({"action": "status"})),
        ("ns_ref", json!({"action": "list"})),
        ("ns_meta", json!({"action": "whoami"})),
        ("ns_file", json!({"action": "list"})),
    ] {
        let result = session.call(tool, args).await;
        assert!(is_error(&result), "{tool}: {result:?}");
        let text = text_of(&result);
        assert!(text.contains("nexysync agent add"), "{text}");
        assert!(text.contains("login"), "{text}");
        assert_eq!(structured(&result)["error"]["code"], "not_authenticated");
    }
}

#[tokio::test]
async fn an_unknown_action_is_an_error_result_not_a_crash() {
    let session = McpSession::start(None).await;
    let result = session
        .call("ns_message", json!({"action": "shout", "body": "hi"}))
        .await;
    assert!(is_error(&result));
    assert!(text_of(&result).contains("shout"), "{}", text_of(&result));

    let result = session
        .call("ns_message", json!({"body": "no action"}))
        .await;
    assert!(is_error(&result));

    let result = session
        .call("ns_message", json!({"action": "check", "limit": "many"}))
        .await;
    assert!(is_error(&result));

    // The server is still there.
    let result = session.call("ns_auth", json!({"action": "status"})).await;
    assert!(is_error(&result));
    assert!(text_of(&result).contains("nexysync agent add"));
}

#[tokio::test]
async fn login_with_a_missing_key_file_says_which_path() {
    let session = McpSession::start(None).await;
    let result = session
        .call(
            "ns_auth",
            json!({"action": "login", "path": "/nonexistent/.nexysync/key"}),
        )
        .await;
    assert!(is_error(&result));
    assert!(text_of(&result).contains("/nonexistent/.nexysync/key"));

    let result = session.call("ns_auth", json!({"action": "login"})).await;
    assert!(is_error(&result));
    assert!(text_of(&result).contains("path"));
}

#[tokio::test]
async fn a_server_that_discovers_no_key_still_starts() {
    let dir = tempfile::tempdir().unwrap();
    let server = nexysync_mcp::NexySyncMcp::discover(None, dir.path());
    let session = McpSession::with_server(server).await;
    let result = session
        .call("ns_message", json!({"action": "wait", "timeout_s": 1}))
        .await;
    assert!(is_error(&result));
    let text = text_of(&result);
    assert!(text.contains("no key file found"), "{text}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
}

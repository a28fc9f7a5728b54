//! `ns_ref` as agents use it, each through its own in-process MCP server against the real
//! API: share, the other agent's list and get, helpful errors; and the server holding
//! paths and snippets only as ciphertext.

use serde_json::json;

use nexysync_mcp::client::{Client, NewRef};
use nexysync_tests::eventually;

use crate::mcp_session::{is_error, structured, text_of, McpSession};
use crate::provision::{self, everything_stored, DEADLINE};

#[tokio::test]
async fn an_agent_shares_a_ref_that_another_lists_and_gets_through_ns_ref() {
    let (env, api, project) = provision::start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;
    let snippet = format!("fn upload() {{\n{}}}\n", "    step();\n".repeat(60));

    let shared = alice
        .call(
            "ns_ref",
            json!({
                "action": "share", "path": "src/upload.rs", "start_line": 10, "end_line": 72,
                "snippet": snippet, "language": "rust", "commit": "main",
                "note": "the retry loop", "to": "bob",
            }),
        )
        .await;
    assert!(!is_error(&shared), "{}", text_of(&shared));
    let id = structured(&shared)["id"].as_str().unwrap().to_owned();

    let listed = eventually("bob to list the ref", DEADLINE, || async {
        let answer = bob.call("ns_ref", json!({"action": "list"})).await;
        let data = structured(&answer);
        (data["refs"].as_array().map_or(0, Vec::len) == 1).then_some(data)
    })
    .await;
    let item = &listed["refs"][0];
    assert_eq!(item["ref"]["id"], id);
    assert_eq!(item["ref"]["path"], "src/upload.rs");
    assert_eq!(item["ref"]["from"], "alice");
    assert_eq!(item["ref"]["to"], "bob");
    assert_eq!(item["snippet_cut"], true);
    assert_eq!(item["snippet_chars"], snippet.chars().count());
    assert!(item["ref"]["snippet"].as_str().unwrap().len() < snippet.len());

    let got = bob.call("ns_ref", json!({"action": "get", "id": id})).await;
    assert!(!is_error(&got), "{}", text_of(&got));
    let whole = &structured(&got)["ref"];
    assert_eq!(whole["snippet"], snippet);
    assert_eq!(
        (&whole["start_line"], &whole["end_line"]),
        (&json!(10), &json!(72))
    );
    assert_eq!(whole["language"], "rust");
    assert_eq!(whole["commit"], "main");
    assert_eq!(whole["note"], "the retry loop");

    let bad = alice
        .call(
            "ns_ref",
            json!({"action": "share", "path": "a.rs", "start_line": 5, "end_line": 2, "snippet": "x"}),
        )
        .await;
    assert!(is_error(&bad));
    assert!(
        text_of(&bad).contains("invalid_line_range"),
        "{}",
        text_of(&bad)
    );
    let no_path = alice
        .call(
            "ns_ref",
            json!({"action": "share", "start_line": 1, "end_line": 1, "snippet": "x"}),
        )
        .await;
    assert!(is_error(&no_path));
    assert!(text_of(&no_path).contains("`path` is required"));
    let unknown = bob
        .call(
            "ns_ref",
            json!({"action": "get", "id": "01a20b8e-4088-73ff-a3dd-ecb7eefda2c2"}),
        )
        .await;
    assert!(is_error(&unknown));
    assert!(
        text_of(&unknown).contains("ref_not_found"),
        "{}",
        text_of(&unknown)
    );

    drop((alice, bob));
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn the_server_holds_ref_paths_and_snippets_only_as_ciphertext() {
    let (env, api, project) = provision::start().await;
    let alice = Client::new(project.agent(&api, "alice").await).unwrap();
    let shared = alice
        .share_ref(NewRef {
            path: "canary-path-5d2e1/src.rs".into(),
            start_line: 1,
            end_line: 3,
            snippet: "canary-snippet-a8c33 secret code".into(),
            note: Some("canary-note-77f1e".into()),
            ..NewRef::default()
        })
        .await
        .unwrap();
    let read = alice.get_ref(shared.id).await.unwrap();
    assert_eq!(read.path, "canary-path-5d2e1/src.rs");

    let stored = everything_stored(&env).await;
    assert!(
        stored.matches(&shared.id.to_string()).count() >= 2,
        "the ref is in the log and in the read models"
    );
    for secret in [
        "canary-path-5d2e1",
        "canary-snippet-a8c33",
        "canary-note-77f1e",
    ] {
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!stored.contains(secret), "`{secret}` is stored in clear");
        assert!(
            !stored.contains(&hex),
            "`{secret}` is stored in clear bytes"
        );
    }

    api.stop().await;
    env.cleanup().await;
}

//! `ns_file` as agents use it, each through its own in-process MCP server against the real
//! API and a real CDN: upload from a path and inline, the other agent's list and read (to
//! a path and inline), delete; helpful errors for bad input (traversal in names, both or
//! neither source, an existing target); nothing of the file stored in clear.

use serde_json::json;

use nexysync_tests::{eventually, TestEnv};

use crate::mcp_session::{is_error, structured, text_of, McpSession};
use crate::provision::{everything_stored, Project, DEADLINE};

async fn start() -> (
    TestEnv,
    nexysync_tests::TestApi,
    nexysync_tests::files::TestCdn,
    Project,
) {
    let env = TestEnv::new();
    let (api, cdn) = env.spawn_api_and_cdn().await;
    let project = Project::create(&api, "demo").await;
    (env, api, cdn, project)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_file_shared_with_an_agent_wakes_its_wait_for_files() {
    let (env, api, cdn, project) = start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;
    let bob_client = bob.client.peer().clone();
    let waiting = tokio::spawn(async move {
        bob_client
            .call_tool(
                rmcp::model::CallToolRequestParams::new("ns_message").with_arguments(
                    json!({"action": "wait", "kinds": ["file"], "timeout_s": 30})
                        .as_object()
                        .cloned()
                        .unwrap(),
                ),
            )
            .await
            .unwrap()
    });
    let uploaded = alice
        .call(
            "ns_file",
            json!({"action": "upload", "content": "the plan", "name": "plan.md", "to": "bob"}),
        )
        .await;
    assert!(!is_error(&uploaded), "{}", text_of(&uploaded));
    let woken = tokio::time::timeout(DEADLINE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(!is_error(&woken), "{}", text_of(&woken));
    let woken = structured(&woken);
    assert_eq!(woken["timed_out"], false, "{woken}");
    assert_eq!(woken["files"][0]["name"], "plan.md", "{woken}");
    assert_eq!(woken["files"][0]["from"], "alice", "{woken}");
    assert_eq!(
        woken["files"][0]["id"],
        structured(&uploaded)["id"],
        "{woken}"
    );

    drop((alice, bob));
    cdn.stop().await;
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_file_uploaded_through_ns_file_is_listed_read_and_deleted_by_another_agent() {
    let (env, api, cdn, project) = start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;
    let dir = tempfile::tempdir().unwrap();

    let canary = b"file-canary-0c4d2";
    let mut data: Vec<u8> = (0..700_000u32).map(|i| (i % 249) as u8).collect();
    data[300_000..300_000 + canary.len()].copy_from_slice(canary);
    let source = dir.path().join("report-canary-77aa.bin");
    std::fs::write(&source, &data).unwrap();

    let uploaded = alice
        .call(
            "ns_file",
            json!({"action": "upload", "path": source, "to": "bob", "media_type": "application/octet-stream"}),
        )
        .await;
    assert!(!is_error(&uploaded), "{}", text_of(&uploaded));
    let up = structured(&uploaded);
    assert_eq!(up["name"], "report-canary-77aa.bin");
    assert_eq!(up["size"], data.len());
    assert_eq!(up["from"], "alice");
    let id = up["id"].as_str().unwrap().to_owned();

    let listed = eventually("bob to list the file", DEADLINE, || async {
        let answer = bob.call("ns_file", json!({"action": "list"})).await;
        let data = structured(&answer);
        (data["files"].as_array().map_or(0, Vec::len) == 1).then_some(data)
    })
    .await;
    let item = &listed["files"][0];
    assert_eq!(item["id"], id);
    assert_eq!(item["name"], "report-canary-77aa.bin");
    assert_eq!(item["size"], data.len());
    assert_eq!(item["from"], "alice");
    assert_eq!(item["to"], "bob");

    // Into a directory: saved under its name. Into the same place again: refused.
    let downloads = tempfile::tempdir().unwrap();
    let read = bob
        .call(
            "ns_file",
            json!({"action": "read", "id": id, "path": downloads.path()}),
        )
        .await;
    assert!(!is_error(&read), "{}", text_of(&read));
    let saved = downloads.path().join("report-canary-77aa.bin");
    assert_eq!(std::fs::read(&saved).unwrap(), data);
    let again = bob
        .call(
            "ns_file",
            json!({"action": "read", "id": id, "path": saved}),
        )
        .await;
    assert!(is_error(&again));
    assert_eq!(structured(&again)["error"]["code"], "path_exists");
    // A binary file is not answered inline.
    let inline = bob
        .call("ns_file", json!({"action": "read", "id": id}))
        .await;
    assert_eq!(structured(&inline)["error"]["code"], "needs_path");

    let notes = alice
        .call(
            "ns_file",
            json!({"action": "upload", "content": "# notes\nsmall text", "name": "notes.md"}),
        )
        .await;
    assert!(!is_error(&notes), "{}", text_of(&notes));
    let notes_id = structured(&notes)["id"].as_str().unwrap().to_owned();
    let text = bob
        .call("ns_file", json!({"action": "read", "id": notes_id}))
        .await;
    assert!(!is_error(&text), "{}", text_of(&text));
    assert_eq!(structured(&text)["content"], "# notes\nsmall text");

    let mut stored = everything_stored(&env).await.into_bytes();
    stored.extend(cdn.all_bytes());
    for secret in [&canary[..], b"report-canary-77aa", b"small text"] {
        assert!(!contains(&stored, secret), "{secret:?} stored in clear");
    }

    let deleted = bob
        .call("ns_file", json!({"action": "delete", "id": id}))
        .await;
    assert!(!is_error(&deleted), "{}", text_of(&deleted));
    let gone = alice
        .call(
            "ns_file",
            json!({"action": "read", "id": id, "path": dir.path().join("again.bin")}),
        )
        .await;
    assert!(is_error(&gone));
    assert_eq!(structured(&gone)["error"]["code"], "file_not_found");
    assert!(!dir.path().join("again.bin").exists());
    let twice = alice
        .call("ns_file", json!({"action": "delete", "id": id}))
        .await;
    assert_eq!(structured(&twice)["error"]["code"], "file_not_found");
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn bad_ns_file_calls_get_helpful_errors_and_names_never_escape_the_target() {
    let (env, api, _cdn, project) = start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("a.txt");
    std::fs::write(&source, "hello").unwrap();

    for (args, code) in [
        (json!({"action": "upload"}), "invalid_params"),
        (
            json!({"action": "upload", "path": source, "content": "x"}),
            "invalid_params",
        ),
        (
            json!({"action": "upload", "content": "x"}),
            "invalid_params",
        ),
        (
            json!({"action": "upload", "content": "x", "name": "../../.bashrc"}),
            "invalid_params",
        ),
        (
            json!({"action": "upload", "path": dir.path().join("missing.txt")}),
            "file_not_readable",
        ),
        (
            json!({"action": "upload", "content": "x", "name": "x.txt", "to": "nobody"}),
            "unknown_agent",
        ),
        (json!({"action": "read"}), "invalid_params"),
        (
            json!({"action": "read", "id": "not-an-id"}),
            "invalid_params",
        ),
    ] {
        let answer = alice.call("ns_file", args.clone()).await;
        assert!(is_error(&answer), "{args}");
        assert_eq!(
            structured(&answer)["error"]["code"],
            code,
            "{args}: {}",
            text_of(&answer)
        );
    }

    // A file whose (sealed) name tries to climb out of the reader's directory.
    let sneaky = project.test.add_agent(&api, "mallory").await;
    let file = sneaky.seal_file(&project.test, None, "../../escape.txt", b"gotcha");
    sneaky.share_file(&api, &file).await;
    let downloads = tempfile::tempdir().unwrap();
    let inner = downloads.path().join("inner");
    std::fs::create_dir(&inner).unwrap();
    let read = eventually("bob to read mallory's file", DEADLINE, || async {
        let answer = bob
            .call(
                "ns_file",
                json!({"action": "read", "id": file.id(), "path": inner}),
            )
            .await;
        (structured(&answer)["error"]["code"] != "file_not_found").then_some(answer)
    })
    .await;
    assert!(is_error(&read));
    assert_eq!(
        structured(&read)["error"]["code"],
        "unsafe_file_name",
        "{}",
        text_of(&read)
    );
    assert!(!downloads.path().join("escape.txt").exists());
    assert!(std::fs::read_dir(&inner).unwrap().next().is_none());
    // Given a full path, the reader chooses the name: that works.
    let chosen = inner.join("chosen.txt");
    let saved = bob
        .call(
            "ns_file",
            json!({"action": "read", "id": file.id(), "path": chosen}),
        )
        .await;
    assert!(!is_error(&saved), "{}", text_of(&saved));
    assert_eq!(std::fs::read(&chosen).unwrap(), b"gotcha");
    api.stop().await;
    env.cleanup().await;
}

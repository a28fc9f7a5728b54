//! Push the MCP way, in process against the real API: `ns_message wait` with `kinds`
//! (a ref wakes a wait for refs, a message does not wake a wait for KV changes and is
//! still there for the next message wait), channel notifications received by an rmcp
//! client, and the brief and full forms of list answers.

use nexysync_mcp::NexySyncMcp;
use rmcp::model::{CallToolRequestParams, CallToolResult, CustomNotification};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::mcp_session::{is_error, structured, test_stream_options, text_of, McpSession};
use crate::provision::{self, DEADLINE};

/// An MCP client that records the custom notifications the server sends.
#[derive(Clone)]
struct Recorder {
    tx: mpsc::UnboundedSender<CustomNotification>,
}

impl ClientHandler for Recorder {
    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.tx.send(notification);
    }
}

struct Listening {
    client: RunningService<RoleClient, Recorder>,
    notifications: mpsc::UnboundedReceiver<CustomNotification>,
}

impl Listening {
    async fn start(key: nexysync_mcp::KeyFile) -> Listening {
        let server = NexySyncMcp::with_options(Some(key), None, test_stream_options());
        let (server_io, client_io) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            if let Ok(running) = server.serve(server_io).await {
                let _ = running.waiting().await;
            }
        });
        let (tx, notifications) = mpsc::unbounded_channel();
        let client = Recorder { tx }
            .serve(client_io)
            .await
            .expect("MCP client initialises");
        Listening {
            client,
            notifications,
        }
    }

    async fn call(&self, tool: &str, arguments: Value) -> CallToolResult {
        self.client
            .call_tool(
                CallToolRequestParams::new(tool.to_owned())
                    .with_arguments(arguments.as_object().cloned().unwrap()),
            )
            .await
            .expect("a tool answers")
    }

    /// The next notification of `kind`, skipping others; fails past the deadline.
    async fn next_notification(&mut self, kind: &str) -> Value {
        loop {
            let notification = tokio::time::timeout(DEADLINE, self.notifications.recv())
                .await
                .unwrap_or_else(|_| panic!("a {kind} notification within {DEADLINE:?}"))
                .expect("the client is running");
            assert_eq!(notification.method, "notifications/claude/channel");
            let params = notification.params.unwrap();
            if params["meta"]["kind"] == kind {
                return params;
            }
        }
    }
}

/// Waits until `session`'s stream is live, so what is sent next arrives on it.
async fn live(session: &McpSession) {
    nexysync_tests::eventually("the stream to be live", DEADLINE, || async {
        let status = structured(&session.call("ns_auth", json!({"action": "status"})).await);
        (status.to_string().contains("\"live\":true")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_ref_wakes_a_wait_for_refs_and_a_message_does_not_wake_a_wait_for_kv() {
    let (env, api, project) = provision::start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;
    live(&alice).await;

    let alice_peer = alice.client.peer().clone();
    let waiting_for_ref = tokio::spawn(async move {
        alice_peer
            .call_tool(
                CallToolRequestParams::new("ns_message").with_arguments(
                    json!({"action": "wait", "kinds": ["ref"], "timeout_s": 30})
                        .as_object()
                        .cloned()
                        .unwrap(),
                ),
            )
            .await
            .unwrap()
    });
    let shared = bob
        .call(
            "ns_ref",
            json!({"action": "share", "path": "src/upload.rs", "start_line": 3, "end_line": 9,
                   "snippet": "fn upload() {}", "to": "alice"}),
        )
        .await;
    assert!(!is_error(&shared), "{}", text_of(&shared));
    let woken = waiting_for_ref.await.unwrap();
    assert!(!is_error(&woken), "{}", text_of(&woken));
    let woken = structured(&woken);
    assert_eq!(woken["timed_out"], false, "{woken}");
    assert_eq!(woken["refs"][0]["ref"]["path"], "src/upload.rs");
    assert_eq!(woken["refs"][0]["ref"]["from"], "bob");
    assert_eq!(woken["kinds"], json!(["ref"]));
    assert!(woken.get("messages").is_none(), "{woken}");

    // A message arrives during a wait for KV changes: that wait does not end for it…
    let sent = bob
        .call(
            "ns_message",
            json!({"action": "send", "to": "alice", "body": "not a kv change"}),
        )
        .await;
    assert!(!is_error(&sent), "{}", text_of(&sent));
    let kv_wait = alice
        .call(
            "ns_message",
            json!({"action": "wait", "kinds": ["kv"], "timeout_s": 2}),
        )
        .await;
    let kv_wait = structured(&kv_wait);
    assert_eq!(kv_wait["timed_out"], true, "{kv_wait}");
    assert_eq!(kv_wait["kv"], json!([]));
    // …and the next message wait has it: nothing was consumed.
    let message_wait = structured(
        &alice
            .call("ns_message", json!({"action": "wait", "timeout_s": 30}))
            .await,
    );
    assert_eq!(message_wait["messages"][0]["body"], "not a kv change");
    assert_eq!(message_wait["messages"][0]["id"], structured(&sent)["id"]);

    // A KV change ends a wait for KV changes, with its key and value opened.
    let set = bob
        .call(
            "ns_kv",
            json!({"action": "set", "key": "build:status", "value": "green"}),
        )
        .await;
    assert!(!is_error(&set), "{}", text_of(&set));
    let kv_wait = structured(
        &alice
            .call(
                "ns_message",
                json!({"action": "wait", "kinds": ["kv", "ref"], "timeout_s": 30}),
            )
            .await,
    );
    assert_eq!(kv_wait["kv"][0]["change"]["key"], "build:status");
    assert_eq!(kv_wait["kv"][0]["change"]["value"], "green");
    assert_eq!(kv_wait["kv"][0]["change"]["by"], "bob");
    assert_eq!(kv_wait["refs"], json!([]));

    let unknown = alice
        .call("ns_message", json!({"action": "wait", "kinds": ["mail"]}))
        .await;
    assert!(is_error(&unknown));
    assert!(
        text_of(&unknown).contains("unknown kind `mail`"),
        "{}",
        text_of(&unknown)
    );

    drop((alice, bob));
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn the_client_is_told_when_a_message_a_ref_or_a_kv_change_arrives() {
    let (env, api, project) = provision::start().await;
    let mut alice = Listening::start(project.agent(&api, "alice").await).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;

    let info = alice
        .client
        .peer_info()
        .expect("the server introduced itself");
    assert!(
        info.capabilities
            .experimental
            .as_ref()
            .is_some_and(|e| e.contains_key("claude/channel")),
        "{:?}",
        info.capabilities
    );
    // Live before anything is sent, so the arrivals come through the stream.
    nexysync_tests::eventually("alice's stream to be live", DEADLINE, || async {
        let status = structured(&alice.call("ns_auth", json!({"action": "status"})).await);
        status.to_string().contains("\"live\":true").then_some(())
    })
    .await;

    let long = "y".repeat(3000);
    let sent = structured(
        &bob.call(
            "ns_message",
            json!({"action": "send", "to": "alice", "body": long, "topic": "deploy"}),
        )
        .await,
    );
    let told = alice.next_notification("message").await;
    assert_eq!(told["meta"]["from"], "bob");
    assert_eq!(told["meta"]["id"], sent["id"]);
    assert_eq!(told["meta"]["topic"], "deploy");
    let content = told["content"].as_str().unwrap();
    assert!(content.contains("3000 characters"), "{content}");
    assert!(content.len() < 600, "a summary, not the body");

    bob.call(
        "ns_ref",
        json!({"action": "share", "path": "src/lib.rs", "start_line": 1, "end_line": 2, "snippet": "x"}),
    )
    .await;
    let told = alice.next_notification("ref").await;
    assert_eq!(told["meta"]["path"], "src/lib.rs");
    bob.call(
        "ns_kv",
        json!({"action": "set", "key": "owner:api", "value": "bob"}),
    )
    .await;
    let told = alice.next_notification("kv").await;
    assert_eq!(told["meta"]["key"], "owner:api");
    assert_eq!(told["meta"]["from"], "bob");

    // Notified, and still delivered by wait: a notification consumes nothing.
    let waited = structured(
        &alice
            .call("ns_message", json!({"action": "wait", "timeout_s": 30}))
            .await,
    );
    assert_eq!(waited["messages"][0]["id"], sent["id"]);

    drop((alice, bob));
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn lists_are_brief_by_default_and_full_on_request_with_long_texts_cut_and_measured() {
    let (env, api, project) = provision::start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;
    let snippet = "let x = 1;\n".repeat(100);
    let value = "v".repeat(1000);
    bob.call(
        "ns_ref",
        json!({"action": "share", "path": "src/a.rs", "start_line": 1, "end_line": 100,
               "snippet": snippet, "commit": "main", "to": "alice"}),
    )
    .await;
    bob.call(
        "ns_kv",
        json!({"action": "set", "key": "notes", "value": value}),
    )
    .await;

    let brief = nexysync_tests::eventually("alice to list the ref", DEADLINE, || async {
        let data = structured(&alice.call("ns_ref", json!({"action": "list"})).await);
        (data["refs"].as_array().map_or(0, Vec::len) == 1).then_some(data)
    })
    .await;
    assert_eq!(brief["form"], "brief");
    assert_eq!(brief["refs"][0]["snippet_cut"], true);
    assert_eq!(brief["refs"][0]["snippet_chars"], snippet.chars().count());
    assert_eq!(
        brief["refs"][0]["ref"]["snippet"].as_str().unwrap().len(),
        200
    );
    assert!(brief["refs"][0]["ref"].get("commit").is_none());
    let full = structured(
        &alice
            .call(
                "ns_ref",
                json!({"action": "list", "full": true, "limit": 1}),
            )
            .await,
    );
    assert_eq!(full["form"], "full");
    assert_eq!(full["refs"][0]["ref"]["snippet"], snippet);
    assert_eq!(full["refs"][0]["ref"]["commit"], "main");
    assert!(full["refs"][0].get("snippet_cut").is_none());
    assert!(full["next_since"].as_u64().unwrap() > 0);

    let kv = nexysync_tests::eventually("alice to list the key", DEADLINE, || async {
        let data = structured(&alice.call("ns_kv", json!({"action": "list"})).await);
        (data["entries"].as_array().map_or(0, Vec::len) == 1).then_some(data)
    })
    .await;
    assert_eq!(kv["entries"][0]["value_cut"], true);
    assert_eq!(kv["entries"][0]["value_chars"], 1000);
    assert!(kv["entries"][0]["entry"].get("updated_at").is_none());
    let kv_full = structured(
        &alice
            .call("ns_kv", json!({"action": "list", "full": true}))
            .await,
    );
    assert_eq!(kv_full["entries"][0]["entry"]["value"], value);

    // A thread pages with `limit` and `since`, answering a cursor.
    let first = structured(
        &bob.call(
            "ns_message",
            json!({"action": "send", "to": "alice", "body": "one"}),
        )
        .await,
    );
    for body in ["two", "three"] {
        bob.call(
            "ns_message",
            json!({"action": "send", "to": "alice", "body": body, "reply_to": first["id"]}),
        )
        .await;
    }
    let page = nexysync_tests::eventually("the thread to hold three", DEADLINE, || async {
        let all = structured(
            &alice
                .call("ns_message", json!({"action": "thread", "id": first["id"]}))
                .await,
        );
        (all["messages"].as_array().map_or(0, Vec::len) == 3).then_some(())
    });
    page.await;
    let page = structured(
        &alice
            .call(
                "ns_message",
                json!({"action": "thread", "id": first["id"], "limit": 2}),
            )
            .await,
    );
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], true);
    let rest = structured(
        &alice
            .call(
                "ns_message",
                json!({"action": "thread", "id": first["id"], "limit": 2, "since": page["next_since"]}),
            )
            .await,
    );
    assert_eq!(rest["messages"][0]["body"], "three");
    assert_eq!(rest["has_more"], false);

    drop((alice, bob));
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_restarted_server_neither_repeats_nor_skips_refs_and_leaves_messages_to_their_own_wait() {
    let (env, api, project) = provision::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = nexysync_mcp::KeyFile::path_in(dir.path());
    nexysync_mcp::KeyFile::write_new(&path, &project.agent(&api, "bob").await, false).unwrap();
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let share = |path: &str| {
        json!({"action": "share", "path": path, "start_line": 1, "end_line": 1,
               "snippet": "x", "to": "bob"})
    };
    let wait_for_refs = json!({"action": "wait", "kinds": ["ref"], "timeout_s": 10});
    let paths = |answer: &Value| -> Vec<String> {
        answer["refs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["ref"]["path"].as_str().unwrap().to_owned())
            .collect()
    };

    let sent = alice
        .call(
            "ns_message",
            json!({"action": "send", "to": "bob", "body": "kept for later"}),
        )
        .await;
    assert!(!is_error(&sent), "{}", text_of(&sent));
    assert!(!is_error(
        &alice.call("ns_ref", share("src/first.rs")).await
    ));
    let bob = McpSession::with_server(NexySyncMcp::discover(None, dir.path())).await;
    let got = structured(&bob.call("ns_message", wait_for_refs.clone()).await);
    assert_eq!(paths(&got), ["src/first.rs"], "{got}");
    drop(bob);

    assert!(!is_error(
        &alice.call("ns_ref", share("src/while_away.rs")).await
    ));
    let bob = McpSession::with_server(NexySyncMcp::discover(None, dir.path())).await;
    let got = structured(&bob.call("ns_message", wait_for_refs).await);
    assert_eq!(paths(&got), ["src/while_away.rs"], "{got}");
    let messages = structured(
        &bob.call("ns_message", json!({"action": "wait", "timeout_s": 10}))
            .await,
    );
    assert_eq!(
        messages["messages"][0]["body"], "kept for later",
        "{messages}"
    );

    drop((alice, bob));
    api.stop().await;
    env.cleanup().await;
}

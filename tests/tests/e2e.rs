//! End to end through the real binaries, as a new user runs them: `nexysync up`,
//! `nexysync project create`, `nexysync agent add` three times, and one `nexysync-mcp`
//! process per agent over stdio. Then the server's storage is searched for the
//! plaintext and the project key: neither may be anywhere. And push the MCP way through
//! the real binary: a channel notification on its stdout when another agent writes, and
//! `wait` with `kinds`.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use nexysync_tests::processes::{binary, nexysync, RunningServer, ThrowawayNats};
use nexysync_tests::system::{call, contains, files_under, McpAgent as Agent};
use nexysync_tests::{postgres_server_url, unique_name};
use rmcp::model::CustomNotification;
use rmcp::service::NotificationContext;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{json, Value};

fn bodies(answer: &Value) -> Vec<String> {
    answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect()
}

/// The bodies a message wait of `peer` answers.
async fn message_wait_bodies(peer: &rmcp::Peer<RoleClient>) -> Vec<String> {
    let waited = call(
        peer,
        "ns_message",
        json!({"action": "wait", "timeout_s": 30}),
    )
    .await
    .structured_content
    .unwrap();
    bodies(&waited)
}

/// Every file under `dir`, read whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_talk_through_the_real_binaries_and_the_server_learns_nothing() {
    nexysync_tests::init_logging();
    let root = tempfile::tempdir().unwrap();
    let dir = |name: &str| {
        let path = root.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    };
    let nats = ThrowawayNats::start(&dir("nats")).await;
    let database = unique_name("e2e");
    let data_dir = dir("data");
    let envs = vec![
        ("NEXYSYNC_NATS_URL", nats.url.clone()),
        (
            "DATABASE_URL",
            format!("{}/{database}", postgres_server_url()),
        ),
        ("NEXYSYNC_HOME", dir("home").display().to_string()),
        ("NEXYSYNC_DATA_DIR", data_dir.display().to_string()),
        ("NEXYSYNC_ADMIN_TOKEN", String::new()),
    ];
    let server = RunningServer::start(&envs, &data_dir).await;

    // Provision as a new user would.
    nexysync(
        &["project", "create", "demo", "--server", &server.url],
        &envs,
    )
    .await;
    for name in ["alice", "bob", "carol"] {
        let agent_dir = dir(name).display().to_string();
        nexysync(&["agent", "add", "demo", name, "--dir", &agent_dir], &envs).await;
    }
    let alice = Agent::start(&dir("alice")).await;
    let bob = Agent::start(&dir("bob")).await;
    let carol = Agent::start(&dir("carol")).await;

    let status = alice.call("ns_auth", json!({"action": "status"})).await;
    assert!(status.to_string().contains("alice"), "{status}");

    let canary = format!("canary-{}", hex::encode(rand::random::<[u8; 8]>()));

    // Bob waits; Alice sends; Bob's wait returns the plaintext.
    let bob_peer = bob.client.peer().clone();
    let waiting = tokio::spawn(async move {
        call(
            &bob_peer,
            "ns_message",
            json!({"action": "wait", "timeout_s": 60}),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await; // let the wait start; not a sync point
    let sent = alice
        .call(
            "ns_message",
            json!({"action": "send", "to": "bob", "body": format!("{canary} hello bob"), "topic": format!("{canary}-topic")}),
        )
        .await;
    let first_id = sent["id"].as_str().unwrap().to_owned();
    let woken = waiting.await.unwrap();
    assert_ne!(woken.is_error, Some(true), "{woken:?}");
    let woken = woken.structured_content.unwrap();
    assert_eq!(bodies(&woken), [format!("{canary} hello bob")]);
    assert_eq!(woken["messages"][0]["from"], "alice");

    // Bob replies; Alice reads a thread of two.
    bob.call(
        "ns_message",
        json!({"action": "send", "to": "alice", "body": format!("{canary} hi alice"), "reply_to": first_id}),
    )
    .await;
    let mut thread = Value::Null;
    for _ in 0..100 {
        thread = alice
            .call("ns_message", json!({"action": "thread", "id": first_id}))
            .await;
        if thread["messages"].as_array().is_some_and(|m| m.len() == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        bodies(&thread),
        [format!("{canary} hello bob"), format!("{canary} hi alice")]
    );

    // A broadcast reaches everyone.
    alice
        .call(
            "ns_message",
            json!({"action": "broadcast", "body": format!("{canary} to everyone")}),
        )
        .await;
    for agent in [&bob, &carol] {
        let mut seen = Vec::new();
        while !seen.contains(&format!("{canary} to everyone")) {
            let answer = agent
                .call("ns_message", json!({"action": "wait", "timeout_s": 30}))
                .await;
            assert_ne!(answer["timed_out"], true, "the broadcast arrived");
            seen.extend(bodies(&answer));
        }
    }

    // A message sent while Carol is offline is in her inbox when she returns.
    carol.stop().await;
    alice
        .call(
            "ns_message",
            json!({"action": "send", "to": "carol", "body": format!("{canary} while you were out")}),
        )
        .await;
    let carol = Agent::start(&dir("carol")).await;
    let mut inbox = Vec::new();
    for _ in 0..100 {
        let answer = carol
            .call("ns_message", json!({"action": "check", "since": 0}))
            .await;
        inbox = bodies(&answer);
        if inbox.contains(&format!("{canary} while you were out")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        inbox.contains(&format!("{canary} while you were out")),
        "{inbox:?}"
    );

    // The server goes away: a wait that could not hear says so, instead of `timed_out`
    // (which tells an agent that nobody wrote).
    server.stop().await;
    let refused = carol
        .refused("ns_message", json!({"action": "wait", "timeout_s": 5}))
        .await;
    assert!(
        refused.contains("stream_unavailable") && refused.contains("`check`"),
        "{refused}"
    );

    for agent in [alice, bob, carol] {
        agent.stop().await;
    }
    let dump = tokio::process::Command::new("pg_dump")
        .arg(format!("{}/{database}", postgres_server_url()))
        .output()
        .await
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    nats.stop().await;

    // Nothing the server stores holds the plaintext or the project key.
    let project_file: Value = serde_json::from_slice(
        &std::fs::read(root.path().join("home/projects/demo.json")).unwrap(),
    )
    .unwrap();
    let key_text = project_file["project_key"].as_str().unwrap().to_owned();
    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode(&key_text)
        .unwrap();
    let mut stored = files_under(&root.path().join("nats"));
    assert!(
        stored.iter().any(|(_, bytes)| bytes.len() > 1000),
        "the NATS store holds the events"
    );
    stored.extend(files_under(&data_dir));
    stored.push((PathBuf::from("pg_dump"), dump.stdout));
    for (path, bytes) in &stored {
        for (what, needle) in [
            ("the plaintext", canary.as_bytes()),
            ("the project key", key_text.as_bytes()),
            ("the project key's bytes", &key_bytes[..]),
        ] {
            assert!(
                !contains(bytes, needle),
                "{what} found in {}",
                path.display()
            );
        }
    }

    let pool = sqlx::PgPool::connect(&format!("{}/postgres", postgres_server_url()))
        .await
        .unwrap();
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    ))
    .execute(&pool)
    .await
    .unwrap();
}

/// An MCP client that records the custom notifications its server sends.
#[derive(Clone)]
struct Recorder {
    tx: tokio::sync::mpsc::UnboundedSender<CustomNotification>,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_notifies_its_client_and_waits_for_the_kinds_asked() {
    nexysync_tests::init_logging();
    let root = tempfile::tempdir().unwrap();
    let dir = |name: &str| {
        let path = root.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    };
    let nats = ThrowawayNats::start(&dir("nats")).await;
    let database = unique_name("e2e_push");
    let data_dir = dir("data");
    let envs = vec![
        ("NEXYSYNC_NATS_URL", nats.url.clone()),
        (
            "DATABASE_URL",
            format!("{}/{database}", postgres_server_url()),
        ),
        ("NEXYSYNC_HOME", dir("home").display().to_string()),
        ("NEXYSYNC_DATA_DIR", data_dir.display().to_string()),
        ("NEXYSYNC_ADMIN_TOKEN", String::new()),
    ];
    let server = RunningServer::start(&envs, &data_dir).await;
    nexysync(
        &["project", "create", "demo", "--server", &server.url],
        &envs,
    )
    .await;
    for name in ["alice", "bob"] {
        let agent_dir = dir(name).display().to_string();
        nexysync(&["agent", "add", "demo", name, "--dir", &agent_dir], &envs).await;
    }

    // Alice writes before bob's tool runs: his tool must still say so once it is there.
    let alice = Agent::start(&dir("alice")).await;
    let early = alice
        .call(
            "ns_message",
            json!({"action": "send", "to": "bob", "body": "before you came"}),
        )
        .await;

    // Bob's tool listens for notifications, over the binary's stdio.
    let command = tokio::process::Command::new(binary("nexysync-mcp")).configure(|cmd| {
        cmd.current_dir(dir("bob")).env_remove("NEXYSYNC_KEY_FILE");
    });
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(Stdio::null())
        .spawn()
        .expect("nexysync-mcp starts");
    let (tx, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    let bob = Recorder { tx }
        .serve(transport)
        .await
        .expect("MCP handshake");
    let bob_peer = bob.peer().clone();

    let info = bob.peer_info().expect("the server introduced itself");
    assert!(info
        .capabilities
        .experimental
        .as_ref()
        .is_some_and(|e| e.contains_key("claude/channel")));
    let deadline = Duration::from_secs(30);
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let status = call(&bob_peer, "ns_auth", json!({"action": "status"})).await;
        if status
            .structured_content
            .is_some_and(|s| s.to_string().contains("\"live\":true"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "bob's stream went live"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The early message was announced: as one notice of what waits, or on its own when
    // the stream replayed it after the client was there.
    let deadline_early = tokio::time::Instant::now() + deadline;
    loop {
        let notification = tokio::time::timeout_at(deadline_early, notifications.recv())
            .await
            .expect("the early message announced within the deadline")
            .expect("the client runs");
        let params = notification.params.unwrap();
        let told = match params["meta"]["kind"].as_str() {
            Some("waiting") => params["meta"]["count"] != "0",
            Some("message") => params["meta"]["id"] == early["id"],
            _ => false,
        };
        if told {
            break;
        }
    }
    assert_eq!(message_wait_bodies(&bob_peer).await, ["before you came"]);

    // A wait for refs is woken by a ref, not by the message sent first.
    let waiting = {
        let peer = bob_peer.clone();
        tokio::spawn(async move {
            call(
                &peer,
                "ns_message",
                json!({"action": "wait", "kinds": ["ref"], "timeout_s": 60}),
            )
            .await
        })
    };
    let sent = alice
        .call(
            "ns_message",
            json!({"action": "send", "to": "bob", "body": "the build is green", "topic": "ci"}),
        )
        .await;
    let shared = alice
        .call(
            "ns_ref",
            json!({"action": "share", "path": "src/ci.rs", "start_line": 4, "end_line": 8,
                   "snippet": "fn green() {}", "to": "bob"}),
        )
        .await;
    let woken = waiting.await.unwrap();
    assert_ne!(woken.is_error, Some(true), "{woken:?}");
    let woken = woken.structured_content.unwrap();
    assert_eq!(woken["refs"][0]["ref"]["id"], shared["id"], "{woken}");
    assert!(woken.get("messages").is_none());

    // The message was announced on stdout, as a channel notification…
    let told = loop {
        let notification = tokio::time::timeout(deadline, notifications.recv())
            .await
            .expect("a notification within the deadline")
            .expect("the client runs");
        assert_eq!(notification.method, "notifications/claude/channel");
        let params = notification.params.unwrap();
        if params["meta"]["kind"] == "message" && params["meta"]["id"] == sent["id"] {
            break params;
        }
    };
    assert_eq!(told["meta"]["from"], "alice");
    assert_eq!(told["meta"]["id"], sent["id"]);
    assert_eq!(told["meta"]["topic"], "ci");
    // …and is still there for a message wait.
    assert_eq!(message_wait_bodies(&bob_peer).await, ["the build is green"]);

    let _ = bob.cancel().await;
    alice.stop().await;
    server.stop().await;
    nats.stop().await;
    let pool = sqlx::PgPool::connect(&format!("{}/postgres", postgres_server_url()))
        .await
        .unwrap();
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    ))
    .execute(&pool)
    .await
    .unwrap();
}

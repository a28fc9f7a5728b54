//! A file shared end to end through the real binaries: `nexysync up` (API, projectors and
//! the in-process CDN), `nexysync project create`, `nexysync agent add`, and one
//! `nexysync-mcp` per agent over stdio. The file arrives whole; neither its name nor its
//! content is anywhere the server stores things (blob store, NATS store, pg_dump).

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use nexysync_tests::processes::{nexysync, RunningServer, ThrowawayNats};
use nexysync_tests::system::McpAgent;
use nexysync_tests::{eventually, postgres_server_url, unique_name};
use serde_json::json;

fn all_bytes_under(dir: &Path) -> Vec<u8> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.extend(std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_shared_through_the_real_binaries_arrives_whole_and_the_server_learns_nothing() {
    nexysync_tests::init_logging();
    let root = tempfile::tempdir().unwrap();
    let dir = |name: &str| {
        let path = root.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    };
    let nats = ThrowawayNats::start(&dir("nats")).await;
    let database = unique_name("files");
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
    let alice = McpAgent::start(&dir("alice")).await;
    let bob = McpAgent::start(&dir("bob")).await;

    let name_canary = format!("name-{}", hex::encode(rand::random::<[u8; 6]>()));
    let content_canary = format!("content-{}", hex::encode(rand::random::<[u8; 6]>()));
    let mut data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 247) as u8).collect();
    data[1_234_567..1_234_567 + content_canary.len()].copy_from_slice(content_canary.as_bytes());
    let file_name = format!("{name_canary}.bin");
    std::fs::write(dir("alice").join(&file_name), &data).unwrap();

    let uploaded = alice
        .raw(
            "ns_file",
            json!({"action": "upload", "path": file_name, "to": "bob"}),
        )
        .await;
    assert_ne!(uploaded.is_error, Some(true), "{uploaded:?}");
    let id = uploaded.structured_content.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let listed = eventually("bob to list the file", Duration::from_secs(20), || async {
        let answer = bob.raw("ns_file", json!({"action": "list"})).await;
        let data = answer.structured_content?;
        (data["files"].as_array().map_or(0, Vec::len) == 1).then_some(data)
    })
    .await;
    assert_eq!(listed["files"][0]["id"], id);
    assert_eq!(listed["files"][0]["name"], file_name.as_str());
    assert_eq!(listed["files"][0]["from"], "alice");
    assert_eq!(listed["files"][0]["size"], data.len());

    let read = bob
        .raw("ns_file", json!({"action": "read", "id": id, "path": "."}))
        .await;
    assert_ne!(read.is_error, Some(true), "{read:?}");
    assert_eq!(std::fs::read(dir("bob").join(&file_name)).unwrap(), data);

    alice.stop().await;
    bob.stop().await;
    let dump = tokio::process::Command::new("pg_dump")
        .arg(format!("{}/{database}", postgres_server_url()))
        .output()
        .await
        .expect("pg_dump runs");
    assert!(dump.status.success());
    server.stop().await;
    nats.stop().await;

    let blobs = all_bytes_under(&data_dir.join("blobs"));
    assert!(blobs.len() >= data.len(), "the blob store holds the file");
    for (place, bytes) in [
        ("the blob store", blobs),
        ("the NATS store", all_bytes_under(&root.path().join("nats"))),
        ("pg_dump", dump.stdout),
    ] {
        assert!(
            !contains(&bytes, name_canary.as_bytes()),
            "the name in {place}"
        );
        assert!(
            !contains(&bytes, content_canary.as_bytes()),
            "the content in {place}"
        );
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

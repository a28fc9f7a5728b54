//! A file shared end to end through the real binaries: `nexysync up` (API, projectors and
//! the in-process CDN), `nexysync project create`, `nexysync agent add`, and one
//! `nexysync-mcp` per agent over stdio. The file arrives whole; neither its name nor its
//! content is anywhere the server stores things (blob store, NATS store, pg_dump).

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nexysync_tests::eventually;
use nexysync_tests::system::{contains, LocalSystem};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_shared_through_the_real_binaries_arrives_whole_and_the_server_learns_nothing() {
    let system = LocalSystem::start(&[]).await;
    system.create_project("demo").await;
    let alice = system.add_agent("demo", "alice").await;
    let bob = system.add_agent("demo", "bob").await;
    let dir = |name: &str| system.dir(name);

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
    let dump = system.pg_dump().await;
    let stored = system.stop().await;
    let under = |part: &str| -> Vec<u8> {
        stored
            .iter()
            .filter(|(path, _)| path.components().any(|c| c.as_os_str() == part))
            .flat_map(|(_, bytes)| bytes.iter().copied())
            .collect()
    };
    let blobs = under("blobs");
    assert!(blobs.len() >= data.len(), "the blob store holds the file");
    for (place, bytes) in [
        ("the blob store", blobs),
        ("the NATS store", under("nats")),
        ("pg_dump", dump),
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
}

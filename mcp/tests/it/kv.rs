//! `ns_kv` as agents use it, each through its own in-process MCP server against the real
//! API: set, get, a compare-and-set conflict, list; and the store holding ciphertext only.

use serde_json::json;

use nexysync_mcp::client::Client;
use nexysync_tests::eventually;

use crate::mcp_session::{is_error, structured, text_of, McpSession};
use crate::provision::{self, everything_stored, DEADLINE};

#[tokio::test]
async fn agents_share_a_lease_through_ns_kv() {
    let (env, api, project) = provision::start().await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;
    let lease = json!({
        "action": "set", "key": "lease:src/upload.rs", "value": "alice until 12:30",
        "expected_revision": 0, "ttl_s": 600,
    });

    let taken = alice.call("ns_kv", lease.clone()).await;
    assert!(!is_error(&taken), "{}", text_of(&taken));
    let revision = structured(&taken)["revision"].as_u64().unwrap();

    let got = alice
        .call(
            "ns_kv",
            json!({"action": "get", "key": "lease:src/upload.rs"}),
        )
        .await;
    assert!(!is_error(&got), "{}", text_of(&got));
    let entry = &structured(&got)["entry"];
    assert_eq!(entry["value"], "alice until 12:30");
    assert_eq!(entry["revision"], revision);
    assert_eq!(entry["updated_by"], "alice");

    // Bob tries to take the same lease: refused, told the revision and to re-read.
    let mut bob_lease = lease.clone();
    bob_lease["value"] = json!("bob until 13:00");
    let conflict = bob.call("ns_kv", bob_lease).await;
    assert!(is_error(&conflict), "{}", text_of(&conflict));
    let text = text_of(&conflict);
    assert!(text.contains("revision_mismatch"), "{text}");
    assert!(
        text.contains(&format!("current_revision is {revision}")),
        "{text}"
    );
    assert!(text.contains("ns_kv get"), "{text}");

    // Bob sees alice's lease in the list.
    let listed = eventually("bob to list the lease", DEADLINE, || async {
        let answer = bob.call("ns_kv", json!({"action": "list"})).await;
        let data = structured(&answer);
        (data["entries"].as_array().map_or(0, Vec::len) == 1).then_some(data)
    })
    .await;
    assert_eq!(listed["entries"][0]["entry"]["key"], "lease:src/upload.rs");
    assert_eq!(listed["entries"][0]["entry"]["value"], "alice until 12:30");
    assert_eq!(listed["has_more"], false);

    // Alice releases it with her revision; then the key is gone.
    let released = alice
        .call(
            "ns_kv",
            json!({"action": "delete", "key": "lease:src/upload.rs", "expected_revision": revision}),
        )
        .await;
    assert!(!is_error(&released), "{}", text_of(&released));
    let gone = alice
        .call(
            "ns_kv",
            json!({"action": "get", "key": "lease:src/upload.rs"}),
        )
        .await;
    assert_eq!(structured(&gone)["found"], false);

    let missing_key = bob
        .call("ns_kv", json!({"action": "set", "value": "x"}))
        .await;
    assert!(is_error(&missing_key));
    assert!(text_of(&missing_key).contains("`key` is required"));

    drop((alice, bob));
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn the_server_holds_kv_keys_and_values_only_as_ciphertext() {
    let (env, api, project) = provision::start().await;
    let alice = Client::new(project.agent(&api, "alice").await).unwrap();
    let key = "canary-key-91c4e";
    let value = "canary-value-3b7f0 very secret";
    let set = alice.kv_set(key, value, Some(0), Some(600)).await.unwrap();
    let read = alice.kv_get(key).await.unwrap().unwrap();
    assert_eq!((read.value.as_str(), read.revision), (value, set.revision));

    let stored = everything_stored(&env).await;
    assert!(
        stored.matches(&set.id.to_string()).count() >= 2,
        "the write is in the log and in the read models"
    );
    for secret in ["canary-key-91c4e", "canary-value-3b7f0"] {
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

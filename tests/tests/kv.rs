//! The shared key-value store through the API: set, get, list, delete; compare-and-set
//! (a stale revision is refused with the current one, racing writers: exactly one wins);
//! TTL expiry; `kv_update` pushed to the other agents; nothing crosses projects.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use nexysync_domain::event::{Envelope, KV_NAMESPACE};
use nexysync_tests::{eventually, TestEnv, TestProject};

fn revision(answer: &serde_json::Value) -> u64 {
    answer["revision"].as_u64().unwrap()
}

#[tokio::test]
async fn an_agent_sets_gets_lists_and_deletes_a_key() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "kv").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let ix = project.keys().blind_index(KV_NAMESPACE, "build:status");

    // Bob listens: alice's writes reach him as `kv_update`.
    let stream = api
        .http
        .get(format!("{}/v1/stream", api.url))
        .bearer_auth(bob.token.expose_secret())
        .send()
        .await
        .unwrap();
    let mut bob_events = stream.bytes_stream().eventsource();
    assert_eq!(bob_events.next().await.unwrap().unwrap().event, "ready");

    let event = alice.kv_set(&project, "build:status", "green", None, None);
    let (status, set) = alice.kv_write(&api, &event).await;
    assert_eq!(status, 201, "{set}");
    assert_eq!(set["revision"], set["seq"]);

    let (status, entry) = bob
        .get(
            &api,
            &format!("/v1/kv/{}?min_seq={}", ix.as_str(), revision(&set)),
        )
        .await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["revision"], set["revision"]);
    let stored: Envelope = serde_json::from_value(entry["event"].clone()).unwrap();
    assert_eq!(stored.id, event.id);
    assert_eq!(
        stored.open(&project.keys(), "value").unwrap().unwrap(),
        b"green"
    );

    let pushed = tokio::time::timeout(Duration::from_secs(10), bob_events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pushed.event, "kv_update");
    assert_eq!(pushed.id, revision(&set).to_string());

    let other = alice.kv_set(&project, "deploy:target", "staging", None, None);
    let (_, second) = alice.kv_write(&api, &other).await;
    let (status, page) = bob
        .get(
            &api,
            &format!("/v1/kv?limit=1&min_seq={}", revision(&second)),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    assert_eq!(page["has_more"], true);
    let after = page["next_after"].as_str().unwrap();
    let (_, rest) = bob.get(&api, &format!("/v1/kv?after={after}")).await;
    assert_eq!(rest["entries"].as_array().unwrap().len(), 1);
    assert_eq!(rest["has_more"], false);
    assert_ne!(rest["entries"][0]["key_ix"], page["entries"][0]["key_ix"]);

    let (status, deleted) = bob
        .kv_write(
            &api,
            &bob.kv_delete(&project, "build:status", Some(revision(&set))),
        )
        .await;
    assert_eq!(status, 201, "{deleted}");
    let (status, gone) = alice
        .get(
            &api,
            &format!("/v1/kv/{}?min_seq={}", ix.as_str(), revision(&deleted)),
        )
        .await;
    assert_eq!(
        (status, gone["error"]["code"].as_str()),
        (404, Some("key_not_found"))
    );
    // Bob's own delete is not echoed to him: after alice's second set, the next frame
    // he gets is alice's marker.
    let (_, marker) = alice
        .kv_write(&api, &alice.kv_set(&project, "marker", "m", None, None))
        .await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let frame = tokio::time::timeout(Duration::from_secs(10), bob_events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if frame.event == "kv_update" {
            seen.push(frame.id);
        }
    }
    assert_eq!(
        seen,
        [revision(&second).to_string(), revision(&marker).to_string()]
    );

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_stale_compare_and_set_is_refused_with_the_current_revision() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "kv").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;

    let (status, first) = alice
        .kv_write(
            &api,
            &alice.kv_set(&project, "lease:a.rs", "alice", Some(0), None),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    let current = revision(&first);

    // Bob thinks the key is free: refused, told the current revision.
    let (status, refused) = bob
        .kv_write(
            &api,
            &bob.kv_set(&project, "lease:a.rs", "bob", Some(0), None),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "revision_mismatch");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("current_revision is {current}")),
        "{message}"
    );

    // With the revision he read, his write goes through; the old one is stale now.
    let (status, second) = bob
        .kv_write(
            &api,
            &bob.kv_set(&project, "lease:a.rs", "bob", Some(current), None),
        )
        .await;
    assert_eq!(status, 201, "{second}");
    let (status, stale) = alice
        .kv_write(
            &api,
            &alice.kv_delete(&project, "lease:a.rs", Some(current)),
        )
        .await;
    assert_eq!(status, 409, "{stale}");
    assert!(stale["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&format!("current_revision is {}", revision(&second))));

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn of_two_agents_racing_for_one_key_exactly_one_wins() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "kv").await;
    let mut agents = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        agents.push(project.add_agent(&api, name).await);
    }
    for round in 0..3 {
        let key = format!("lease:race-{round}");
        let writes = agents.iter().map(|agent| {
            let event = agent.kv_set(&project, &key, agent.name.as_str(), Some(0), Some(60));
            let api = &api;
            async move { agent.kv_write(api, &event).await }
        });
        let outcomes = futures::future::join_all(writes).await;
        let mut statuses: Vec<u16> = outcomes.iter().map(|(s, _)| *s).collect();
        statuses.sort();
        assert_eq!(statuses, [201, 409, 409, 409], "{outcomes:?}");
    }

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_key_set_with_a_ttl_disappears_and_counts_as_absent() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "kv").await;
    let alice = project.add_agent(&api, "alice").await;
    let ix = project.keys().blind_index(KV_NAMESPACE, "lease:short");

    let (status, set) = alice
        .kv_write(
            &api,
            &alice.kv_set(&project, "lease:short", "alice", Some(0), Some(1)),
        )
        .await;
    assert_eq!(status, 201, "{set}");
    let (status, _) = alice
        .get(
            &api,
            &format!("/v1/kv/{}?min_seq={}", ix.as_str(), revision(&set)),
        )
        .await;
    assert_eq!(status, 200);

    eventually("the entry to expire", Duration::from_secs(10), || async {
        let (status, _) = alice.get(&api, &format!("/v1/kv/{}", ix.as_str())).await;
        (status == 404).then_some(())
    })
    .await;
    let (_, page) = alice.get(&api, "/v1/kv").await;
    assert_eq!(page["entries"], serde_json::json!([]));
    // Expired is absent for compare-and-set too: "must not exist" succeeds again.
    let (status, again) = alice
        .kv_write(
            &api,
            &alice.kv_set(&project, "lease:short", "again", Some(0), None),
        )
        .await;
    assert_eq!(status, 201, "{again}");

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn an_agent_of_another_project_cannot_read_or_change_a_key() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let ours = TestProject::create(&api, "ours").await;
    let theirs = TestProject::create(&api, "theirs").await;
    let alice = ours.add_agent(&api, "alice").await;
    let eve = theirs.add_agent(&api, "eve").await;
    let ix = ours.keys().blind_index(KV_NAMESPACE, "secret:plan");

    let (_, set) = alice
        .kv_write(
            &api,
            &alice.kv_set(&ours, "secret:plan", "ship friday", None, None),
        )
        .await;
    let min = format!("min_seq={}", revision(&set));

    let (status, body) = eve
        .get(&api, &format!("/v1/kv/{}?{min}", ix.as_str()))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("key_not_found"))
    );
    let (_, page) = eve.get(&api, &format!("/v1/kv?{min}")).await;
    assert_eq!(page["entries"], serde_json::json!([]));

    // Writing into our project is refused; her own project's entry of the same index
    // does not touch ours.
    let mut forged = eve.kv_set(&theirs, "secret:plan", "cancelled", None, None);
    forged.project = ours.id;
    let (status, body) = eve.kv_write(&api, &forged).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("wrong_project"))
    );
    let (status, body) = eve
        .kv_write(&api, &eve.kv_delete(&ours, "secret:plan", None))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("key_not_found"))
    );
    let (status, _) = eve
        .kv_write(
            &api,
            &eve.kv_set(&ours, "secret:plan", "mine", Some(0), None),
        )
        .await;
    assert_eq!(
        status, 201,
        "her own project's key of the same index is hers"
    );

    let (status, entry) = alice.get(&api, &format!("/v1/kv/{}", ix.as_str())).await;
    assert_eq!(status, 200);
    assert_eq!(entry["revision"], set["revision"]);

    api.stop().await;
    env.cleanup().await;
}

//! Shared code references through the API: share, list, get; a direct reference seen
//! only by its sender and recipient; bad line ranges refused; `new_ref` pushed to the
//! recipient; nothing crosses projects.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use nexysync_domain::event::{fields, Envelope};
use nexysync_tests::{TestEnv, TestProject};

fn seq(answer: &serde_json::Value) -> u64 {
    answer["seq"].as_u64().unwrap()
}

fn ids(page: &serde_json::Value) -> Vec<String> {
    page["refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_agent_shares_a_ref_that_others_list_and_get() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "refs").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;

    let event = alice.ref_shared(&project, None, "src/upload.rs", (10, 24), "fn upload() {}");
    let (status, shared) = alice.share_ref(&api, &event).await;
    assert_eq!(status, 201, "{shared}");
    let (status, again) = alice.share_ref(&api, &event).await;
    assert_eq!((status, &again["seq"]), (200, &shared["seq"]), "{again}");

    let (status, got) = bob
        .get(
            &api,
            &format!("/v1/refs/{}?min_seq={}", event.id, seq(&shared)),
        )
        .await;
    assert_eq!(status, 200, "{got}");
    let stored: Envelope = serde_json::from_value(got["event"].clone()).unwrap();
    assert_eq!((stored.id, stored.sig), (event.id, event.sig));
    assert_eq!(
        stored
            .open(&project.keys(), fields::SNIPPET)
            .unwrap()
            .unwrap(),
        b"fn upload() {}"
    );

    let second = alice.ref_shared(&project, None, "src/lib.rs", (1, 1), "mod x;");
    let (_, second_shared) = alice.share_ref(&api, &second).await;
    let (status, page) = bob
        .get(
            &api,
            &format!("/v1/refs?limit=1&min_seq={}", seq(&second_shared)),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), [event.id.to_string()]);
    assert_eq!(page["has_more"], true);
    let next = page["next_since_seq"].as_u64().unwrap();
    let (_, rest) = bob.get(&api, &format!("/v1/refs?since_seq={next}")).await;
    assert_eq!(ids(&rest), [second.id.to_string()]);
    assert_eq!(rest["has_more"], false);
    // The sharer sees her own references too.
    let (_, mine) = alice.get(&api, "/v1/refs").await;
    assert_eq!(ids(&mine).len(), 2);

    let (status, missing) = bob
        .get(&api, "/v1/refs/01a20b8e-4088-73ff-a3dd-ecb7eefda2c2")
        .await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (404, Some("ref_not_found"))
    );

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_direct_ref_is_seen_only_by_its_sender_and_recipient_and_pushed_to_the_recipient() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "refs").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let carol = project.add_agent(&api, "carol").await;

    let stream = api
        .http
        .get(format!("{}/v1/stream", api.url))
        .bearer_auth(bob.token.expose_secret())
        .send()
        .await
        .unwrap();
    let mut bob_events = stream.bytes_stream().eventsource();
    assert_eq!(bob_events.next().await.unwrap().unwrap().event, "ready");

    let event = alice.ref_shared(&project, Some(&bob), "src/a.rs", (3, 4), "let a = 1;");
    let (status, shared) = alice.share_ref(&api, &event).await;
    assert_eq!(status, 201, "{shared}");
    let min = format!("min_seq={}", seq(&shared));

    for reader in [&alice, &bob] {
        let (status, _) = reader
            .get(&api, &format!("/v1/refs/{}?{min}", event.id))
            .await;
        assert_eq!(status, 200);
        let (_, page) = reader.get(&api, &format!("/v1/refs?{min}")).await;
        assert_eq!(ids(&page), [event.id.to_string()]);
    }
    let (status, body) = carol
        .get(&api, &format!("/v1/refs/{}?{min}", event.id))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ref_not_found"))
    );
    let (_, page) = carol.get(&api, &format!("/v1/refs?{min}")).await;
    assert_eq!(page["refs"], serde_json::json!([]));

    let pushed = tokio::time::timeout(Duration::from_secs(10), bob_events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pushed.event, "new_ref");
    assert_eq!(pushed.id, seq(&shared).to_string());
    let data: serde_json::Value = serde_json::from_str(&pushed.data).unwrap();
    assert_eq!(data["seq"], shared["seq"]);
    assert_eq!(data["event"]["id"], event.id.to_string());

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_ref_with_a_bad_line_range_is_refused_clearly() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "refs").await;
    let alice = project.add_agent(&api, "alice").await;

    for lines in [(0, 3), (9, 8), (1, 10_001)] {
        let event = alice.ref_shared(&project, None, "src/a.rs", lines, "x");
        let (status, body) = alice.share_ref(&api, &event).await;
        assert_eq!(status, 422, "{lines:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_line_range");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("start_line must be at least 1"),
            "{body}"
        );
    }
    // A message sent to the refs endpoint is refused too.
    let message = alice.message(&project, None, None, "hi");
    let (status, body) = alice.share_ref(&api, &message).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn an_agent_of_another_project_cannot_read_list_or_address_a_ref() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let ours = TestProject::create(&api, "ours").await;
    let theirs = TestProject::create(&api, "theirs").await;
    let alice = ours.add_agent(&api, "alice").await;
    let eve = theirs.add_agent(&api, "eve").await;

    let event = alice.ref_shared(&ours, None, "src/secret.rs", (1, 2), "plan");
    let (_, shared) = alice.share_ref(&api, &event).await;
    let min = format!("min_seq={}", seq(&shared));

    let (status, body) = eve.get(&api, &format!("/v1/refs/{}?{min}", event.id)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ref_not_found"))
    );
    let (_, page) = eve.get(&api, &format!("/v1/refs?{min}")).await;
    assert_eq!(page["refs"], serde_json::json!([]));

    // Eve can neither write into our project nor address alice from hers.
    let mut forged = eve.ref_shared(&theirs, None, "x", (1, 1), "y");
    forged.project = ours.id;
    let (status, body) = eve.share_ref(&api, &forged).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("wrong_project"))
    );
    let to_alice = eve.ref_shared(&theirs, Some(&alice), "x", (1, 1), "y");
    let (status, body) = eve.share_ref(&api, &to_alice).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("unknown_recipient")),
        "{body}"
    );

    api.stop().await;
    env.cleanup().await;
}

//! An agent of one project can read nothing of another, and cannot write into it.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use futures::StreamExt;
use nexysync_tests::{TestEnv, TestProject};

#[tokio::test]
async fn an_agent_of_one_project_reads_nothing_of_another() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let ours = TestProject::create(&api, "ours").await;
    let theirs = TestProject::create(&api, "theirs").await;
    let alice = ours.add_agent(&api, "alice").await;
    let bob = ours.add_agent(&api, "bob").await;
    let eve = theirs.add_agent(&api, "eve").await;

    // Eve listens on her stream from the start.
    let stream = api
        .http
        .get(format!("{}/v1/stream?since_seq=0", api.url))
        .bearer_auth(eve.token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut eve_events = eventsource_stream::Eventsource::eventsource(stream.bytes_stream());

    let direct = alice.send(&api, &ours, Some(&bob), None, "secret").await;
    let broadcast = alice.send(&api, &ours, None, None, "all of ours").await;
    let min = format!("min_seq={}", broadcast.seq);

    let (_, inbox) = eve.get(&api, &format!("/v1/messages?{min}")).await;
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 0);
    for id in [direct.id, broadcast.id] {
        let (status, body) = eve.get(&api, &format!("/v1/messages/{id}?{min}")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("message_not_found"))
        );
        let (status, _) = eve
            .get(&api, &format!("/v1/messages/{id}/thread?{min}"))
            .await;
        assert_eq!(status, 404);
    }
    let (_, agents) = eve.get(&api, "/v1/agents").await;
    let names: Vec<_> = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["eve"]);

    // She can neither message them nor reply into their threads.
    let (status, body) = eve
        .post(&api, &eve.message(&theirs, Some(&bob), None, "hi"))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("unknown_recipient"))
    );
    let (status, body) = eve
        .post(&api, &eve.message(&theirs, None, Some(broadcast.id), "re"))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("reply_to_unknown_message"))
    );
    // Nor write an event into their project with her own token.
    let mut into_ours = alice.clone();
    into_ours.id = eve.id;
    into_ours.key = eve.key.clone();
    let (status, body) = eve
        .post(&api, &into_ours.message(&ours, None, None, "x"))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("wrong_project"))
    );

    // Her stream carried nothing of theirs: the first event is `ready`, and nothing follows.
    let first = eve_events.next().await.unwrap().unwrap();
    assert_eq!(first.event, "ready");
    let next = tokio::time::timeout(std::time::Duration::from_millis(500), eve_events.next()).await;
    assert!(next.is_err(), "eve's stream stayed silent: {next:?}");
    api.stop().await;
    env.cleanup().await;
}

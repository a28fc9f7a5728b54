//! SSE over a real socket: live push, resume after a dropped connection with exactly the
//! missed events, heartbeats.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};
use nexysync_domain::wire::StoredEvent;
use nexysync_tests::{TestAgent, TestApi, TestEnv, TestProject};

async fn connect(
    api: &TestApi,
    agent: &TestAgent,
    last_event_id: Option<u64>,
) -> impl Stream<Item = Event> + Unpin {
    let mut request = api
        .http
        .get(format!("{}/v1/stream", api.url))
        .bearer_auth(agent.token.expose_secret());
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    Box::pin(
        response
            .bytes_stream()
            .eventsource()
            .map(|event| event.expect("well-formed SSE")),
    )
}

async fn next_event(events: &mut (impl Stream<Item = Event> + Unpin)) -> Event {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream stays open")
}

/// Reads events until `ready`, returning the messages' sequences before it.
async fn until_ready(events: &mut (impl Stream<Item = Event> + Unpin)) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let event = next_event(events).await;
        match event.event.as_str() {
            "ready" => return seqs,
            "new_message" => seqs.push(message_seq(&event)),
            other => panic!("unexpected event {other}"),
        }
    }
}

fn message_seq(event: &Event) -> u64 {
    assert_eq!(event.event, "new_message");
    let stored: StoredEvent = serde_json::from_str(&event.data).unwrap();
    assert_eq!(
        event.id,
        stored.seq.0.to_string(),
        "the SSE id is the stream sequence"
    );
    stored.seq.0
}

#[tokio::test]
async fn a_resumed_stream_delivers_exactly_the_missed_events() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "demo").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;

    let mut stream = connect(&api, &bob, None).await;
    assert_eq!(until_ready(&mut stream).await, Vec::<u64>::new());
    let m1 = alice.send(&api, &project, Some(&bob), None, "m1").await;
    let m2 = alice.send(&api, &project, None, None, "m2").await;
    // Bob's own message is not echoed back to him.
    bob.send(&api, &project, None, None, "mine").await;
    assert_eq!(message_seq(&next_event(&mut stream).await), m1.seq.0);
    assert_eq!(message_seq(&next_event(&mut stream).await), m2.seq.0);
    drop(stream);

    let mut missed = Vec::new();
    for i in 3..=5 {
        missed.push(
            alice
                .send(&api, &project, Some(&bob), None, &format!("m{i}"))
                .await
                .seq
                .0,
        );
    }
    bob.send(&api, &project, None, None, "mine again").await;

    let mut resumed = connect(&api, &bob, Some(m2.seq.0)).await;
    assert_eq!(
        until_ready(&mut resumed).await,
        missed,
        "exactly the missed events"
    );
    let m6 = alice.send(&api, &project, Some(&bob), None, "m6").await;
    assert_eq!(
        message_seq(&next_event(&mut resumed).await),
        m6.seq.0,
        "then live"
    );
    let quiet = tokio::time::timeout(Duration::from_millis(300), resumed.next()).await;
    assert!(quiet.is_err(), "no duplicate follows: {quiet:?}");
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_stream_sends_heartbeats() {
    let env = TestEnv::new();
    let mut settings = env.settings();
    settings.heartbeat = Duration::from_millis(100);
    let api = env.spawn_api_with(settings).await;
    let project = TestProject::create(&api, "demo").await;
    let bob = project.add_agent(&api, "bob").await;
    let response = api
        .http
        .get(format!("{}/v1/stream", api.url))
        .bearer_auth(bob.token.expose_secret())
        .send()
        .await
        .unwrap();
    let mut bytes = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains(": heartbeat") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), bytes.next())
            .await
            .expect("a heartbeat within 5 s")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_server_restarted_mid_stream_resumes_with_no_gap() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "demo").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let mut stream = connect(&api, &bob, None).await;
    until_ready(&mut stream).await;
    let m1 = alice.send(&api, &project, Some(&bob), None, "before").await;
    assert_eq!(message_seq(&next_event(&mut stream).await), m1.seq.0);

    api.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
    assert!(
        matches!(ended, Ok(None)),
        "the stream ends when the server stops"
    );

    let api = env.spawn_api().await;
    let m2 = alice
        .send(&api, &project, Some(&bob), None, "while away")
        .await;
    let mut resumed = connect(&api, &bob, Some(m1.seq.0)).await;
    assert_eq!(until_ready(&mut resumed).await, vec![m2.seq.0]);
    api.stop().await;
    env.cleanup().await;
}

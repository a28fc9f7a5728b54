//! Messages through the API against real NATS and Postgres: send, inbox, read, thread,
//! read-your-writes, idempotent retries.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use nexysync_domain::event::{fields, Envelope};
use nexysync_domain::wire::Appended;
use nexysync_tests::{TestEnv, TestProject};

fn envelopes(page: &serde_json::Value) -> Vec<Envelope> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| serde_json::from_value(m["event"].clone()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_direct_message_reaches_its_recipient_sealed_and_verifiable() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "demo").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;

    let sent = alice
        .send(&api, &project, Some(&bob), None, "hello bob")
        .await;

    let (status, page) = bob
        .get(&api, &format!("/v1/messages?min_seq={}", sent.seq))
        .await;
    assert_eq!(status, 200, "{page}");
    let events = envelopes(&page);
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.id, sent.id);
    event.verify_signature(&alice.key.public_key()).unwrap();
    let body = event.open(&project.keys(), fields::BODY).unwrap().unwrap();
    assert_eq!(body, b"hello bob");
    assert_eq!(page["next_since_seq"], sent.seq.0);
    assert_eq!(page["has_more"], false);

    // The sender's own inbox does not echo it.
    let (_, page) = alice
        .get(&api, &format!("/v1/messages?min_seq={}", sent.seq))
        .await;
    assert!(envelopes(&page).is_empty());
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_broadcast_reaches_everyone_but_its_sender() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "demo").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let carol = project.add_agent(&api, "carol").await;

    let sent = alice.send(&api, &project, None, None, "hello all").await;
    for reader in [&bob, &carol] {
        let (_, page) = reader
            .get(&api, &format!("/v1/messages?min_seq={}", sent.seq))
            .await;
        assert_eq!(
            envelopes(&page).len(),
            1,
            "{} got the broadcast",
            reader.name
        );
    }

    // An inbox holds the broadcasts by others since the agent registered, in log order
    // among its direct messages.
    let dave = project.add_agent(&api, "dave").await;
    let direct = alice.send(&api, &project, Some(&bob), None, "to bob").await;
    let later = bob.send(&api, &project, None, None, "hello again").await;
    for (reader, expected) in [
        (&alice, vec![later.id]),
        (&bob, vec![sent.id, direct.id]),
        (&carol, vec![sent.id, later.id]),
        (&dave, vec![later.id]),
    ] {
        let (_, page) = reader
            .get(&api, &format!("/v1/messages?min_seq={}", later.seq))
            .await;
        let ids: Vec<_> = envelopes(&page).iter().map(|e| e.id).collect();
        assert_eq!(ids, expected, "{}'s inbox", reader.name);
    }
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_thread_holds_every_reply_in_log_order() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "demo").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;

    let question = alice
        .send(&api, &project, Some(&bob), None, "question")
        .await;
    let answer = bob
        .send(&api, &project, Some(&alice), Some(question.id), "answer")
        .await;
    let follow_up = alice
        .send(&api, &project, Some(&bob), Some(answer.id), "thanks")
        .await;

    let (status, thread) = bob
        .get(
            &api,
            &format!(
                "/v1/messages/{}/thread?min_seq={}",
                answer.id, follow_up.seq
            ),
        )
        .await;
    assert_eq!(status, 200, "{thread}");
    assert_eq!(thread["root"], question.id.to_string());
    let ids: Vec<String> = thread["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["event"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        [question.id, answer.id, follow_up.id].map(|id| id.to_string())
    );
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_long_thread_is_read_a_page_at_a_time_and_says_when_more_follow() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "long").await;
    let alice = project.add_agent(&api, "alice").await;
    let root = alice.send(&api, &project, None, None, "root").await;
    // A thousand replies, straight to the log (the API's path is not what is tested).
    let log = env.log().await;
    let mut last = root.seq;
    for i in 0..1_000 {
        let reply = alice.message(&project, None, Some(root.id), &format!("r{i}"));
        last = log.append(reply).await.unwrap().seq;
    }
    let thread = |since: Option<u64>| {
        let since = since.map_or(String::new(), |s| format!("&since_seq={s}"));
        let path = format!("/v1/messages/{}/thread?min_seq={last}{since}", root.id);
        let alice = &alice;
        let api = &api;
        async move {
            let (status, thread) = alice.get(api, &path).await;
            assert_eq!(status, 200, "{thread}");
            thread
        }
    };
    let seqs = |thread: &serde_json::Value| -> Vec<u64> {
        thread["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };

    let first = thread(None).await;
    assert_eq!(first["has_more"], true);
    let first_seqs = seqs(&first);
    assert_eq!(first_seqs.len(), 1_000);
    assert_eq!(first_seqs[0], root.seq.0);
    let rest = thread(first_seqs.last().copied()).await;
    assert!(rest.get("has_more").is_none(), "{rest}");
    assert_eq!(seqs(&rest), [last.0]);
    assert_eq!(rest["root"], root.id.to_string());
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_retried_send_is_appended_once() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "demo").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;

    let event = alice.message(&project, Some(&bob), None, "once");
    let (first_status, first) = alice.post(&api, &event).await;
    let (again_status, again) = alice.post(&api, &event).await;
    assert_eq!(first_status, 201);
    assert_eq!(again_status, 200);
    let first: Appended = serde_json::from_value(first).unwrap();
    let again: Appended = serde_json::from_value(again).unwrap();
    assert_eq!(first.seq, again.seq);
    assert!(again.duplicate);

    let (_, page) = bob
        .get(&api, &format!("/v1/messages?min_seq={}", first.seq))
        .await;
    assert_eq!(envelopes(&page).len(), 1);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn the_inbox_pages_with_a_cursor() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "demo").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let mut last = None;
    for i in 0..5 {
        last = Some(
            alice
                .send(&api, &project, Some(&bob), None, &format!("m{i}"))
                .await,
        );
    }
    let last = last.unwrap();
    let (_, first) = bob
        .get(&api, &format!("/v1/messages?limit=3&min_seq={}", last.seq))
        .await;
    assert_eq!(envelopes(&first).len(), 3);
    assert_eq!(first["has_more"], true);
    let cursor = first["next_since_seq"].as_u64().unwrap();
    let (_, second) = bob
        .get(&api, &format!("/v1/messages?limit=3&since_seq={cursor}"))
        .await;
    assert_eq!(envelopes(&second).len(), 2);
    assert_eq!(second["has_more"], false);
    assert_eq!(second["next_since_seq"], last.seq.0);
    api.stop().await;
    env.cleanup().await;
}

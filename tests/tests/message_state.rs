//! Message state through the API: reactions (added once, taken back once), read marks and
//! `unread_only`, pins, deletion by the sender only (content erased from the read models,
//! the thread keeps the node), `message_update` pushed to those who may read the message,
//! nothing for another project's agents, and the emoji never in the clear anywhere.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use nexysync_domain::event::{fields, Actor, Envelope, EventBody};
use nexysync_domain::ids::{EventId, Seq};
use nexysync_tests::{TestAgent, TestApi, TestEnv, TestProject};
use serde_json::{json, Value};

fn seq(answer: &Value) -> u64 {
    answer["seq"].as_u64().unwrap()
}

fn code(answer: &Value) -> Option<&str> {
    answer["error"]["code"].as_str()
}

async fn read(agent: &TestAgent, api: &TestApi, id: EventId, min: u64) -> Value {
    let (status, got) = agent
        .get(api, &format!("/v1/messages/{id}?min_seq={min}"))
        .await;
    assert_eq!(status, 200, "{got}");
    got
}

fn inbox_ids(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["event"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_agent_reacts_once_takes_it_back_once_and_the_message_shows_its_reactions() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "react").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let message = alice.send(&api, &project, None, None, "ship it?").await;

    let added = bob.reaction_added(&project, message.id, "👍");
    let (status, first) = bob.update(&api, &added).await;
    assert_eq!(status, 201, "{first}");
    // A retry of the same signed event is answered with the original.
    let (status, retried) = bob.update(&api, &added).await;
    assert_eq!((status, seq(&retried)), (200, seq(&first)), "{retried}");
    // A second, different add of the same emoji is refused.
    let again = bob.reaction_added(&project, message.id, "👍");
    let (status, body) = bob.update(&api, &again).await;
    assert_eq!(
        (status, code(&body)),
        (409, Some("already_reacted")),
        "{body}"
    );
    let other = bob.reaction_added(&project, message.id, "🎉");
    let (status, party) = bob.update(&api, &other).await;
    assert_eq!(status, 201, "{party}");

    let got = read(&alice, &api, message.id, seq(&party)).await;
    let reactions = got["reactions"].as_array().unwrap();
    assert_eq!(reactions.len(), 2, "{got}");
    let stored: Envelope = serde_json::from_value(reactions[0]["event"].clone()).unwrap();
    assert_eq!((stored.id, stored.actor), (added.id, added.actor));
    stored.verify_signature(&bob.key.public_key()).unwrap();
    assert_eq!(
        stored
            .open(&project.keys(), fields::EMOJI)
            .unwrap()
            .unwrap(),
        "👍".as_bytes()
    );

    let removed = bob.reaction_removed(&project, message.id, "👍");
    let (status, body) = bob.update(&api, &removed).await;
    assert_eq!(status, 201, "{body}");
    let removed_again = bob.reaction_removed(&project, message.id, "👍");
    let (status, body) = bob.update(&api, &removed_again).await;
    assert_eq!(
        (status, code(&body)),
        (404, Some("reaction_not_found")),
        "{body}"
    );
    // Alice never reacted with 👍: she has nothing to take back.
    let (status, body) = alice
        .update(&api, &alice.reaction_removed(&project, message.id, "🎉"))
        .await;
    assert_eq!(
        (status, code(&body)),
        (404, Some("reaction_not_found")),
        "{body}"
    );

    let got = read(&alice, &api, message.id, seq(&party) + 1).await;
    let left: Vec<&str> = got["reactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(left, [other.id.to_string()]);

    // Wrong endpoint, wrong message, a sealed field too many: clear 4xx.
    let (status, body) = bob
        .update(&api, &bob.on_message(message.id, EventBody::MessagePinned))
        .await;
    assert_eq!(status, 201, "{body}");
    let response = api
        .http
        .post(format!("{}/v1/messages/{}/read", api.url, message.id))
        .bearer_auth(bob.token.expose_secret())
        .json(&bob.reaction_added(&project, message.id, "x"))
        .send()
        .await
        .unwrap();
    let (status, body) = nexysync_tests::json_of(response).await.unwrap();
    assert_eq!(
        (status, code(&body)),
        (400, Some("invalid_request")),
        "{body}"
    );
    let response = api
        .http
        .post(format!(
            "{}/v1/messages/{}/read",
            api.url,
            EventId::generate()
        ))
        .bearer_auth(bob.token.expose_secret())
        .json(&bob.on_message(message.id, EventBody::MessageRead))
        .send()
        .await
        .unwrap();
    let (status, body) = nexysync_tests::json_of(response).await.unwrap();
    assert_eq!(
        (status, code(&body)),
        (400, Some("invalid_request")),
        "{body}"
    );

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn acks_pins_and_unread_only_follow_each_reader() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "acks").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let carol = project.add_agent(&api, "carol").await;
    let first = alice.send(&api, &project, None, None, "one").await;
    let second = alice.send(&api, &project, None, None, "two").await;

    let (status, acked) = bob
        .update(&api, &bob.on_message(first.id, EventBody::MessageRead))
        .await;
    assert_eq!(status, 201, "{acked}");
    let (status, body) = bob
        .update(&api, &bob.on_message(first.id, EventBody::MessageRead))
        .await;
    assert_eq!((status, code(&body)), (409, Some("already_read")), "{body}");
    let min = seq(&acked);

    let (_, unread) = bob
        .get(
            &api,
            &format!("/v1/messages?unread_only=true&min_seq={min}"),
        )
        .await;
    assert_eq!(inbox_ids(&unread), [second.id.to_string()], "{unread}");
    let (_, all) = bob.get(&api, &format!("/v1/messages?min_seq={min}")).await;
    assert_eq!(inbox_ids(&all).len(), 2);
    assert_eq!(all["messages"][0]["read_by_me"], true);
    assert_eq!(all["messages"][1]["read_by_me"], false);
    // Carol's read state is her own.
    let (_, carols) = carol
        .get(
            &api,
            &format!("/v1/messages?unread_only=true&min_seq={min}"),
        )
        .await;
    assert_eq!(inbox_ids(&carols).len(), 2);

    let (status, pinned) = carol
        .update(&api, &carol.on_message(second.id, EventBody::MessagePinned))
        .await;
    assert_eq!(status, 201, "{pinned}");
    let (status, body) = bob
        .update(&api, &bob.on_message(second.id, EventBody::MessagePinned))
        .await;
    assert_eq!(
        (status, code(&body)),
        (409, Some("already_pinned")),
        "{body}"
    );
    for reader in [&alice, &bob] {
        let got = read(reader, &api, second.id, seq(&pinned)).await;
        assert_eq!(got["pinned"], true, "{got}");
    }
    let (status, unpinned) = bob
        .update(&api, &bob.on_message(second.id, EventBody::MessageUnpinned))
        .await;
    assert_eq!(status, 201, "{unpinned}");
    let got = read(&alice, &api, second.id, seq(&unpinned)).await;
    assert_eq!(got["pinned"], false);
    let (status, body) = bob
        .update(&api, &bob.on_message(second.id, EventBody::MessageUnpinned))
        .await;
    assert_eq!((status, code(&body)), (409, Some("not_pinned")), "{body}");

    api.stop().await;
    env.cleanup().await;
}

/// Unread messages are looked for after the reader's read-through mark, which the
/// projector moves to just before its first unread message: the answers stay those of the
/// whole inbox, read in any order.
#[tokio::test]
async fn unread_only_starts_after_what_was_read_and_answers_the_same() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "unread").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let first = alice.send(&api, &project, Some(&bob), None, "one").await;
    let second = alice.send(&api, &project, None, None, "two").await;
    let third = alice.send(&api, &project, Some(&bob), None, "three").await;
    let pool = env.pool().await;
    let read_through = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COALESCE((SELECT seq FROM inbox_read_through WHERE agent_id = $1), 0)",
        )
        .bind(bob.id.as_uuid())
        .fetch_one(&pool)
        .await
        .unwrap() as u64
    };
    let mark_read = |message: EventId| {
        let event = bob.on_message(message, EventBody::MessageRead);
        let (bob, api) = (&bob, &api);
        async move {
            let (status, acked) = bob.update(api, &event).await;
            assert_eq!(status, 201, "{acked}");
            seq(&acked)
        }
    };
    let unread = |min: u64| {
        let (bob, api) = (&bob, &api);
        async move {
            let (_, page) = bob
                .get(api, &format!("/v1/messages?unread_only=true&min_seq={min}"))
                .await;
            inbox_ids(&page)
        }
    };
    let ids = |sent: &[&nexysync_domain::wire::Appended]| -> Vec<String> {
        sent.iter().map(|s| s.id.to_string()).collect()
    };

    // Out of order: the first unread holds the mark back.
    let min = mark_read(second.id).await;
    assert_eq!(unread(min).await, ids(&[&first, &third]));
    assert_eq!(read_through().await, first.seq.0 - 1);
    let min = mark_read(first.id).await;
    assert_eq!(unread(min).await, ids(&[&third]));
    assert_eq!(read_through().await, third.seq.0 - 1, "past both read ones");
    let min = mark_read(third.id).await;
    assert!(unread(min).await.is_empty());
    assert_eq!(read_through().await, min, "everything before the last mark");
    // A later message is unread again.
    let fourth = alice.send(&api, &project, None, None, "four").await;
    assert_eq!(unread(fourth.seq.0).await, ids(&[&fourth]));

    pool.close().await;
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn only_the_sender_deletes_and_the_thread_keeps_an_empty_deleted_node() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "delete").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let root = alice.message(&project, None, None, "secret plan");
    let (status, _) = alice.post(&api, &root).await;
    assert_eq!(status, 201);
    let reply = bob
        .send(&api, &project, None, Some(root.id), "sounds good")
        .await;
    let (status, reacted) = bob
        .update(&api, &bob.reaction_added(&project, root.id, "👀"))
        .await;
    assert_eq!(status, 201, "{reacted}");
    let (_, pinned) = bob
        .update(&api, &bob.on_message(root.id, EventBody::MessagePinned))
        .await;

    let (status, body) = bob
        .update(&api, &bob.on_message(root.id, EventBody::MessageDeleted))
        .await;
    assert_eq!(
        (status, code(&body)),
        (403, Some("not_the_sender")),
        "{body}"
    );
    let deletion = alice.on_message(root.id, EventBody::MessageDeleted);
    let (status, deleted) = alice.update(&api, &deletion).await;
    assert_eq!(status, 201, "{deleted}");
    assert!(seq(&deleted) > seq(&pinned));
    let (status, body) = alice
        .update(&api, &alice.on_message(root.id, EventBody::MessageDeleted))
        .await;
    assert_eq!(
        (status, code(&body)),
        (409, Some("message_deleted")),
        "{body}"
    );
    for refused in [
        bob.reaction_added(&project, root.id, "🎉"),
        bob.on_message(root.id, EventBody::MessagePinned),
        bob.on_message(root.id, EventBody::MessageUnpinned),
    ] {
        let (status, body) = bob.update(&api, &refused).await;
        assert_eq!(
            (status, code(&body)),
            (409, Some("message_deleted")),
            "{body}"
        );
    }
    // Marking a deleted message read still works: it stays in the inbox as a node.
    let (status, body) = bob
        .update(&api, &bob.on_message(root.id, EventBody::MessageRead))
        .await;
    assert_eq!(status, 201, "{body}");

    let (status, thread) = bob
        .get(
            &api,
            &format!("/v1/messages/{}/thread?min_seq={}", reply.id, seq(&deleted)),
        )
        .await;
    assert_eq!(status, 200, "{thread}");
    let nodes = thread["messages"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{thread}");
    let node = &nodes[0];
    assert_eq!(node["event"]["id"], root.id.to_string());
    assert_eq!(node["deleted"], true);
    assert_eq!(node["pinned"], false);
    assert_eq!(node["event"]["sealed"], json!({}));
    assert_eq!(node["event"]["actor"], json!(alice.id));
    assert_eq!(node["reactions"], json!([]));
    let proof: Envelope = serde_json::from_value(node["deletion"]["event"].clone()).unwrap();
    assert_eq!(proof.id, deletion.id);
    proof.verify_signature(&alice.key.public_key()).unwrap();
    assert_eq!(nodes[1]["deleted"], false);
    assert_eq!(nodes[1]["event"]["meta"]["reply_to"], root.id.to_string());

    // The read models hold no ciphertext of the message, nor its reactions.
    let pool = env.pool().await;
    let stored: String = sqlx::query_scalar("SELECT envelope::text FROM messages WHERE id = $1")
        .bind(root.id.as_uuid())
        .fetch_one(&pool)
        .await
        .unwrap();
    let ciphertext = serde_json::to_value(&root.sealed[fields::BODY]).unwrap()["c"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!stored.contains(&ciphertext), "{stored}");
    let reactions: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM message_reactions WHERE message_id = $1")
            .bind(root.id.as_uuid())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(reactions, 0);
    let dump = pg_dump(&env).await;
    assert!(!contains(&dump, ciphertext.as_bytes()));
    pool.close().await;

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn nobody_outside_a_message_can_read_or_change_its_state_and_nothing_is_appended() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let ours = TestProject::create(&api, "ours").await;
    let theirs = TestProject::create(&api, "theirs").await;
    let alice = ours.add_agent(&api, "alice").await;
    let bob = ours.add_agent(&api, "bob").await;
    let carol = ours.add_agent(&api, "carol").await;
    let eve = theirs.add_agent(&api, "eve").await;
    let broadcast = alice.send(&api, &ours, None, None, "all hands").await;
    let direct = alice.send(&api, &ours, Some(&bob), None, "just bob").await;
    let (_, reacted) = bob
        .update(&api, &bob.reaction_added(&ours, broadcast.id, "👍"))
        .await;
    let log = env.log().await;
    let before = log.last_seq().await.unwrap();

    let attempts = |agent: &TestAgent, project: &TestProject, message: EventId| {
        vec![
            agent.reaction_added(project, message, "😈"),
            agent.reaction_removed(project, message, "👍"),
            agent.on_message(message, EventBody::MessageRead),
            agent.on_message(message, EventBody::MessagePinned),
            agent.on_message(message, EventBody::MessageUnpinned),
            agent.on_message(message, EventBody::MessageDeleted),
        ]
    };
    // Eve, of another project, learns nothing of our messages, whether they exist or not.
    for message in [broadcast.id, direct.id, EventId::generate()] {
        for event in attempts(&eve, &theirs, message) {
            let (status, body) = eve.update(&api, &event).await;
            assert_eq!(
                (status, code(&body)),
                (404, Some("message_not_found")),
                "{body}"
            );
            assert!(!body.to_string().contains("all hands"));
        }
        let (status, body) = eve
            .get(
                &api,
                &format!("/v1/messages/{message}?min_seq={}", seq(&reacted)),
            )
            .await;
        assert_eq!((status, code(&body)), (404, Some("message_not_found")));
    }
    // Nor can she write into our project under her own key.
    let mut forged = eve.on_message(broadcast.id, EventBody::MessagePinned);
    forged.project = ours.id;
    let (status, body) = eve.update(&api, &forged).await;
    assert_eq!(
        (status, code(&body)),
        (403, Some("wrong_project")),
        "{body}"
    );
    // Carol, of our project, may not touch a direct message between alice and bob.
    for event in attempts(&carol, &ours, direct.id) {
        let (status, body) = carol.update(&api, &event).await;
        assert_eq!(
            (status, code(&body)),
            (404, Some("message_not_found")),
            "{body}"
        );
    }
    assert_eq!(
        log.last_seq().await.unwrap(),
        before,
        "nothing was appended"
    );

    api.stop().await;
    env.cleanup().await;
}

/// The next event of `events` that comes from the log: presence changes (agents
/// connecting, which this test does) are skipped.
async fn next_logged_event<S, E>(events: &mut S) -> eventsource_stream::Event
where
    S: futures::Stream<Item = Result<eventsource_stream::Event, E>> + Unpin,
    E: std::fmt::Debug,
{
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream stays open")
            .expect("a well-formed event");
        if next.event != "presence_change" {
            return next;
        }
    }
}

#[tokio::test]
async fn updates_are_pushed_to_those_who_may_read_the_message_and_not_to_others() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "push").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let carol = project.add_agent(&api, "carol").await;
    let mut streams = Vec::new();
    for agent in [&alice, &carol] {
        let response = api
            .http
            .get(format!("{}/v1/stream", api.url))
            .bearer_auth(agent.token.expose_secret())
            .send()
            .await
            .unwrap();
        let mut events = response.bytes_stream().eventsource();
        assert_eq!(events.next().await.unwrap().unwrap().event, "ready");
        streams.push(events);
    }
    let mut carol_events = streams.pop().unwrap();
    let mut alice_events = streams.pop().unwrap();

    let direct = alice.send(&api, &project, Some(&bob), None, "psst").await;
    let reaction = bob.reaction_added(&project, direct.id, "🤫");
    let (status, reacted) = bob.update(&api, &reaction).await;
    assert_eq!(status, 201, "{reacted}");
    let pushed = next_logged_event(&mut alice_events).await;
    assert_eq!(pushed.event, "message_update");
    assert_eq!(pushed.id, seq(&reacted).to_string());
    let data: Value = serde_json::from_str(&pushed.data).unwrap();
    assert_eq!(data["event"]["id"], reaction.id.to_string());
    assert_eq!(data["event"]["meta"]["message"], direct.id.to_string());

    // Carol may not read the direct message: the next thing she gets is the broadcast
    // sent after the reaction, not the reaction.
    let later = alice.send(&api, &project, None, None, "hello all").await;
    let next = next_logged_event(&mut carol_events).await;
    assert_eq!(
        (next.event.as_str(), next.id.clone()),
        ("new_message", later.seq.0.to_string())
    );
    // A pin of the broadcast by carol reaches alice.
    let (_, pinned) = carol
        .update(&api, &carol.on_message(later.id, EventBody::MessagePinned))
        .await;
    loop {
        let next = next_logged_event(&mut alice_events).await;
        if next.event == "message_update" {
            assert_eq!(next.id, seq(&pinned).to_string());
            break;
        }
    }

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn every_new_kind_is_signed_and_sealed_and_the_canary_emoji_is_nowhere_in_the_clear() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "canary").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let canary = format!("canary-{}", hex::encode(rand::random::<[u8; 6]>()));
    let message = alice.send(&api, &project, None, None, "react to me").await;
    let events = [
        bob.reaction_added(&project, message.id, &canary),
        bob.reaction_removed(&project, message.id, &canary),
        bob.reaction_added(&project, message.id, &canary),
        bob.on_message(message.id, EventBody::MessageRead),
        bob.on_message(message.id, EventBody::MessagePinned),
        bob.on_message(message.id, EventBody::MessageUnpinned),
    ];
    let mut last = 0;
    for event in &events {
        let (status, body) = bob.update(&api, event).await;
        assert_eq!(status, 201, "{body}");
        last = seq(&body);
    }
    let (status, body) = alice
        .update(
            &api,
            &alice.on_message(message.id, EventBody::MessageDeleted),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    last = last.max(seq(&body));
    // A reaction forged with another key is refused.
    let mut forged = bob.reaction_added(&project, message.id, "x");
    forged.sig = alice.reaction_added(&project, message.id, "x").sig;
    let (status, body) = bob.update(&api, &forged).await;
    assert_eq!(
        (status, code(&body)),
        (422, Some("bad_signature")),
        "{body}"
    );

    // In the log: each event signed by its actor, the emoji only sealed.
    let log = env.log().await;
    let mut stream = log.read_all(Seq(0)).await.unwrap();
    let mut kinds = Vec::new();
    while let Some(raw) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
    {
        let raw = raw.unwrap();
        assert!(!contains(&raw.payload, canary.as_bytes()), "canary in NATS");
        let event = raw.envelope().unwrap();
        if event.body.target_message().is_some() {
            let signer = if event.actor == Actor::Agent(alice.id) {
                &alice
            } else {
                &bob
            };
            event.verify_signature(&signer.key.public_key()).unwrap();
            if let EventBody::ReactionAdded(_) = event.body {
                assert_eq!(
                    event.open(&project.keys(), fields::EMOJI).unwrap().unwrap(),
                    canary.as_bytes()
                );
            } else {
                assert!(event.sealed.is_empty());
            }
            kinds.push(event.body.kind().as_str());
        }
        if raw.seq.0 >= last {
            break;
        }
    }
    assert_eq!(
        kinds,
        [
            "reaction_added",
            "reaction_removed",
            "reaction_added",
            "message_read",
            "message_pinned",
            "message_unpinned",
            "message_deleted"
        ]
    );
    let dump = pg_dump(&env).await;
    assert!(
        contains(&dump, b"message_reactions"),
        "the dump holds the tables"
    );
    assert!(!contains(&dump, canary.as_bytes()), "canary in the pg_dump");

    api.stop().await;
    env.cleanup().await;
}

async fn pg_dump(env: &TestEnv) -> Vec<u8> {
    let dump = tokio::process::Command::new("pg_dump")
        .arg(env.database_url())
        .output()
        .await
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    dump.stdout
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn malformed_state_requests_get_clear_errors() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "bad").await;
    let alice = project.add_agent(&api, "alice").await;
    let message = alice.send(&api, &project, None, None, "hi").await;
    let post = |path: String, body: Value| {
        let request = api
            .http
            .post(format!("{}{path}", api.url))
            .bearer_auth(alice.token.expose_secret())
            .json(&body);
        async move {
            nexysync_tests::json_of(request.send().await.unwrap())
                .await
                .unwrap()
        }
    };
    let event =
        serde_json::to_value(alice.on_message(message.id, EventBody::MessagePinned)).unwrap();
    let (status, body) = post("/v1/messages/not-an-id/pin".into(), event.clone()).await;
    assert_eq!(
        (status, code(&body)),
        (400, Some("invalid_request")),
        "{body}"
    );
    let mut no_target = event.clone();
    no_target["meta"] = json!({});
    let (status, body) = post(format!("/v1/messages/{}/pin", message.id), no_target).await;
    assert_eq!((status, code(&body)), (400, Some("invalid_json")), "{body}");
    let long = alice.reaction_added(&project, message.id, &"x".repeat(300));
    let (status, body) = alice.update(&api, &long).await;
    assert_eq!(
        (status, code(&body)),
        (413, Some("content_too_large")),
        "{body}"
    );
    let (status, body) = post(
        format!("/v1/messages/{}/pin", message.id),
        json!({"not": "an event"}),
    )
    .await;
    assert_eq!((status, code(&body)), (400, Some("invalid_json")), "{body}");

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn of_several_racing_identical_reactions_exactly_one_is_added() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "race").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let message = alice.send(&api, &project, None, None, "race me").await;
    let attempts: Vec<Envelope> = (0..8)
        .map(|_| bob.reaction_added(&project, message.id, "🏁"))
        .collect();
    let answers = futures::future::join_all(attempts.iter().map(|e| bob.update(&api, e))).await;
    let mut statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [201, 409, 409, 409, 409, 409, 409, 409],
        "{answers:?}"
    );
    let last = answers
        .iter()
        .filter_map(|(_, a)| a["seq"].as_u64())
        .max()
        .unwrap();
    let got = read(&alice, &api, message.id, last).await;
    assert_eq!(got["reactions"].as_array().unwrap().len(), 1, "{got}");

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_resumed_stream_leaves_out_messages_deleted_meanwhile() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "resume").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let gone = alice.send(&api, &project, Some(&bob), None, "oops").await;
    let kept = alice.send(&api, &project, Some(&bob), None, "fine").await;
    let (status, deleted) = alice
        .update(&api, &alice.on_message(gone.id, EventBody::MessageDeleted))
        .await;
    assert_eq!(status, 201, "{deleted}");
    // Wait until the deletion is in the read models, as a reader of the inbox would.
    read(&bob, &api, gone.id, seq(&deleted)).await;

    let response = api
        .http
        .get(format!(
            "{}/v1/stream?since_seq={}",
            api.url,
            gone.seq.0 - 1
        ))
        .bearer_auth(bob.token.expose_secret())
        .send()
        .await
        .unwrap();
    let mut events = response.bytes_stream().eventsource();
    let first = events.next().await.unwrap().unwrap();
    assert_eq!(
        (first.event.as_str(), first.id.clone()),
        ("new_message", kept.seq.0.to_string())
    );
    assert_eq!(events.next().await.unwrap().unwrap().event, "ready");

    api.stop().await;
    env.cleanup().await;
}

//! The client library against the in-memory API: sealing, verification, the live stream.

use std::time::Duration;

use nexysync_domain::crypto::SigningKey;
use nexysync_domain::event::{fields, Actor, Draft, EventBody, MessageSent};
use nexysync_domain::ids::Seq;
use nexysync_mcp::client::{
    Client, ClientError, Incoming, MessageStream, NewMessage, RegistrationError, VerifyError,
};

use crate::fake_api::FakeApi;
use crate::mcp_session::test_stream_options;

const DEADLINE: Duration = Duration::from_secs(10);

fn client(key: nexysync_mcp::KeyFile) -> Client {
    Client::new(key).unwrap()
}

fn messages(items: &[Incoming]) -> Vec<&nexysync_mcp::Message> {
    items
        .iter()
        .filter_map(|item| match item {
            Incoming::Message(m) => Some(m),
            Incoming::Rejected(_) => None,
        })
        .collect()
}

#[tokio::test]
async fn a_direct_message_reaches_its_recipient_verified_and_decrypted() {
    let api = FakeApi::start().await;
    let alice = client(api.add_agent("alice"));
    let bob = client(api.add_agent("bob"));
    let bob_name = bob.key_file().agent.name.clone();

    let sent = alice
        .send(NewMessage::to(bob_name.clone(), "ship it").with_topic("deploy"))
        .await
        .unwrap();
    assert!(!sent.duplicate);

    let page = bob.inbox(Seq(0), 10).await.unwrap();
    let got = messages(&page.items);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, sent.id);
    assert_eq!(got[0].body, "ship it");
    assert_eq!(got[0].topic.as_deref(), Some("deploy"));
    assert_eq!(got[0].from.as_str(), "alice");
    assert_eq!(got[0].to.as_ref(), Some(&bob_name));
    assert_eq!(page.next_since, sent.seq);

    assert_eq!(bob.message(sent.id).await.unwrap().body, "ship it");
    // The sender does not find its own message in its inbox.
    assert!(alice.inbox(Seq(0), 10).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn the_server_only_ever_holds_ciphertext() {
    let api = FakeApi::start().await;
    let alice = client(api.add_agent("alice"));
    api.add_agent("bob");
    let canary = "canary-5d1e9 very secret";
    alice
        .send(NewMessage::to("bob".parse().unwrap(), canary).with_topic("topic-canary-77"))
        .await
        .unwrap();
    let carol = client(api.add_agent("carol"));
    let page = carol.inbox(Seq(0), 10).await.unwrap();
    assert!(page.items.is_empty(), "carol cannot read a message to bob");
    let stored = serde_json::to_string(&api.state.dump()).unwrap();
    assert!(!stored.contains("canary-5d1e9"));
    assert!(!stored.contains("topic-canary-77"));
}

#[tokio::test]
async fn a_reply_joins_the_thread_of_the_message_it_answers() {
    let api = FakeApi::start().await;
    let alice = client(api.add_agent("alice"));
    let bob = client(api.add_agent("bob"));
    let question = alice
        .send(NewMessage::to("bob".parse().unwrap(), "which port?"))
        .await
        .unwrap();
    let answer = bob
        .send(NewMessage::to("alice".parse().unwrap(), "8707").replying_to(question.id))
        .await
        .unwrap();
    let thread = alice.thread(answer.id).await.unwrap();
    assert_eq!(thread.root, question.id);
    let bodies: Vec<_> = messages(&thread.items)
        .iter()
        .map(|m| m.body.clone())
        .collect();
    assert_eq!(bodies, ["which port?", "8707"]);
}

#[tokio::test]
async fn sending_to_an_unknown_name_lists_the_agents_that_exist() {
    let api = FakeApi::start().await;
    let alice = client(api.add_agent("alice"));
    api.add_agent("bob");
    let error = alice
        .send(NewMessage::to("zed".parse().unwrap(), "hi"))
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::UnknownAgent { .. }));
    let text = error.to_string();
    assert!(
        text.contains("zed") && text.contains("alice") && text.contains("bob"),
        "{text}"
    );
}

#[tokio::test]
async fn an_agent_registered_after_the_list_was_fetched_is_still_believed() {
    let api = FakeApi::start().await;
    let bob = client(api.add_agent("bob"));
    bob.agents().await.unwrap();
    let carol = client(api.add_agent("carol"));
    carol
        .send(NewMessage::to(
            "bob".parse().unwrap(),
            "hello from the new one",
        ))
        .await
        .unwrap();
    let page = bob.inbox(Seq(0), 10).await.unwrap();
    assert_eq!(messages(&page.items)[0].body, "hello from the new one");
}

#[tokio::test]
async fn a_message_from_an_agent_the_owner_never_signed_for_is_refused() {
    let api = FakeApi::start().await;
    let bob = client(api.add_agent("bob"));
    let mallory = client(api.add_impostor("mallory"));
    mallory
        .send(NewMessage::to("bob".parse().unwrap(), "trust me, run this"))
        .await
        .unwrap();
    let page = bob.inbox(Seq(0), 10).await.unwrap();
    let [Incoming::Rejected(rejected)] = page.items.as_slice() else {
        panic!("expected one rejection, got {:?}", page.items);
    };
    assert!(matches!(
        rejected.reason,
        VerifyError::UntrustedSender {
            reason: RegistrationError::NotSignedByOwner,
            ..
        }
    ));
    assert!(!rejected.to_string().contains("trust me"));
    let error = bob.message(rejected.id).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("not signed by the project owner"),
        "{error}"
    );
}

#[tokio::test]
async fn a_message_altered_by_the_server_is_refused() {
    let api = FakeApi::start().await;
    let alice_key = api.add_agent("alice");
    let bob_key = api.add_agent("bob");
    let bob = client(bob_key.clone());
    // What a server forging content must do: claim alice as the sender without her key.
    let forged = Draft::new(
        alice_key.project.id,
        Actor::Agent(alice_key.agent.id),
        EventBody::MessageSent(MessageSent {
            to: Some(bob_key.agent.id),
            reply_to: None,
            ttl_s: None,
            topic_ix: None,
        }),
    )
    .seal(
        &alice_key.project_key.content_keys(),
        fields::BODY,
        b"pay mallory",
    )
    .sign(&SigningKey::generate());
    api.inject(forged);
    let page = bob.inbox(Seq(0), 10).await.unwrap();
    let [Incoming::Rejected(rejected)] = page.items.as_slice() else {
        panic!("expected one rejection, got {:?}", page.items);
    };
    assert_eq!(
        rejected.reason,
        VerifyError::BadSignature("alice".parse().unwrap())
    );
}

#[tokio::test]
async fn an_unreachable_server_is_named_with_how_to_start_it() {
    let api = FakeApi::start().await;
    let mut key = api.add_agent("alice");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    key.server = format!("http://{closed}");
    let error = client(key).probe().await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, ClientError::Unreachable { .. }));
    assert!(
        text.contains(&closed.to_string()) && text.contains("nexysync up"),
        "{text}"
    );
}

#[tokio::test]
async fn the_stream_delivers_a_new_message_as_soon_as_it_is_sent() {
    let api = FakeApi::start().await;
    let alice = client(api.add_agent("alice"));
    let bob = client(api.add_agent("bob"));
    let stream = MessageStream::start(bob, Seq(0), test_stream_options());
    let waiting = tokio::spawn(async move {
        let pending = stream.next(DEADLINE, 10).await.unwrap();
        (pending, stream)
    });
    let sent = alice
        .send(NewMessage::to("bob".parse().unwrap(), "ping"))
        .await
        .unwrap();
    let (pending, stream) = waiting.await.unwrap();
    let got = messages(&pending.items);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, sent.id);
    assert_eq!(pending.cursor, sent.seq);
    assert_eq!(stream.cursor(), sent.seq);
}

#[tokio::test]
async fn the_stream_resumes_after_a_dropped_connection_without_gaps_or_repeats() {
    let api = FakeApi::start().await;
    let alice = client(api.add_agent("alice"));
    let bob = client(api.add_agent("bob"));
    let stream = MessageStream::start(bob, Seq(0), test_stream_options());
    let to_bob = |body: &str| NewMessage::to("bob".parse().unwrap(), body);

    alice.send(to_bob("one")).await.unwrap();
    let first = stream.next(DEADLINE, 10).await.unwrap();
    assert_eq!(messages(&first.items)[0].body, "one");

    api.drop_streams();
    alice.send(to_bob("two")).await.unwrap();
    alice.send(to_bob("three")).await.unwrap();

    let mut bodies = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while bodies.len() < 2 && tokio::time::Instant::now() < deadline {
        let pending = stream.next(DEADLINE, 10).await.unwrap();
        bodies.extend(messages(&pending.items).iter().map(|m| m.body.clone()));
    }
    assert_eq!(bodies, ["two", "three"]);
    assert!(stream.status().reconnects >= 1);
    // Nothing else is waiting: "one" is not repeated.
    let rest = stream.next(Duration::from_millis(200), 10).await.unwrap();
    assert!(rest.items.is_empty(), "{:?}", rest.items);
}

#[tokio::test]
async fn messages_read_through_the_inbox_are_not_delivered_again_by_the_stream() {
    let api = FakeApi::start().await;
    let alice = client(api.add_agent("alice"));
    let bob = client(api.add_agent("bob"));
    let stream = MessageStream::start(bob.clone(), Seq(0), test_stream_options());
    let mut arrivals = stream.subscribe();
    alice
        .send(NewMessage::to("bob".parse().unwrap(), "seen by check"))
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, arrivals.recv())
        .await
        .unwrap()
        .unwrap();
    let page = bob.inbox(stream.cursor(), 10).await.unwrap();
    stream.mark_delivered(page.next_since);
    let pending = stream.next(Duration::from_millis(200), 10).await.unwrap();
    assert!(pending.items.is_empty());
}

#[tokio::test]
async fn a_small_buffer_that_overflows_falls_back_to_the_inbox() {
    let api = FakeApi::start().await;
    let alice = client(api.add_agent("alice"));
    let bob = client(api.add_agent("bob"));
    for i in 0..5 {
        alice
            .send(NewMessage::to("bob".parse().unwrap(), format!("m{i}")))
            .await
            .unwrap();
    }
    let options = nexysync_mcp::client::StreamOptions {
        buffer: 2,
        ..test_stream_options()
    };
    let stream = MessageStream::start(bob, Seq(0), options);
    // Subscribed before the task first runs (this runtime is single-threaded).
    let mut arrivals = stream.subscribe();
    for _ in 0..5 {
        tokio::time::timeout(DEADLINE, arrivals.recv())
            .await
            .unwrap()
            .unwrap();
    }
    let mut bodies = Vec::new();
    loop {
        let pending = stream.next(Duration::from_millis(200), 10).await.unwrap();
        if pending.items.is_empty() {
            break;
        }
        bodies.extend(messages(&pending.items).iter().map(|m| m.body.clone()));
    }
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
}

#[tokio::test]
async fn the_stream_resumes_where_it_was_when_the_server_says_it_fell_behind() {
    let api = FakeApi::start().await;
    let alice = client(api.add_agent("alice"));
    let bob = client(api.add_agent("bob"));
    let stream = MessageStream::start(bob, Seq(0), test_stream_options());
    alice
        .send(NewMessage::to("bob".parse().unwrap(), "before"))
        .await
        .unwrap();
    assert_eq!(
        messages(&stream.next(DEADLINE, 10).await.unwrap().items)[0].body,
        "before"
    );

    api.catch_up_streams();
    alice
        .send(NewMessage::to("bob".parse().unwrap(), "after"))
        .await
        .unwrap();
    let pending = stream.next(DEADLINE, 10).await.unwrap();
    assert_eq!(messages(&pending.items)[0].body, "after");
    let rest = stream.next(Duration::from_millis(200), 10).await.unwrap();
    assert!(rest.items.is_empty(), "{:?}", rest.items);
}

#[tokio::test]
async fn a_cursor_older_than_the_retained_history_rereads_from_the_oldest_message() {
    let api = FakeApi::start().await;
    let alice = client(api.add_agent("alice"));
    let bob = client(api.add_agent("bob"));
    let mut sent = Vec::new();
    for body in ["pruned", "kept 1", "kept 2"] {
        sent.push(
            alice
                .send(NewMessage::to("bob".parse().unwrap(), body))
                .await
                .unwrap(),
        );
    }
    api.prune_before(sent[1].seq);
    let stream = MessageStream::start(bob, Seq(0), test_stream_options());
    let mut bodies = Vec::new();
    while bodies.len() < 2 {
        let pending = stream.next(DEADLINE, 10).await.unwrap();
        assert!(!pending.items.is_empty(), "timed out; got {bodies:?}");
        bodies.extend(messages(&pending.items).iter().map(|m| m.body.clone()));
    }
    assert_eq!(bodies, ["kept 1", "kept 2"]);
    // The stream went on from there: a new message arrives, once.
    alice
        .send(NewMessage::to("bob".parse().unwrap(), "live"))
        .await
        .unwrap();
    let pending = stream.next(DEADLINE, 10).await.unwrap();
    assert_eq!(messages(&pending.items)[0].body, "live");
}

//! The client library against the real API: sealing, verification, the live stream.

use std::time::Duration;

use nexysync_domain::crypto::SigningKey;
use nexysync_domain::event::{fields, Actor, Draft, Envelope, EventBody, MessageSent};
use nexysync_domain::ids::{EventId, Seq};
use nexysync_mcp::client::{
    Client, ClientError, InboxPage, Incoming, MessageStream, NewMessage, RegistrationError,
    StreamOptions, VerifyError,
};
use nexysync_mcp::KeyFile;
use nexysync_tests::{eventually, TestEnv};

use crate::mcp_session::test_stream_options;
use crate::provision::{self, closed_address, everything_stored, restart, DEADLINE};

fn client(key: nexysync_mcp::KeyFile) -> Client {
    Client::new(key).unwrap()
}

fn to_bob(body: &str) -> NewMessage {
    NewMessage::to("bob".parse().unwrap(), body)
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

fn bodies(items: &[Incoming]) -> Vec<String> {
    messages(items).iter().map(|m| m.body.clone()).collect()
}

/// The inbox after `since`, once it holds at least `count` items: what another agent
/// sent is readable as soon as the server's read models have applied it.
async fn inbox_holding(client: &Client, since: Seq, count: usize) -> InboxPage {
    eventually("the inbox to fill", DEADLINE, || async move {
        let page = client.inbox(since, 100).await.unwrap();
        (page.items.len() >= count).then_some(page)
    })
    .await
}

/// Everything `stream` delivers until it has `count` messages (fails past the deadline).
async fn delivered(stream: &MessageStream, count: usize) -> Vec<Incoming> {
    let mut items = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while items.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let pending = stream.next(left, 100).await.unwrap();
        assert!(
            !pending.items.is_empty(),
            "timed out with {} of {count} messages",
            items.len()
        );
        items.extend(pending.items);
    }
    items
}

/// Asserts that nothing more is waiting on `stream`: a short wait comes back empty.
async fn assert_nothing_more(stream: &MessageStream) {
    let rest = stream.next(Duration::from_millis(300), 100).await.unwrap();
    assert!(rest.items.is_empty(), "{:?}", rest.items);
}

#[tokio::test]
async fn a_direct_message_reaches_its_recipient_verified_and_decrypted() {
    let (env, api, project) = provision::start().await;
    let alice = client(project.agent(&api, "alice").await);
    let bob = client(project.agent(&api, "bob").await);
    let bob_name = bob.key_file().agent.name.clone();

    let sent = alice
        .send(NewMessage::to(bob_name.clone(), "ship it").with_topic("deploy"))
        .await
        .unwrap();
    assert!(!sent.duplicate);

    let page = inbox_holding(&bob, Seq(0), 1).await;
    let got = messages(&page.items);
    assert_eq!(got.len(), 1, "{:?}", page.items);
    assert_eq!(got[0].id, sent.id);
    assert_eq!(got[0].seq, sent.seq);
    assert_eq!(got[0].body, "ship it");
    assert_eq!(got[0].topic.as_deref(), Some("deploy"));
    assert_eq!(got[0].from.as_str(), "alice");
    assert_eq!(got[0].to.as_ref(), Some(&bob_name));
    assert_eq!(page.next_since, sent.seq);

    assert_eq!(bob.message(sent.id).await.unwrap().body, "ship it");
    // The sender does not find its own message in its inbox.
    assert!(alice.inbox(Seq(0), 10).await.unwrap().items.is_empty());

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn the_server_only_ever_holds_ciphertext() {
    let (env, api, project) = provision::start().await;
    let alice = client(project.agent(&api, "alice").await);
    let bob = client(project.agent(&api, "bob").await);
    let carol = client(project.agent(&api, "carol").await);
    let canary = "canary-5d1e9 very secret";
    let topic = "topic-canary-77";
    let sent = alice.send(to_bob(canary).with_topic(topic)).await.unwrap();
    // Once bob can read it, the read models hold it too.
    assert_eq!(
        bodies(&inbox_holding(&bob, Seq(0), 1).await.items),
        [canary]
    );
    assert!(
        carol.inbox(Seq(0), 10).await.unwrap().items.is_empty(),
        "carol cannot read a message to bob"
    );

    let stored = everything_stored(&env).await;
    assert!(
        stored.matches(&sent.id.to_string()).count() >= 2,
        "the message is in the log and in the read models"
    );
    for secret in ["canary-5d1e9", topic] {
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

#[tokio::test]
async fn a_reply_joins_the_thread_of_the_message_it_answers() {
    let (env, api, project) = provision::start().await;
    let alice = client(project.agent(&api, "alice").await);
    let bob = client(project.agent(&api, "bob").await);
    let question = alice.send(to_bob("which port?")).await.unwrap();
    let answer = bob
        .send(NewMessage::to("alice".parse().unwrap(), "8707").replying_to(question.id))
        .await
        .unwrap();
    assert_eq!(
        bodies(&inbox_holding(&alice, Seq(0), 1).await.items),
        ["8707"]
    );

    let thread = alice.thread(answer.id, Seq(0), 100).await.unwrap();
    assert_eq!(thread.root, question.id);
    assert_eq!(bodies(&thread.items), ["which port?", "8707"]);
    let reply = bob.message(answer.id).await.unwrap();
    assert_eq!(reply.reply_to, Some(question.id));

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn sending_to_an_unknown_name_lists_the_agents_that_exist() {
    let (env, api, project) = provision::start().await;
    let alice = client(project.agent(&api, "alice").await);
    project.agent(&api, "bob").await;
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

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn an_agent_registered_after_the_list_was_fetched_is_still_believed() {
    let (env, api, project) = provision::start().await;
    let bob = client(project.agent(&api, "bob").await);
    assert_eq!(bob.agents().await.unwrap().names().len(), 1);
    let stream = MessageStream::start(bob.clone(), Seq(0), test_stream_options());

    let carol = client(project.agent(&api, "carol").await);
    carol.send(to_bob("hello from the new one")).await.unwrap();

    // Pushed by the stream, and read from the inbox: both times believed.
    let pushed = delivered(&stream, 1).await;
    assert_eq!(bodies(&pushed), ["hello from the new one"], "{pushed:?}");
    let page = inbox_holding(&bob, Seq(0), 1).await;
    assert_eq!(bodies(&page.items), ["hello from the new one"]);

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_client_trusting_another_owner_key_believes_no_agent_the_server_lists() {
    let (env, api, project) = provision::start().await;
    let alice = client(project.agent(&api, "alice").await);
    // The key file's owner key is the root of trust. Here it is not the key that signed
    // this project's registrations, as when a server hands out a project of its own.
    let mut bob_key = project.agent(&api, "bob").await;
    bob_key.project.owner_key = SigningKey::generate().public_key();
    let bob = client(bob_key);

    let sent = alice.send(to_bob("trust me, run this")).await.unwrap();
    let page = inbox_holding(&bob, Seq(0), 1).await;
    let [Incoming::Rejected(rejected)] = page.items.as_slice() else {
        panic!("expected one rejection, got {:?}", page.items);
    };
    assert_eq!(rejected.id, sent.id);
    assert!(matches!(
        rejected.reason,
        VerifyError::UntrustedSender {
            reason: RegistrationError::NotSignedByOwner,
            ..
        }
    ));
    assert!(!rejected.to_string().contains("trust me"));
    let error = bob.message(sent.id).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("not signed by the project owner"), "{text}");
    assert!(!text.contains("trust me"), "{text}");

    // Nor does it believe itself registered.
    let error = bob.verify_identity().await.unwrap_err();
    assert!(
        matches!(error, ClientError::NotRegistered { .. }),
        "{error}"
    );

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_server_is_named_with_how_to_start_it() {
    let (env, api, project) = provision::start().await;
    let mut key = project.agent(&api, "alice").await;
    let closed = closed_address();
    key.server = format!("http://{closed}");
    let error = client(key).probe().await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, ClientError::Unreachable { .. }));
    assert!(
        text.contains(&closed.to_string()) && text.contains("nexysync up"),
        "{text}"
    );

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn the_stream_delivers_a_new_message_as_soon_as_it_is_sent() {
    let (env, api, project) = provision::start().await;
    let alice = client(project.agent(&api, "alice").await);
    let bob = client(project.agent(&api, "bob").await);
    let stream = MessageStream::start(bob, Seq(0), test_stream_options());
    let waiting = tokio::spawn(async move {
        let pending = stream.next(DEADLINE, 10).await.unwrap();
        (pending, stream)
    });
    let sent = alice.send(to_bob("ping")).await.unwrap();
    let (pending, stream) = waiting.await.unwrap();
    let got = messages(&pending.items);
    assert_eq!(got.len(), 1, "{:?}", pending.items);
    assert_eq!(got[0].id, sent.id);
    assert_eq!(pending.cursor, sent.seq);
    assert_eq!(stream.cursor(), sent.seq);
    assert!(stream.status().connected);

    drop(stream);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn the_stream_resumes_after_the_server_restarts_without_gaps_or_repeats() {
    let (env, api, project) = provision::start().await;
    let alice = client(project.agent(&api, "alice").await);
    let bob = client(project.agent(&api, "bob").await);
    let stream = MessageStream::start(bob, Seq(0), test_stream_options());

    alice.send(to_bob("one")).await.unwrap();
    assert_eq!(bodies(&delivered(&stream, 1).await), ["one"]);

    let api = restart(&env, api).await;
    alice.send(to_bob("two")).await.unwrap();
    alice.send(to_bob("three")).await.unwrap();

    assert_eq!(bodies(&delivered(&stream, 2).await), ["two", "three"]);
    assert!(stream.status().reconnects >= 1);
    // "one" is not delivered again.
    assert_nothing_more(&stream).await;

    drop(stream);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn messages_read_through_the_inbox_are_not_delivered_again_by_the_stream() {
    let (env, api, project) = provision::start().await;
    let alice = client(project.agent(&api, "alice").await);
    let bob = client(project.agent(&api, "bob").await);
    let stream = MessageStream::start(bob.clone(), Seq(0), test_stream_options());
    let mut arrivals = stream.subscribe();
    alice.send(to_bob("seen by check")).await.unwrap();
    tokio::time::timeout(DEADLINE, arrivals.recv())
        .await
        .unwrap()
        .unwrap();
    // The stream pushed it; the inbox shows it too, at once.
    let page = bob.inbox(stream.cursor(), 10).await.unwrap();
    assert_eq!(bodies(&page.items), ["seen by check"]);
    stream.mark_delivered(page.next_since);
    assert_nothing_more(&stream).await;

    drop(stream);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_small_buffer_that_overflows_falls_back_to_the_inbox() {
    let (env, api, project) = provision::start().await;
    let alice = client(project.agent(&api, "alice").await);
    let bob = client(project.agent(&api, "bob").await);
    for i in 0..5 {
        alice.send(to_bob(&format!("m{i}"))).await.unwrap();
    }
    let options = StreamOptions {
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
    assert!(stream.status().pending <= 2);
    let mut got = Vec::new();
    loop {
        let pending = stream.next(Duration::from_millis(300), 10).await.unwrap();
        if pending.items.is_empty() {
            break;
        }
        got.extend(bodies(&pending.items));
    }
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);

    drop(stream);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_reader_told_to_catch_up_gets_every_message_in_order_once() {
    let env = TestEnv::new();
    // One event of room per connection: a connection that is not written to between
    // two events of its project falls behind, is told `catch_up` and closed.
    let mut settings = env.settings();
    settings.sse_buffer = 1;
    let api = env.spawn_api_with(settings).await;
    let project = provision::Project::create(&api, "demo").await;
    let alice = project.agent(&api, "alice").await;
    let bob_key = project.agent(&api, "bob").await;
    let stream = MessageStream::start(client(bob_key.clone()), Seq(0), test_stream_options());
    let live = &stream;
    eventually("bob's stream to be live", DEADLINE, || async move {
        live.status().live.then_some(())
    })
    .await;

    // Another writer (another API instance, say) appends a burst while this process is
    // busy: the test blocks its own single thread, where this API instance runs, until
    // the burst is in the log. The instance then has the whole burst to push at once.
    let burst: Vec<Envelope> = (0..20)
        .map(|i| sealed_message(&alice, &bob_key, &format!("burst {i}")))
        .collect();
    let appended: Vec<EventId> = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let log = env.log().await;
                    let mut appended = Vec::new();
                    for event in burst {
                        let outcome = log.append(event).await.unwrap();
                        appended.push(outcome.event.id);
                    }
                    appended
                })
            })
            .join()
            .unwrap()
    });

    // Scheduling decides whether the connection really fell behind (in practice it
    // does), so the test insists only on what the agent sees: every message, in log
    // order, once.
    let got = delivered(&stream, appended.len()).await;
    let ids: Vec<_> = messages(&got).iter().map(|m| m.id).collect();
    assert_eq!(ids, appended, "every message, in log order, once");
    assert_nothing_more(&stream).await;

    drop(stream);
    api.stop().await;
    env.cleanup().await;
}

/// A message from `from` to `to`, sealed and signed as [`Client::send`] makes it.
fn sealed_message(from: &KeyFile, to: &KeyFile, body: &str) -> Envelope {
    Draft::new(
        from.project.id,
        Actor::Agent(from.agent.id),
        EventBody::MessageSent(MessageSent {
            to: Some(to.agent.id),
            reply_to: None,
            ttl_s: None,
            topic_ix: None,
        }),
    )
    .seal(
        &from.project_key.content_keys(),
        fields::BODY,
        body.as_bytes(),
    )
    .sign(&from.signing_key)
}

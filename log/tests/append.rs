//! The log against a real nats-server: conditional appends, dedupe, ordered reads.
//! Each test has its own stream prefix and deletes its stream at the end.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use futures::StreamExt;
use nexysync_domain::crypto::{ProjectKey, SigningKey};
use nexysync_domain::event::{
    fields, Actor, ChainVerifier, Draft, Envelope, EventBody, MessageSent, ProjectCreated,
};
use nexysync_domain::ids::{AgentId, ProjectId, ProjectName, Seq};
use nexysync_log::{EventLog, Prefix};

struct TestLog {
    log: EventLog,
}

impl TestLog {
    async fn new() -> Self {
        let url = std::env::var("NEXYSYNC_TEST_NATS_URL")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let prefix = format!("t{}", hex::encode(rand::random::<[u8; 6]>()));
        let client = async_nats::connect(url)
            .await
            .expect("nats-server is running");
        let log = EventLog::connect(client, Prefix::parse(&prefix).unwrap())
            .await
            .unwrap();
        Self { log }
    }

    /// A second handle on the same stream: another API instance, with its own head cache.
    async fn another_writer(&self) -> EventLog {
        let url = std::env::var("NEXYSYNC_TEST_NATS_URL")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let client = async_nats::connect(url).await.unwrap();
        EventLog::connect(client, self.log.prefix().clone())
            .await
            .unwrap()
    }

    async fn delete(self) {
        let name = self.log.prefix().stream_name();
        self.log.jetstream().delete_stream(name).await.unwrap();
    }
}

fn message(project: ProjectId, body: &str) -> Envelope {
    let keys = ProjectKey::generate().content_keys();
    Draft::new(
        project,
        Actor::Agent(AgentId::generate()),
        EventBody::MessageSent(MessageSent {
            to: None,
            reply_to: None,
            ttl_s: None,
            topic_ix: None,
        }),
    )
    .seal(&keys, fields::BODY, body.as_bytes())
    .sign(&SigningKey::generate())
}

/// Opens a project's subject with its `ProjectCreated`, as the API does.
async fn start_project(log: &EventLog) -> ProjectId {
    let project = ProjectId::generate();
    let owner = SigningKey::generate();
    let created = Draft::new(
        project,
        Actor::Owner,
        EventBody::ProjectCreated(ProjectCreated {
            name: ProjectName::parse("test").unwrap(),
            owner_key: owner.public_key(),
            retention: Default::default(),
        }),
    )
    .sign(&owner);
    log.append(created).await.unwrap();
    project
}

async fn read_project(log: &EventLog, project: ProjectId, count: usize) -> Vec<(Seq, Envelope)> {
    let mut stream = log.read_project(project, Seq(0)).await.unwrap();
    let mut events = Vec::new();
    while events.len() < count {
        let raw = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .expect("events arrive")
            .unwrap()
            .unwrap();
        events.push((raw.seq, raw.envelope().unwrap()));
    }
    events
}

#[tokio::test]
async fn appends_chain_each_event_to_the_projects_previous_one() {
    let test = TestLog::new().await;
    let project = start_project(&test.log).await;
    let other = start_project(&test.log).await;
    for i in 0..3 {
        test.log
            .append(message(project, &format!("p{i}")))
            .await
            .unwrap();
        test.log
            .append(message(other, &format!("o{i}")))
            .await
            .unwrap();
    }
    let events = read_project(&test.log, project, 3).await;
    assert!(
        events[0].1.prev.is_none(),
        "the first event starts the chain"
    );
    let mut verifier = ChainVerifier::from_genesis();
    for (seq, event) in &events {
        verifier.push(*seq, event).unwrap();
    }
    test.delete().await;
}

#[tokio::test]
async fn a_retried_event_id_is_appended_once() {
    let test = TestLog::new().await;
    let project = start_project(&test.log).await;
    let event = message(project, "once");
    let first = test.log.append(event.clone()).await.unwrap();
    let again = test.log.append(event).await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.seq, first.seq);
    assert_eq!(test.log.last_seq().await.unwrap(), first.seq.0);
    test.delete().await;
}

#[tokio::test]
async fn concurrent_writers_with_stale_heads_still_form_one_chain() {
    let test = TestLog::new().await;
    let second = test.another_writer().await;
    let project = start_project(&test.log).await;
    // Alternate writers: each one's cached head is stale every other time, so each
    // append after the first two meets a wrong-last-sequence conflict and retries.
    for i in 0..6 {
        let writer = if i % 2 == 0 { &test.log } else { &second };
        writer
            .append(message(project, &format!("m{i}")))
            .await
            .unwrap();
    }
    // And truly concurrently.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let writer = if i % 2 == 0 {
                test.log.clone()
            } else {
                second.clone()
            };
            tokio::spawn(async move { writer.append(message(project, "c")).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let events = read_project(&test.log, project, 17).await;
    let mut verifier = ChainVerifier::from_genesis();
    for (seq, event) in &events {
        verifier.push(*seq, event).unwrap();
    }
    test.delete().await;
}

#[tokio::test]
async fn a_project_is_created_once_and_first() {
    let test = TestLog::new().await;
    let unknown = ProjectId::generate();
    assert!(matches!(
        test.log.append(message(unknown, "orphan")).await,
        Err(nexysync_log::LogError::ProjectNotStarted(_))
    ));
    let project = start_project(&test.log).await;
    let owner = SigningKey::generate();
    let again = Draft::new(
        project,
        Actor::Owner,
        EventBody::ProjectCreated(ProjectCreated {
            name: ProjectName::parse("again").unwrap(),
            owner_key: owner.public_key(),
            retention: Default::default(),
        }),
    )
    .sign(&owner);
    assert!(matches!(
        test.log.append(again).await,
        Err(nexysync_log::LogError::ProjectAlreadyStarted(_))
    ));
    test.delete().await;
}

#[tokio::test]
async fn a_server_without_jetstream_is_refused_with_a_clear_message() {
    // A throwaway nats-server without -js on a free port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server is installed");
    let url = format!("nats://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let client = loop {
        match async_nats::connect(&url).await {
            Ok(client) => break client,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("throwaway nats-server did not start: {e}"),
        }
    };
    let error = EventLog::connect(client, Prefix::parse("nojs").unwrap())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("-js"), "{error}");
    server.kill().await.ok();
}

#[tokio::test]
async fn an_event_is_erased_once_and_erasing_it_again_is_harmless() {
    let t = TestLog::new().await;
    let project = start_project(&t.log).await;
    let seq = t.log.append(message(project, "mortal")).await.unwrap().seq;
    assert!(t.log.erase(seq).await.unwrap(), "erased");
    assert_eq!(t.log.stored_event(project, seq).await.unwrap(), None);
    // A pruner that stopped between erasing and recording it erases again on its next run.
    assert!(!t.log.erase(seq).await.unwrap(), "already erased");
    t.delete().await;
}

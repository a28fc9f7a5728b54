//! The retention policy through the API in-process: a project created with one (version 2
//! of `project_created`), or by an older client at version 1; a `ttl_s` above the maximum
//! refused with a 400 naming it; the owner's `retention_set` through its route; a
//! tombstone from a client refused.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use nexysync_domain::event::{
    fields, Actor, Draft, Envelope, EventBody, EventsErased, MessageSent, ProjectCreated,
    RetentionPolicy,
};
use nexysync_domain::ids::{EventId, ProjectName};
use nexysync_tests::agents::{TestAgent, TestProject};
use nexysync_tests::{TestApi, TestEnv};

fn mortal(agent: &TestAgent, project: &TestProject, ttl_s: u32) -> Envelope {
    Draft::new(
        agent.project,
        Actor::Agent(agent.id),
        EventBody::MessageSent(MessageSent {
            to: None,
            reply_to: None,
            ttl_s: Some(ttl_s),
            topic_ix: None,
        }),
    )
    .seal(&project.keys(), fields::BODY, b"mortal")
    .sign(&agent.key)
}

/// A project created at version 2 with `policy`.
async fn create_with(api: &TestApi, policy: RetentionPolicy, kind_v: u16) -> TestProject {
    let project = TestProject {
        id: nexysync_domain::ids::ProjectId::generate(),
        key: nexysync_domain::crypto::ProjectKey::generate(),
        owner: nexysync_domain::crypto::SigningKey::generate(),
    };
    let event = Draft::new(
        project.id,
        Actor::Owner,
        EventBody::ProjectCreated(ProjectCreated {
            name: ProjectName::parse("retained").unwrap(),
            owner_key: project.owner.public_key(),
            retention: policy,
        }),
    )
    .sign_at_version(&project.owner, kind_v);
    let (status, body) = api.admin_post("/v1/projects", &event).await;
    assert_eq!(status, 201, "project created: {body}");
    project
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_above_the_maximum_is_refused_naming_it_until_the_owner_raises_it() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let policy = RetentionPolicy {
        default_ttl_s: Some(30),
        max_ttl_s: Some(60),
    };
    let project = create_with(&api, policy, 2).await;
    let alice = project.add_agent(&api, "alice").await;
    let (_, me) = alice.get(&api, "/v1/whoami").await;
    assert_eq!(me["retention"]["max_ttl_s"], 60, "{me}");

    let (status, answer) = alice.post(&api, &mortal(&alice, &project, 120)).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "ttl_above_maximum");
    let text = answer["error"]["message"].as_str().unwrap();
    assert!(text.contains("maximum of 60 seconds"), "{text}");
    let (status, _) = alice.post(&api, &mortal(&alice, &project, 60)).await;
    assert_eq!(status, 201);

    let inverted = RetentionPolicy {
        default_ttl_s: Some(600),
        max_ttl_s: Some(60),
    };
    let (status, answer) = project.set_retention(&api, inverted).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_retention_policy");
    let raised = RetentionPolicy {
        default_ttl_s: None,
        max_ttl_s: Some(3600),
    };
    let (status, answer) = project.set_retention(&api, raised).await;
    assert_eq!(status, 201, "{answer}");
    let seq = answer["seq"].as_u64().unwrap();
    let (_, me) = alice.get(&api, &format!("/v1/whoami?min_seq={seq}")).await;
    assert_eq!(me["retention"]["max_ttl_s"], 3600, "{me}");
    let (status, answer) = alice.post(&api, &mortal(&alice, &project, 120)).await;
    assert_eq!(status, 201, "{answer}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_project_from_an_older_client_is_accepted_with_no_policy() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = create_with(&api, RetentionPolicy::default(), 1).await;
    let alice = project.add_agent(&api, "alice").await;
    let (_, me) = alice.get(&api, "/v1/whoami").await;
    assert_eq!(me["retention"], serde_json::json!({}), "{me}");
    let (status, _) = alice.post(&api, &mortal(&alice, &project, 3600)).await;
    assert_eq!(status, 201);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_append_a_tombstone() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "retained").await;
    let alice = project.add_agent(&api, "alice").await;
    let mut tombstone = Envelope::tombstone(
        EventId::generate(),
        project.id,
        chrono_now(),
        EventsErased { erased: vec![] },
    );
    tombstone.actor = Actor::Agent(alice.id);
    let (status, answer) = alice.post(&api, &tombstone).await;
    assert!((400..500).contains(&status), "{status} {answer}");
    env.cleanup().await;
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

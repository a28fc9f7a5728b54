//! ns_meta through the API: an agent sets its own profile (role and description sealed,
//! signed by it), `whoami` and `agents` serve it as stored; bad profiles are refused
//! clearly; another project's agent can neither read nor change any of it; the role
//! never reaches the server's storage in clear.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use futures::StreamExt;
use nexysync_domain::event::{fields, Envelope};
use nexysync_domain::ids::Seq;
use nexysync_tests::{postgres_server_url, TestEnv, TestProject};

fn opened(event: &serde_json::Value, project: &TestProject, field: &str) -> String {
    let envelope: Envelope = serde_json::from_value(event.clone()).unwrap();
    String::from_utf8(envelope.open(&project.keys(), field).unwrap().unwrap()).unwrap()
}

#[tokio::test]
async fn an_agent_sets_its_own_profile_and_others_read_it_as_signed() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "meta").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;

    let (status, me) = alice.get(&api, "/v1/whoami").await;
    assert_eq!(status, 200);
    assert_eq!(me["agent_name"], "alice");
    assert!(me.get("profile").is_none(), "{me}");

    let first = alice.profile(&project, "planner", None);
    let (status, answer) = alice.put_profile(&api, &first).await;
    assert_eq!(status, 201, "{answer}");
    let (status, again) = alice.put_profile(&api, &first).await;
    assert_eq!(
        (status, &again["seq"]),
        (200, &answer["seq"]),
        "a retry: {again}"
    );
    let latest = alice.profile(&project, "reviewer", Some("reads every diff"));
    let (_, answer) = alice.put_profile(&api, &latest).await;
    let min = format!("min_seq={}", answer["seq"]);

    let (_, me) = alice.get(&api, &format!("/v1/whoami?{min}")).await;
    assert_eq!(
        opened(&me["profile"]["event"], &project, fields::ROLE),
        "reviewer"
    );

    let (status, list) = bob.get(&api, &format!("/v1/agents?{min}")).await;
    assert_eq!(status, 200, "{list}");
    let listed = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "alice")
        .unwrap()
        .clone();
    let profile: Envelope = serde_json::from_value(listed["profile"]["event"].clone()).unwrap();
    assert_eq!((profile.id, profile.sig), (latest.id, latest.sig));
    profile.verify_signature(&alice.key.public_key()).unwrap();
    assert_eq!(
        opened(&listed["profile"]["event"], &project, fields::DESCRIPTION),
        "reads every diff"
    );
    assert_eq!(listed["online"], false);
    let bob_listed = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "bob")
        .unwrap();
    assert!(bob_listed.get("profile").is_none(), "{bob_listed}");

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_profile_without_a_role_for_another_agent_or_of_another_kind_is_refused() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "meta").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let log = env.log().await;
    let before = log.last_seq().await.unwrap();

    let no_role = nexysync_domain::event::Draft::new(
        project.id,
        nexysync_domain::event::Actor::Agent(alice.id),
        nexysync_domain::event::EventBody::AgentProfileUpdated(Default::default()),
    )
    .seal(&project.keys(), fields::DESCRIPTION, b"no role")
    .sign(&alice.key);
    let (status, body) = alice.put_profile(&api, &no_role).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("missing_sealed_field")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("role"));

    // Alice cannot describe bob: an event acting as bob is not hers to send...
    let as_bob = bob.profile(&project, "intern", None);
    let (status, body) = alice.put_profile(&api, &as_bob).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("actor_is_not_caller")),
        "{body}"
    );
    // ...and one she signs in bob's name does not verify.
    let mut forged = alice.profile(&project, "intern", None);
    forged.actor = nexysync_domain::event::Actor::Agent(bob.id);
    let (status, body) = bob.put_profile(&api, &forged).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("bad_signature")),
        "{body}"
    );

    let message = alice.message(&project, None, None, "hi");
    let (status, body) = alice.put_profile(&api, &message).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert_eq!(log.last_seq().await.unwrap(), before, "nothing appended");

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn another_projects_agent_can_neither_read_nor_change_this_projects_meta() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let ours = TestProject::create(&api, "ours").await;
    let theirs = TestProject::create(&api, "theirs").await;
    let alice = ours.add_agent(&api, "alice").await;
    let eve = theirs.add_agent(&api, "eve").await;
    let (_, answer) = alice
        .put_profile(&api, &alice.profile(&ours, "lead", None))
        .await;
    let min = format!("min_seq={}", answer["seq"]);

    let (status, list) = eve.get(&api, &format!("/v1/agents?{min}")).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eve"]);
    let (_, me) = eve.get(&api, &format!("/v1/whoami?{min}")).await;
    assert_eq!(me["project"], theirs.id.to_string());
    assert!(me.get("profile").is_none());

    // Eve can set no profile in our project, nor for alice.
    let mut into_ours = eve.profile(&theirs, "spy", None);
    into_ours.project = ours.id;
    let (status, body) = eve.put_profile(&api, &into_ours).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("wrong_project")),
        "{body}"
    );
    let as_alice = alice.profile(&ours, "spy", None);
    let (status, body) = eve.put_profile(&api, &as_alice).await;
    assert_eq!(status, 403, "{body}");
    let (_, list) = alice.get(&api, "/v1/agents").await;
    let profile = &list["agents"][0]["profile"]["event"];
    assert_eq!(opened(profile, &ours, fields::ROLE), "lead");

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn the_role_and_description_are_stored_only_as_ciphertext() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "meta").await;
    let alice = project.add_agent(&api, "alice").await;
    let role = format!("canary-role-{}", hex::encode(rand::random::<[u8; 6]>()));
    let description = format!(
        "canary-description-{}",
        hex::encode(rand::random::<[u8; 6]>())
    );
    let event = alice.profile(&project, &role, Some(&description));
    let (status, answer) = alice.put_profile(&api, &event).await;
    assert_eq!(status, 201, "{answer}");
    let (_, me) = alice
        .get(&api, &format!("/v1/whoami?min_seq={}", answer["seq"]))
        .await;
    assert_eq!(
        opened(&me["profile"]["event"], &project, fields::ROLE),
        role
    );

    let log = env.log().await;
    let last = log.last_seq().await.unwrap();
    let mut payloads = Vec::new();
    let mut events = log.read_all(Seq(0)).await.unwrap();
    while let Some(next) = events.next().await {
        let next = next.unwrap();
        payloads.extend_from_slice(&next.payload);
        if next.seq.0 >= last {
            break;
        }
    }
    let text = String::from_utf8_lossy(&payloads);
    assert!(
        text.contains(&event.id.to_string()),
        "the profile is in the log"
    );
    let dump = tokio::process::Command::new("pg_dump")
        .arg(format!("{}/{}", postgres_server_url(), env.database))
        .output()
        .await
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains(&event.id.to_string()),
        "the profile is in the read models"
    );
    for secret in [&role, &description] {
        assert!(!text.contains(secret.as_str()), "{secret} in the log");
        assert!(!dump.contains(secret.as_str()), "{secret} in pg_dump");
    }

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn meta_endpoints_answer_bad_requests_in_the_one_error_shape() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "meta").await;
    let alice = project.add_agent(&api, "alice").await;

    for path in ["/v1/whoami", "/v1/agents", "/v1/presence", "/v1/quota"] {
        let response = api
            .http
            .get(format!("{}{path}", api.url))
            .send()
            .await
            .unwrap();
        let (status, body) = nexysync_tests::json_of(response).await.unwrap();
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{path}"
        );
    }
    let response = api
        .http
        .put(format!("{}/v1/profile", api.url))
        .bearer_auth(alice.token.expose_secret())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = nexysync_tests::json_of(response).await.unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_json")),
        "{body}"
    );
    let (status, body) = alice.get(&api, "/v1/quota?min_seq=soon").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");

    api.stop().await;
    env.cleanup().await;
}

//! Every bad input gets a clear 4xx in the one error shape, and nothing is appended.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use nexysync_domain::crypto::SigningKey;
use nexysync_domain::decide::MAX_SEALED_BYTES;
use nexysync_domain::event::EventBody;
use nexysync_domain::ids::{AgentId, EventId};
use nexysync_tests::{json_of, TestApi, TestEnv, TestProject};

fn assert_error(status: u16, body: &serde_json::Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "a message a person can act on: {body}"
    );
}

async fn last_seq(env: &TestEnv) -> u64 {
    env.log().await.last_seq().await.unwrap()
}

async fn post_raw(api: &TestApi, token: &str, body: &str) -> (u16, serde_json::Value) {
    let response = api
        .http
        .post(format!("{}/v1/messages", api.url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    json_of(response).await.unwrap()
}

#[tokio::test]
async fn bad_requests_are_refused_clearly_and_append_nothing() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "demo").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let before = last_seq(&env).await;
    let token = alice.token.expose_secret();

    // Malformed JSON, and JSON of the wrong shape.
    let (status, body) = post_raw(&api, token, "{not json").await;
    assert_error(status, &body, 400, "invalid_json");
    let (status, body) = post_raw(&api, token, r#"{"hello":"world"}"#).await;
    assert_error(status, &body, 400, "invalid_json");

    // No token, a wrong token.
    let response = api
        .http
        .post(format!("{}/v1/messages", api.url))
        .json(&alice.message(&project, Some(&bob), None, "x"))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await.unwrap();
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = post_raw(&api, "nsa_wrong", "{}").await;
    assert_error(status, &body, 401, "unauthorized");

    // A bad signature.
    let mut forged = alice.message(&project, Some(&bob), None, "x");
    forged.sig.flip_bit_for_test(1);
    let (status, body) = alice.post(&api, &forged).await;
    assert_error(status, &body, 422, "bad_signature");

    // Signed by bob's key but sent with alice's token (and claiming alice).
    let mut impostor = bob.clone();
    impostor.id = alice.id;
    let event = impostor.message(&project, None, None, "x");
    let (status, body) = alice.post(&api, &event).await;
    assert_error(status, &body, 422, "bad_signature");

    // Claiming to be bob with alice's token.
    let event = bob.message(&project, None, None, "x");
    let (status, body) = alice.post(&api, &event).await;
    assert_error(status, &body, 403, "actor_is_not_caller");

    // An unknown recipient, an unknown reply_to.
    let mut ghost = bob.clone();
    ghost.id = AgentId::generate();
    let (status, body) = alice
        .post(&api, &alice.message(&project, Some(&ghost), None, "x"))
        .await;
    assert_error(status, &body, 422, "unknown_recipient");
    let (status, body) = alice
        .post(
            &api,
            &alice.message(&project, Some(&bob), Some(EventId::generate()), "x"),
        )
        .await;
    assert_error(status, &body, 422, "reply_to_unknown_message");

    // Content over the limit, and a body over the request limit.
    let big = "x".repeat(MAX_SEALED_BYTES);
    let (status, body) = alice
        .post(&api, &alice.message(&project, Some(&bob), None, &big))
        .await;
    assert_error(status, &body, 413, "content_too_large");
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(400 * 1024));
    let (status, body) = post_raw(&api, token, &huge).await;
    assert_error(status, &body, 413, "payload_too_large");

    // A client that sets its own chain link.
    let mut chained = alice.message(&project, Some(&bob), None, "x");
    chained.prev = Some(nexysync_domain::event::ChainLink {
        seq: nexysync_domain::ids::Seq(1),
        hash: chained.hash(),
    });
    let (status, body) = alice.post(&api, &chained).await;
    assert_error(status, &body, 422, "chain_set_by_client");

    // A provisioning event through the agent route.
    let (_, registration) = project.registration("mallory");
    let (status, body) = alice.post(&api, &registration).await;
    assert_error(status, &body, 403, "actor_is_not_caller");

    // A bad message id in a path, and an unknown route.
    let (status, body) = alice.get(&api, "/v1/messages/not-a-uuid").await;
    assert_error(status, &body, 400, "invalid_request");
    let (status, body) = alice.get(&api, "/v1/nothing-here").await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = alice.get(&api, "/v1/messages?limit=0").await;
    assert_error(status, &body, 400, "invalid_request");
    // A path segment that is not UTF-8 once percent-decoded, and a method a route does
    // not take: axum's own answers are plain text and an empty body.
    let (status, body) = alice.get(&api, "/v1/messages/%FF").await;
    assert_error(status, &body, 400, "invalid_request");
    for (method, path) in [
        (reqwest::Method::DELETE, "/v1/messages"),
        (reqwest::Method::PUT, "/v1/whoami"),
    ] {
        let response = api
            .http
            .request(method, format!("{}{path}", api.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(response).await.unwrap();
        assert_error(status, &body, 405, "method_not_allowed");
    }

    assert_eq!(last_seq(&env).await, before, "nothing was appended");
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn provisioning_needs_the_admin_token_and_the_owner_key() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "demo").await;
    let before = last_seq(&env).await;

    let (_, registration) = project.registration("alice");
    let response = api
        .http
        .post(format!("{}/v1/projects/{}/agents", api.url, project.id))
        .bearer_auth("nsadm_wrong")
        .json(&registration)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await.unwrap();
    assert_error(status, &body, 401, "unauthorized");

    // Registered by a key that is not the owner's.
    let (_, mut registration) = project.registration("alice");
    let EventBody::AgentRegistered(meta) = registration.body.clone() else {
        unreachable!()
    };
    registration = nexysync_domain::event::Draft::new(
        project.id,
        nexysync_domain::event::Actor::Owner,
        EventBody::AgentRegistered(meta),
    )
    .sign(&SigningKey::generate());
    let (status, body) = api
        .admin_post(
            &format!("/v1/projects/{}/agents", project.id),
            &registration,
        )
        .await;
    assert_error(status, &body, 422, "bad_signature");

    // A second agent with a taken name.
    project.add_agent(&api, "bob").await;
    let before_dup = last_seq(&env).await;
    let (_, duplicate) = project.registration("bob");
    let (status, body) = api
        .admin_post(&format!("/v1/projects/{}/agents", project.id), &duplicate)
        .await;
    assert_error(status, &body, 409, "agent_name_taken");
    assert_eq!(last_seq(&env).await, before_dup);
    assert_eq!(before_dup, before + 1);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn provisioning_decides_on_caught_up_read_models_or_says_they_lag() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = TestProject::create(&api, "lagging").await;
    let alice = project.add_agent(&api, "alice").await;
    let projected = last_seq(&env).await;
    alice
        .get(&api, &format!("/v1/messages?min_seq={projected}"))
        .await;
    api.stop().await;

    // An instance whose read models do not move (no projector): its first registration
    // goes in; a second of the same name would look free to it.
    let mut settings = env.settings();
    settings.run_projectors = false;
    settings.read_your_writes_timeout = std::time::Duration::from_millis(300);
    let frozen = env.spawn_api_with(settings).await;
    let agents = format!("/v1/projects/{}/agents", project.id);
    let (_, first) = project.registration("bob");
    let (status, body) = frozen.admin_post(&agents, &first).await;
    assert_eq!(status, 201, "{body}");
    let (_, second) = project.registration("bob");
    let (status, body) = frozen.admin_post(&agents, &second).await;
    assert_error(status, &body, 503, "projection_lagging");
    let before = last_seq(&env).await;
    frozen.stop().await;

    // Caught up, the same request is refused for what it is, and nothing was appended.
    let api = env.spawn_api().await;
    let (status, body) = api.admin_post(&agents, &second).await;
    assert_error(status, &body, 409, "agent_name_taken");
    assert_eq!(last_seq(&env).await, before, "nothing was appended");
    api.stop().await;
    env.cleanup().await;
}

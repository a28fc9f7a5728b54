//! Presence through the API: an agent is online while it holds an SSE stream; the
//! project's other agents are told (`presence_change`) when its stream closes and when
//! the instance holding it dies without a word (within the bound); nothing crosses
//! projects.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nexysync_tests::meta::next_presence_change;
use nexysync_tests::{eventually, TestAgent, TestApi, TestEnv, TestProject};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(15);

/// `agent`'s entry in `viewer`'s `GET /v1/presence`.
async fn presence_of(viewer: &TestAgent, api: &TestApi, agent: &TestAgent) -> Value {
    let (status, list) = viewer.get(api, "/v1/presence").await;
    assert_eq!(status, 200, "{list}");
    list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == agent.id.to_string())
        .cloned()
        .unwrap_or(Value::Null)
}

async fn wait_online(viewer: &TestAgent, api: &TestApi, agent: &TestAgent, online: bool) -> Value {
    eventually("presence to be projected", DEADLINE, || async {
        let entry = presence_of(viewer, api, agent).await;
        (entry["online"] == online).then_some(entry)
    })
    .await
}

#[tokio::test]
async fn an_agent_whose_stream_closes_goes_offline_and_the_others_are_told() {
    let env = TestEnv::new();
    let api = env.spawn_api_with(env.fast_presence_settings()).await;
    let project = TestProject::create(&api, "presence").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;

    let mut alice_events = alice.stream(&api).await;
    let before = presence_of(&alice, &api, &bob).await;
    assert_eq!(before["online"], false, "{before}");
    assert_eq!(before["name"], "bob");

    let bob_events = bob.stream(&api).await;
    let online = next_presence_change(&mut alice_events, DEADLINE).await;
    assert_eq!(online["agent"], bob.id.to_string());
    assert_eq!(online["online"], true);
    wait_online(&alice, &api, &bob, true).await;
    let (_, agents) = alice.get(&api, "/v1/agents").await;
    let listed = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == bob.id.to_string())
        .unwrap()
        .clone();
    assert_eq!(listed["online"], true, "{listed}");

    drop(bob_events);
    let offline = next_presence_change(&mut alice_events, DEADLINE).await;
    assert_eq!(offline["agent"], bob.id.to_string());
    assert_eq!(offline["online"], false);
    assert!(offline["at"].as_i64().unwrap() >= online["at"].as_i64().unwrap());
    let entry = wait_online(&alice, &api, &bob, false).await;
    assert!(entry["last_seen_ms"].as_i64().is_some(), "{entry}");

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn an_instance_that_dies_without_a_word_leaves_its_agents_offline_within_the_bound() {
    let env = TestEnv::new();
    let settings = env.fast_presence_settings();
    let bound = settings.presence_timeout;
    let survivor = env.spawn_api_with(settings.clone()).await;
    let doomed = env.spawn_api_with(settings).await;
    let project = TestProject::create(&survivor, "presence").await;
    let alice = project.add_agent(&survivor, "alice").await;
    let bob = project.add_agent(&survivor, "bob").await;

    let mut alice_events = alice.stream(&survivor).await;
    // Bob's stream is on the instance that will die; it stays open on his side.
    eventually("the doomed instance to know bob", DEADLINE, || async {
        let (status, _) = bob.get(&doomed, "/v1/whoami").await;
        (status == 200).then_some(())
    })
    .await;
    let _bob_stream = bob.stream(&doomed).await;
    let online = next_presence_change(&mut alice_events, DEADLINE).await;
    assert_eq!(
        (&online["agent"], &online["online"]),
        (&Value::from(bob.id.to_string()), &Value::Bool(true))
    );
    wait_online(&alice, &survivor, &bob, true).await;

    doomed.crash().await;
    // Told within the bound (plus the sweep interval and scheduling slack).
    let offline = next_presence_change(&mut alice_events, bound + DEADLINE).await;
    assert_eq!(offline["agent"], bob.id.to_string());
    assert_eq!(offline["online"], false);
    wait_online(&alice, &survivor, &bob, false).await;

    survivor.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn another_projects_agent_sees_none_of_this_projects_presence() {
    let env = TestEnv::new();
    let api = env.spawn_api_with(env.fast_presence_settings()).await;
    let ours = TestProject::create(&api, "ours").await;
    let theirs = TestProject::create(&api, "theirs").await;
    let alice = ours.add_agent(&api, "alice").await;
    let bob = ours.add_agent(&api, "bob").await;
    let eve = theirs.add_agent(&api, "eve").await;
    let mallory = theirs.add_agent(&api, "mallory").await;

    let mut alice_events = alice.stream(&api).await;
    let mut eve_events = eve.stream(&api).await;
    let _bob_stream = bob.stream(&api).await;
    let seen = next_presence_change(&mut alice_events, DEADLINE).await;
    assert_eq!(seen["agent"], bob.id.to_string());
    // Bob's change was published before mallory's: eve's first change must be mallory's.
    let _mallory_stream = mallory.stream(&api).await;
    let first = next_presence_change(&mut eve_events, DEADLINE).await;
    assert_eq!(first["agent"], mallory.id.to_string(), "{first}");

    let (status, list) = eve.get(&api, "/v1/presence").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eve", "mallory"]);
    assert!(!list.to_string().contains(&bob.id.to_string()));

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn an_instance_that_shuts_down_takes_its_agents_offline_without_waiting_for_the_bound() {
    let env = TestEnv::new();
    let mut settings = env.settings();
    // A bound far beyond this test's deadline: only the goodbye can explain "offline".
    settings.presence_heartbeat = Duration::from_secs(60);
    settings.presence_timeout = Duration::from_secs(240);
    let survivor = env.spawn_api_with(settings.clone()).await;
    let leaving = env.spawn_api_with(settings).await;
    let project = TestProject::create(&survivor, "presence").await;
    let alice = project.add_agent(&survivor, "alice").await;
    let bob = project.add_agent(&survivor, "bob").await;
    eventually("the leaving instance to know bob", DEADLINE, || async {
        let (status, _) = bob.get(&leaving, "/v1/whoami").await;
        (status == 200).then_some(())
    })
    .await;

    let mut alice_events = alice.stream(&survivor).await;
    let _bob_stream = bob.stream(&leaving).await;
    let online = next_presence_change(&mut alice_events, DEADLINE).await;
    assert_eq!(online["online"], true);
    wait_online(&alice, &survivor, &bob, true).await;

    leaving.stop().await;
    let offline = next_presence_change(&mut alice_events, DEADLINE).await;
    assert_eq!(offline["agent"], bob.id.to_string());
    assert_eq!(offline["online"], false);
    wait_online(&alice, &survivor, &bob, false).await;

    survivor.stop().await;
    env.cleanup().await;
}

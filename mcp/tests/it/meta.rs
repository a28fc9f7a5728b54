//! `ns_meta` as agents use it, each through its own in-process MCP server against the
//! real API: whoami, update_role, agents (role, description, online), presence, quota;
//! helpful errors; another project's agent sees none of it; the role stored only as
//! ciphertext.

use serde_json::json;

use nexysync_mcp::client::Client;
use nexysync_tests::{eventually, TestEnv};

use crate::mcp_session::{is_error, structured, text_of, McpSession};
use crate::provision::{self, everything_stored, Project, DEADLINE};

#[tokio::test]
async fn agents_set_roles_and_see_each_other_online_through_ns_meta() {
    // Fast presence: a closed stream is noticed at the next SSE heartbeat (1 s).
    let env = TestEnv::new();
    let api = env.spawn_api_with(env.fast_presence_settings()).await;
    let project = Project::create(&api, "demo").await;
    let alice = McpSession::start(Some(project.agent(&api, "alice").await)).await;
    let bob = McpSession::start(Some(project.agent(&api, "bob").await)).await;

    let me = alice.call("ns_meta", json!({"action": "whoami"})).await;
    assert!(!is_error(&me), "{}", text_of(&me));
    assert_eq!(structured(&me)["agent_name"], "alice");
    assert!(text_of(&me).contains("no role set"), "{}", text_of(&me));

    let set = alice
        .call(
            "ns_meta",
            json!({"action": "update_role", "role": "reviewer", "description": "reads every diff"}),
        )
        .await;
    assert!(!is_error(&set), "{}", text_of(&set));
    let me = alice.call("ns_meta", json!({"action": "whoami"})).await;
    assert_eq!(structured(&me)["profile"]["role"], "reviewer");

    // Both MCP servers hold a live stream, so both agents come online.
    let listed = eventually(
        "bob to see alice's role and both online",
        DEADLINE,
        || async {
            let answer = bob.call("ns_meta", json!({"action": "agents"})).await;
            let data = structured(&answer);
            let agents = data["agents"].as_array()?.clone();
            let alice = agents.iter().find(|a| a["name"] == "alice")?;
            let ready = alice["role"] == "reviewer" && agents.iter().all(|a| a["online"] == true);
            ready.then_some(data)
        },
    )
    .await;
    let alice_entry = listed["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "alice")
        .unwrap()
        .clone();
    assert_eq!(alice_entry["description"], "reads every diff");
    assert!(alice_entry["last_seen"].is_string(), "{alice_entry}");

    let presence = bob.call("ns_meta", json!({"action": "presence"})).await;
    assert!(!is_error(&presence), "{}", text_of(&presence));
    assert!(
        text_of(&presence).contains("alice"),
        "{}",
        text_of(&presence)
    );

    let quota = bob.call("ns_meta", json!({"action": "quota"})).await;
    assert!(!is_error(&quota), "{}", text_of(&quota));
    assert_eq!(structured(&quota)["usage"]["messages_today"], 0);
    assert!(
        text_of(&quota).contains("messages today 0/"),
        "{}",
        text_of(&quota)
    );

    let missing = alice
        .call("ns_meta", json!({"action": "update_role"}))
        .await;
    assert!(is_error(&missing));
    assert!(
        text_of(&missing).contains("`role` is required"),
        "{}",
        text_of(&missing)
    );
    let unknown = alice.call("ns_meta", json!({"action": "dance"})).await;
    assert!(is_error(&unknown), "{}", text_of(&unknown));

    // Bob's MCP server goes away: his stream closes, alice sees him offline.
    drop(bob);
    eventually("alice to see bob offline", DEADLINE, || async {
        let answer = alice.call("ns_meta", json!({"action": "presence"})).await;
        let data = structured(&answer);
        let bob = data["agents"]
            .as_array()?
            .iter()
            .find(|a| a["name"] == "bob")?
            .clone();
        (bob["online"] == false && bob["last_seen"].is_string()).then_some(())
    })
    .await;

    drop(alice);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn another_projects_agent_sees_none_of_this_projects_meta() {
    let (env, api, ours) = provision::start().await;
    let theirs = Project::create(&api, "theirs").await;
    let alice = McpSession::start(Some(ours.agent(&api, "alice").await)).await;
    let eve = McpSession::start(Some(theirs.agent(&api, "eve").await)).await;
    let set = alice
        .call(
            "ns_meta",
            json!({"action": "update_role", "role": "lead-canary-7f3a"}),
        )
        .await;
    assert!(!is_error(&set), "{}", text_of(&set));

    for action in ["agents", "presence", "quota", "whoami"] {
        let answer = eve.call("ns_meta", json!({"action": action})).await;
        assert!(!is_error(&answer), "{action}: {}", text_of(&answer));
        let text = format!("{} {}", text_of(&answer), structured(&answer));
        assert!(!text.contains("alice"), "{action}: {text}");
        assert!(!text.contains("lead-canary-7f3a"), "{action}: {text}");
    }

    drop((alice, eve));
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn the_server_holds_roles_and_descriptions_only_as_ciphertext() {
    let (env, api, project) = provision::start().await;
    let alice = Client::new(project.agent(&api, "alice").await).unwrap();
    let appended = alice
        .update_profile("canary-role-3c9d1", Some("canary-description-e41b7"))
        .await
        .unwrap();
    let me = alice.me().await.unwrap();
    assert_eq!(me.profile.unwrap().role, "canary-role-3c9d1");

    let stored = everything_stored(&env).await;
    assert!(appended.seq.0 > 0);
    assert!(
        stored.matches("agent_profile_updated").count() >= 2,
        "the profile is in the log and in the read models"
    );
    for secret in ["canary-role-3c9d1", "canary-description-e41b7"] {
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

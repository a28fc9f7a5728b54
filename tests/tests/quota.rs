//! Quotas through the API: each limit exceeded is a clear `429 quota_exceeded` naming
//! the limit, its value and when it resets; nothing is appended; KV writes never count;
//! usage is visible in `GET /v1/quota`, and only to the project's own agents.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use nexysync_domain::quota::{next_utc_midnight_ms, utc_rfc3339, QuotaLimits};
use nexysync_tests::{TestApi, TestEnv, TestProject};

async fn api_with(env: &TestEnv, limits: QuotaLimits) -> TestApi {
    let mut settings = env.settings();
    settings.quota = limits;
    env.spawn_api_with(settings).await
}

fn refused(status: u16, body: &serde_json::Value, limit: &str) -> String {
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    let message = body["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(limit), "{message}");
    message
}

#[tokio::test]
async fn the_daily_message_count_refuses_with_its_reset_appends_nothing_and_kv_is_free() {
    let env = TestEnv::new();
    let api = api_with(
        &env,
        QuotaLimits {
            messages_per_day: 2,
            ..QuotaLimits::default()
        },
    )
    .await;
    let project = TestProject::create(&api, "quota").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;

    alice.send(&api, &project, None, None, "one").await;
    let second = alice.message(&project, Some(&bob), None, "two");
    let (status, answer) = alice.post(&api, &second).await;
    assert_eq!(status, 201, "{answer}");
    let log = env.log().await;
    let before = log.last_seq().await.unwrap();

    let third = alice.message(&project, None, None, "three");
    let (status, body) = alice.post(&api, &third).await;
    let message = refused(status, &body, "messages_per_day");
    assert!(message.contains("limit is 2"), "{message}");
    let midnight = utc_rfc3339(next_utc_midnight_ms(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    ));
    assert!(message.contains(&midnight), "{message} names {midnight}");
    // A code reference counts as a message too.
    let shared = alice.ref_shared(&project, None, "src/a.rs", (1, 1), "x");
    let (status, body) = alice.share_ref(&api, &shared).await;
    refused(status, &body, "messages_per_day");
    assert_eq!(log.last_seq().await.unwrap(), before, "nothing appended");

    // A retry of the write that used the quota up is still a retry, not a refusal.
    let (status, again) = alice.post(&api, &second).await;
    assert_eq!(
        (status, &again["duplicate"]),
        (200, &serde_json::json!(true)),
        "{again}"
    );

    // KV writes never count.
    let set = alice.kv_set(&project, "k", "v", None, None);
    let (status, body) = alice.kv_write(&api, &set).await;
    assert_eq!(status, 201, "{body}");

    let (status, quota) = bob
        .get(&api, &format!("/v1/quota?min_seq={}", body["seq"]))
        .await;
    assert_eq!(status, 200, "{quota}");
    assert_eq!(quota["limits"]["messages_per_day"], 2);
    assert_eq!(quota["usage"]["messages_today"], 2);
    assert!(quota["usage"]["stored_bytes"].as_u64().unwrap() > 0);
    assert!(quota["messages_reset_at_ms"].as_u64().unwrap() % 86_400_000 == 0);

    // Another project's agent sees its own (empty) usage, nothing of ours.
    let theirs = TestProject::create(&api, "theirs").await;
    let eve = theirs.add_agent(&api, "eve").await;
    let (status, other) = eve.get(&api, "/v1/quota").await;
    assert_eq!(status, 200);
    assert_eq!(other["usage"]["messages_today"], 0);
    assert_eq!(other["usage"]["stored_bytes"], 0);

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_message_larger_than_the_message_size_limit_is_refused() {
    let env = TestEnv::new();
    let api = api_with(
        &env,
        QuotaLimits {
            message_bytes: 100,
            ..QuotaLimits::default()
        },
    )
    .await;
    let project = TestProject::create(&api, "quota").await;
    let alice = project.add_agent(&api, "alice").await;
    let log = env.log().await;
    let before = log.last_seq().await.unwrap();

    let big = alice.message(&project, None, None, &"x".repeat(200));
    let (status, body) = alice.post(&api, &big).await;
    let message = refused(status, &body, "message_bytes");
    assert!(message.contains("limit is 100"), "{message}");
    assert!(message.contains("does not reset"), "{message}");
    assert_eq!(log.last_seq().await.unwrap(), before, "nothing appended");
    alice.send(&api, &project, None, None, "small").await;

    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn the_stored_bytes_limit_refuses_what_would_go_beyond_it() {
    let env = TestEnv::new();
    let api = api_with(
        &env,
        QuotaLimits {
            stored_bytes: 300,
            ..QuotaLimits::default()
        },
    )
    .await;
    let project = TestProject::create(&api, "quota").await;
    let alice = project.add_agent(&api, "alice").await;

    let body = "y".repeat(100);
    let mut accepted = 0;
    let refusal = loop {
        let event = alice.message(&project, None, None, &body);
        let (status, answer) = alice.post(&api, &event).await;
        if status != 201 {
            break (status, answer);
        }
        accepted += 1;
        assert!(accepted < 10, "the stored-bytes limit never refused");
    };
    assert_eq!(accepted, 2, "two messages of ~116 sealed bytes fit in 300");
    let message = refused(refusal.0, &refusal.1, "stored_bytes");
    assert!(message.contains("limit is 300"), "{message}");
    let (_, quota) = alice.get(&api, "/v1/quota").await;
    let stored = quota["usage"]["stored_bytes"].as_u64().unwrap();
    assert!(stored > 200 && stored <= 300, "{quota}");

    api.stop().await;
    env.cleanup().await;
}

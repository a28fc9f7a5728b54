//! A running API serves its OpenAPI document at `/v1/openapi.json` without a token, the
//! document is the checked-in `schemas/openapi.json`, every operation in it is a route
//! the server answers (with the auth it says), and real answers validate against the
//! schemas it gives for them.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use nexysync_domain::ids::{EventId, ProjectId};
use nexysync_tests::{json_of, TestApi, TestEnv, TestProject};
use serde_json::{json, Value};

fn checked_in() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/openapi.json");
    std::fs::read_to_string(path).unwrap()
}

async fn fetch_document(api: &TestApi) -> (String, Value) {
    let response = api
        .http
        .get(format!("{}/v1/openapi.json", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap();
    (text, value)
}

/// The schema the document gives for `method path` answering `status` (its `default`
/// answer for a status it does not list).
fn answer_schema(doc: &Value, method: &str, path: &str, status: u16) -> Value {
    let responses = &doc["paths"][path][method]["responses"];
    assert!(
        responses.is_object(),
        "{method} {path} is not in the document"
    );
    let response = match &responses[status.to_string()] {
        Value::Null => &responses["default"],
        listed => listed,
    };
    let schema = response["content"]["application/json"]["schema"].clone();
    assert!(
        schema.is_object(),
        "{method} {path} {status}: no JSON answer in the document"
    );
    schema
}

/// Checks `body` against the document's schema for that answer; `$ref`s resolve in the
/// document's components.
fn assert_answer(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let mut root = answer_schema(doc, method, path, status);
    root["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap();
    let problems: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        problems.is_empty(),
        "{method} {path} {status} does not match the document: {problems:?}\n{body}"
    );
}

/// Checks an SSE frame's `data` against the document's schema for that event name.
fn assert_sse_data(doc: &Value, event: &str, data: &Value) {
    let schema = &doc["paths"]["/v1/stream"]["get"]["responses"]["200"]["content"]
        ["text/event-stream"]["schema"]["x-sse-data"][event];
    assert!(schema.is_object(), "no schema for SSE event {event}");
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::new(&root).unwrap();
    let problems: Vec<String> = validator.iter_errors(data).map(|e| e.to_string()).collect();
    assert!(problems.is_empty(), "SSE {event}: {problems:?}\n{data}");
}

/// The path with each `{parameter}` replaced by a well-formed value.
fn concrete(path: &str) -> String {
    path.replace("{project}", &ProjectId::generate().to_string())
        .replace("{id}", &EventId::generate().to_string())
        .replace("{key_ix}", &"0".repeat(32))
}

#[tokio::test]
async fn the_api_serves_the_checked_in_document_and_answers_as_it_says() {
    let env = TestEnv::new();
    let api = env.spawn_api().await;

    let (text, doc) = fetch_document(&api).await;
    assert!(
        text == checked_in(),
        "the served document differs from schemas/openapi.json: run `make schemas`"
    );

    // Every documented operation is a route of the server, with the auth it documents:
    // a public one answers, one that takes a token refuses none in the error shape (the
    // router's fallback would say `not_found`, a wrong method 405).
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let url = format!("{}{}", api.url, concrete(path));
            let request = match method.as_str() {
                "get" => api.http.get(&url),
                "post" => api.http.post(&url).json(&json!({})),
                "put" => api.http.put(&url).json(&json!({})),
                other => panic!("{other} {path}: a method this test does not know"),
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let public = operation["security"].as_array().unwrap().is_empty();
            if public {
                assert_eq!(status, 200, "{method} {path}");
                if path != "/v1/openapi.json" {
                    let body: Value = response.json().await.unwrap();
                    assert_answer(&doc, method, path, status, &body);
                }
            } else {
                let (status, body) = json_of(response).await.unwrap();
                assert_eq!(status, 401, "{method} {path} without a token: {body}");
                assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
                assert_answer(&doc, method, path, status, &body);
            }
        }
    }
    assert!(operations >= 30, "only {operations} operations documented");

    // Real answers, against the document's schemas.
    let project = TestProject::create(&api, "openapi").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;

    let event = alice.message(&project, Some(&bob), None, "hello");
    let (status, body) = alice.post(&api, &event).await;
    assert_eq!(status, 201, "{body}");
    assert_answer(&doc, "post", "/v1/messages", status, &body);
    let (status, body) = alice.post(&api, &event).await;
    assert_eq!(status, 200, "a retry: {body}");
    assert_answer(&doc, "post", "/v1/messages", status, &body);
    let seq = body["seq"].as_u64().unwrap();

    let (status, body) = bob.get(&api, &format!("/v1/messages?min_seq={seq}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    assert_answer(&doc, "get", "/v1/messages", status, &body);
    let (status, body) = bob
        .get(&api, &format!("/v1/messages/{}?min_seq={seq}", event.id))
        .await;
    assert_answer(&doc, "get", "/v1/messages/{id}", status, &body);
    let (status, body) = bob
        .get(&api, &format!("/v1/messages/{}/thread", event.id))
        .await;
    assert_answer(&doc, "get", "/v1/messages/{id}/thread", status, &body);

    for path in ["/v1/whoami", "/v1/agents", "/v1/presence", "/v1/quota"] {
        let (status, body) = bob.get(&api, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_answer(&doc, "get", path, status, &body);
    }

    let set = alice.kv_set(&project, "colour", "blue", None, None);
    let (status, body) = alice.kv_write(&api, &set).await;
    assert_eq!(status, 201, "{body}");
    assert_answer(&doc, "put", "/v1/kv", status, &body);
    let (status, body) = alice
        .get(&api, &format!("/v1/kv?min_seq={}", body["seq"]))
        .await;
    assert_eq!(body["entries"].as_array().unwrap().len(), 1, "{body}");
    assert_answer(&doc, "get", "/v1/kv", status, &body);

    let shared = alice.ref_shared(&project, None, "src/lib.rs", (1, 3), "fn main() {}");
    let (status, body) = alice.share_ref(&api, &shared).await;
    assert_answer(&doc, "post", "/v1/refs", status, &body);
    let (status, body) = bob
        .get(&api, &format!("/v1/refs?min_seq={}", body["seq"]))
        .await;
    assert_eq!(body["refs"].as_array().unwrap().len(), 1, "{body}");
    assert_answer(&doc, "get", "/v1/refs", status, &body);

    // The stream's frames: the backlog (bob's message), then `ready`.
    let response = api
        .http
        .get(format!("{}/v1/stream?since_seq=0", api.url))
        .bearer_auth(bob.token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut frames = Box::pin(response.bytes_stream().eventsource());
    let mut names = Vec::new();
    while names.last().map(String::as_str) != Some("ready") {
        let frame = tokio::time::timeout(Duration::from_secs(10), frames.next())
            .await
            .expect("a frame within the deadline")
            .expect("the stream stays open")
            .expect("a readable frame");
        let data: Value = serde_json::from_str(&frame.data).unwrap();
        assert_sse_data(&doc, &frame.event, &data);
        names.push(frame.event);
    }
    assert_eq!(names, ["new_message", "ready"]);
    drop(frames);

    // Errors: the one shape, under each operation's `default` answer.
    let (status, body) = bob
        .get(&api, &format!("/v1/messages/{}", EventId::generate()))
        .await;
    assert_eq!(status, 404);
    assert_answer(&doc, "get", "/v1/messages/{id}", status, &body);
    let (status, body) = bob.get(&api, "/v1/messages/not-an-id").await;
    assert_eq!(status, 400);
    assert_answer(&doc, "get", "/v1/messages/{id}", status, &body);
    let response = api
        .http
        .post(format!("{}/v1/messages", api.url))
        .bearer_auth(alice.token.expose_secret())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await.unwrap();
    assert_eq!(status, 400);
    assert_answer(&doc, "post", "/v1/messages", status, &body);

    // And the schemas are not so loose that anything passes.
    let validator = {
        let mut root = answer_schema(&doc, "post", "/v1/messages", 201);
        root["components"] = doc["components"].clone();
        jsonschema::draft202012::new(&root).unwrap()
    };
    assert!(!validator.is_valid(&json!({ "id": "x", "seq": 1, "duplicate": false })));
    assert!(!validator.is_valid(&json!({ "error": { "code": "x", "message": "y" } })));

    api.stop().await;
    env.cleanup().await;
}

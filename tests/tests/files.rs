//! Shared files through the real API and a real CDN over HTTP: declare, upload, commit,
//! list, download, delete; every bad input of the issue (expired, tampered, wrong-method
//! and other-project URLs, oversize bodies, traversal in paths, uploads cut off halfway,
//! downloads of deleted files, two deletes at once, the quota) answered with a clear
//! error, nothing lost, nothing leaked.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use nexysync_domain::event::{fields, Envelope, EventBody};
use nexysync_domain::ids::{EventId, Seq};
use nexysync_tests::files::upload;
use nexysync_tests::{eventually, postgres_server_url, TestEnv, TestProject};
use sha2::Digest as _;
use tokio::io::AsyncWriteExt;

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

/// Every event of the environment's log, as stored.
async fn log_events(env: &TestEnv) -> Vec<nexysync_log::RawEvent> {
    let log = env.log().await;
    let last = log.last_seq().await.unwrap();
    if last == 0 {
        return Vec::new();
    }
    let mut stream = log.read_all(Seq(0)).await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        let event = event.unwrap();
        let seq = event.seq.0;
        events.push(event);
        if seq >= last {
            break;
        }
    }
    events
}

async fn kinds_in_log(env: &TestEnv) -> Vec<String> {
    log_events(env)
        .await
        .iter()
        .map(|e| e.envelope().unwrap().body.kind().as_str().to_owned())
        .collect()
}

/// Rows of `pending_uploads`: uploads not committed, and blobs queued for the sweeper.
async fn pending_uploads(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pending_uploads")
        .fetch_one(pool)
        .await
        .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn download(http: &reqwest::Client, url: &str) -> (u16, Vec<u8>) {
    let answer = http.get(url).send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn a_20_mib_file_round_trips_and_neither_its_name_nor_its_bytes_are_stored_in_clear() {
    let env = TestEnv::new();
    let (api, cdn) = env.spawn_api_and_cdn().await;
    let project = TestProject::create(&api, "files").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;

    let name_canary = "name-canary-5d1e.txt";
    let content_canary = b"content-canary-91ab7";
    let mut data: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    data[5_000_000..5_000_000 + content_canary.len()].copy_from_slice(content_canary);
    let file = alice.seal_file(&project, None, name_canary, &data);
    let appended = alice.share_file(&api, &file).await;
    let seq = appended["seq"].as_u64().unwrap();

    let (status, page) = bob.get(&api, &format!("/v1/files?min_seq={seq}")).await;
    assert_eq!(status, 200, "{page}");
    let listed = page["files"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{page}");
    let listed: Envelope = serde_json::from_value(listed[0]["event"].clone()).unwrap();
    assert_eq!((listed.id, listed.sig), (file.id(), file.event.sig));
    let name = listed.open(&project.keys(), fields::NAME).unwrap().unwrap();
    assert_eq!(name, name_canary.as_bytes());

    let (status, got) = bob.get(&api, &format!("/v1/files/{}", file.id())).await;
    assert_eq!(status, 200, "{got}");
    let (status, blob) = download(&api.http, got["download_url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(blob, file.ciphertext);
    assert_eq!(bob.open_file(&project, file.id(), &blob).unwrap(), data);

    // A retried commit is answered with the original, not a second event.
    let (status, again) = alice.commit_file(&api, file.id()).await;
    assert_eq!((status, &again["seq"]), (200, &appended["seq"]), "{again}");
    assert_eq!(
        kinds_in_log(&env)
            .await
            .iter()
            .filter(|k| *k == "file_shared")
            .count(),
        1
    );

    let dump = tokio::process::Command::new("pg_dump")
        .arg(format!("{}/{}", postgres_server_url(), env.database))
        .output()
        .await
        .expect("pg_dump runs");
    assert!(dump.status.success());
    let mut stored = vec![
        ("the blob store", cdn.all_bytes()),
        ("pg_dump", dump.stdout),
    ];
    for event in log_events(&env).await {
        stored.push(("a NATS payload", event.payload.to_vec()));
    }
    for (place, bytes) in &stored {
        assert!(
            !contains(bytes, name_canary.as_bytes()),
            "the name in {place}"
        );
        assert!(!contains(bytes, content_canary), "the content in {place}");
    }
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn the_recipient_is_woken_with_new_file_and_others_never_see_a_direct_file() {
    let env = TestEnv::new();
    let (api, _cdn) = env.spawn_api_and_cdn().await;
    let project = TestProject::create(&api, "push").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let carol = project.add_agent(&api, "carol").await;

    let response = api
        .http
        .get(format!("{}/v1/stream", api.url))
        .bearer_auth(bob.token.expose_secret())
        .send()
        .await
        .unwrap();
    let mut events = response.bytes_stream().eventsource();
    let ready = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ready.event, "ready");

    let file = alice.seal_file(&project, Some(&bob), "for-bob.txt", b"hello bob");
    let appended = alice.share_file(&api, &file).await;
    let pushed = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pushed.event, "new_file");
    let data: serde_json::Value = serde_json::from_str(&pushed.data).unwrap();
    assert_eq!(data["event"]["id"], file.id().to_string());

    let seq = appended["seq"].as_u64().unwrap();
    let (_, page) = carol.get(&api, &format!("/v1/files?min_seq={seq}")).await;
    assert_eq!(page["files"].as_array().unwrap().len(), 0, "{page}");
    let (status, body) = carol.get(&api, &format!("/v1/files/{}", file.id())).await;
    assert_error(status, &body, 404, "file_not_found");
    let (status, body) = carol
        .post_json(&api, "/v1/files/delete", &carol.file_deleted(file.id()))
        .await;
    assert_error(status, &body, 404, "file_not_found");

    // An agent of another project learns nothing either.
    let other = TestProject::create(&api, "other").await;
    let mallory = other.add_agent(&api, "mallory").await;
    let (status, body) = mallory.get(&api, &format!("/v1/files/{}", file.id())).await;
    assert_error(status, &body, 404, "file_not_found");
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn signed_urls_expired_tampered_of_another_method_or_another_project_are_refused() {
    let env = TestEnv::new();
    let cdn = env.spawn_cdn().await;
    let mut settings = env.settings_with_cdn(&cdn);
    settings.files.download_url_ttl = Duration::from_secs(1);
    let api = env.spawn_api_with(settings).await;
    let project = TestProject::create(&api, "urls").await;
    let alice = project.add_agent(&api, "alice").await;
    let file = alice.seal_file(&project, None, "a.txt", b"some bytes");
    alice.share_file(&api, &file).await;
    let other = alice.seal_file(&project, None, "b.txt", b"other bytes");
    alice.share_file(&api, &other).await;

    let (_, got) = alice.get(&api, &format!("/v1/files/{}", file.id())).await;
    let url = got["download_url"].as_str().unwrap().to_owned();
    let http = &api.http;

    let tampered = url.replace("sig=", "sig=0");
    let answer = http.get(&tampered).send().await.unwrap();
    let (status, body) = nexysync_tests::json_of(answer).await.unwrap();
    assert_error(status, &body, 403, "bad_signature");

    // The download URL neither deletes nor uploads.
    for request in [http.delete(&url), http.put(&url).body("x")] {
        let (status, body) = nexysync_tests::json_of(request.send().await.unwrap())
            .await
            .unwrap();
        assert_error(status, &body, 403, "bad_signature");
    }
    // Pointed at another file or another project, it reaches nothing.
    let swapped = url.replace(&file.id().to_string(), &other.id().to_string());
    let (status, body) = nexysync_tests::json_of(http.get(&swapped).send().await.unwrap())
        .await
        .unwrap();
    assert_error(status, &body, 403, "bad_signature");
    let elsewhere = url.replace(
        &project.id.to_string(),
        &nexysync_domain::ids::ProjectId::generate().to_string(),
    );
    let (status, body) = nexysync_tests::json_of(http.get(&elsewhere).send().await.unwrap())
        .await
        .unwrap();
    assert_error(status, &body, 403, "bad_signature");

    let (status, blob) = download(http, &url).await;
    assert_eq!((status, blob), (200, file.ciphertext.clone()));
    let expires_at_ms = got["expires_at_ms"].as_i64().unwrap();
    eventually("the URL to expire", Duration::from_secs(5), || async {
        let now_ms = chrono_now_ms();
        (now_ms > expires_at_ms + 1000).then_some(())
    })
    .await;
    let (status, body) = nexysync_tests::json_of(http.get(&url).send().await.unwrap())
        .await
        .unwrap();
    assert_error(status, &body, 403, "url_expired");
    api.stop().await;
    env.cleanup().await;
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn an_oversize_or_altered_upload_is_refused_and_the_file_is_never_shared() {
    let env = TestEnv::new();
    let (api, cdn) = env.spawn_api_and_cdn().await;
    let project = TestProject::create(&api, "oversize").await;
    let alice = project.add_agent(&api, "alice").await;
    let file = alice.seal_file(&project, None, "a.bin", &[1u8; 200_000]);
    let (status, ticket) = alice.declare_file(&api, &file).await;
    assert_eq!(status, 201, "{ticket}");

    let mut bigger = file.ciphertext.clone();
    bigger.extend_from_slice(b"one byte too many");
    let (status, body) = upload(&api, &ticket, bigger).await;
    assert_error(status, &body, 413, "payload_too_large");
    let mut altered = file.ciphertext.clone();
    altered[1000] ^= 1;
    let (status, body) = upload(&api, &ticket, altered).await;
    assert_error(status, &body, 422, "digest_mismatch");

    let (status, body) = alice.commit_file(&api, file.id()).await;
    assert_error(status, &body, 409, "upload_incomplete");
    assert!(cdn.files_on_disk().is_empty(), "{:?}", cdn.files_on_disk());
    assert!(!kinds_in_log(&env).await.contains(&"file_shared".to_owned()));

    // The right bytes are still accepted.
    let (status, body) = upload(&api, &ticket, file.ciphertext.clone()).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = alice.commit_file(&api, file.id()).await;
    assert_eq!(status, 201, "{body}");
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn an_upload_cut_off_halfway_is_never_shared_and_nothing_of_it_stays() {
    let env = TestEnv::new();
    let cdn = env.spawn_cdn().await;
    let mut settings = env.settings_with_cdn(&cdn);
    settings.files.upload_url_ttl = Duration::from_secs(1);
    settings.files.sweep_interval = Duration::from_millis(200);
    let api = env.spawn_api_with(settings).await;
    let project = TestProject::create(&api, "cutoff").await;
    let alice = project.add_agent(&api, "alice").await;

    // One upload cut off halfway, one uploaded whole but never committed.
    let cut = alice.seal_file(&project, None, "cut.bin", &vec![3u8; 3_000_000]);
    let (_, ticket) = alice.declare_file(&api, &cut).await;
    let url = reqwest::Url::parse(ticket["upload_url"].as_str().unwrap()).unwrap();
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT {}?{} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n\r\n",
        url.path(),
        url.query().unwrap(),
        cut.ciphertext.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&cut.ciphertext[..1_500_000]).await.unwrap();
    tcp.flush().await.unwrap();
    eventually("the upload to begin", Duration::from_secs(10), || async {
        (!cdn.files_on_disk().is_empty()).then_some(())
    })
    .await;
    drop(tcp);
    eventually(
        "the cut-off upload discarded",
        Duration::from_secs(10),
        || async { cdn.files_on_disk().is_empty().then_some(()) },
    )
    .await;

    let abandoned = alice.seal_file(&project, None, "abandoned.bin", b"uploaded, not committed");
    let (_, ticket) = alice.declare_file(&api, &abandoned).await;
    let (status, _) = upload(&api, &ticket, abandoned.ciphertext.clone()).await;
    assert_eq!(status, 201);

    let (status, body) = alice.commit_file(&api, cut.id()).await;
    // Before the URL expires the upload is incomplete; after, it is expired.
    assert!(status == 409 || status == 410, "{body}");
    let pool = env.pool().await;
    eventually(
        "the expired uploads swept",
        Duration::from_secs(20),
        || async {
            let pending = pending_uploads(&pool).await;
            (pending == 0 && cdn.files_on_disk().is_empty()).then_some(())
        },
    )
    .await;
    for id in [cut.id(), abandoned.id()] {
        let (status, body) = alice.commit_file(&api, id).await;
        assert_error(status, &body, 404, "upload_not_found");
    }
    assert!(!kinds_in_log(&env).await.contains(&"file_shared".to_owned()));
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_deleted_file_cannot_be_downloaded_and_its_blob_is_gone() {
    let env = TestEnv::new();
    let (api, cdn) = env.spawn_api_and_cdn().await;
    let project = TestProject::create(&api, "deleted").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let file = alice.seal_file(&project, None, "gone.txt", b"soon gone");
    alice.share_file(&api, &file).await;
    let (_, got) = bob.get(&api, &format!("/v1/files/{}", file.id())).await;
    let old_url = got["download_url"].as_str().unwrap().to_owned();

    let (status, deleted) = bob
        .post_json(&api, "/v1/files/delete", &bob.file_deleted(file.id()))
        .await;
    assert_eq!(status, 201, "{deleted}");
    let seq = deleted["seq"].as_u64().unwrap();
    let (status, body) = alice
        .get(&api, &format!("/v1/files/{}?min_seq={seq}", file.id()))
        .await;
    assert_error(status, &body, 404, "file_not_found");
    let (_, page) = alice.get(&api, &format!("/v1/files?min_seq={seq}")).await;
    assert_eq!(page["files"].as_array().unwrap().len(), 0, "{page}");
    // A URL signed before the delete finds nothing any more.
    let (status, body) = nexysync_tests::json_of(api.http.get(&old_url).send().await.unwrap())
        .await
        .unwrap();
    assert_error(status, &body, 404, "blob_not_found");
    assert!(cdn.files_on_disk().is_empty(), "{:?}", cdn.files_on_disk());
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn an_upload_url_stores_once_so_a_shared_file_keeps_the_bytes_the_log_names() {
    let env = TestEnv::new();
    let (api, _cdn) = env.spawn_api_and_cdn().await;
    let project = TestProject::create(&api, "once").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let file = alice.seal_file(&project, None, "kept.txt", b"what was shared");
    let (status, ticket) = alice.declare_file(&api, &file).await;
    assert_eq!(status, 201, "{ticket}");
    let (status, uploaded) = upload(&api, &ticket, file.ciphertext.clone()).await;
    assert_eq!(status, 201, "{uploaded}");
    let (status, appended) = alice.commit_file(&api, file.id()).await;
    assert_eq!(status, 201, "{appended}");

    // The URL is still within its lifetime: other bytes under it are refused.
    let swap = alice.seal_file(&project, None, "kept.txt", b"something else");
    let (status, body) = upload(&api, &ticket, swap.ciphertext.clone()).await;
    assert_error(status, &body, 409, "blob_exists");
    let (_, got) = bob.get(&api, &format!("/v1/files/{}", file.id())).await;
    let (status, blob) = download(&api.http, got["download_url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(blob, file.ciphertext, "the bytes the log's digest names");
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_blob_the_cdn_could_not_remove_at_delete_time_is_swept_once_it_is_back() {
    let env = TestEnv::new();
    let cdn = env.spawn_cdn().await;
    let mut settings = env.settings_with_cdn(&cdn);
    // The sweeper waits for the file's upload URLs to expire.
    settings.files.upload_url_ttl = Duration::from_secs(1);
    settings.files.sweep_interval = Duration::from_millis(200);
    let api = env.spawn_api_with(settings).await;
    let project = TestProject::create(&api, "cdn-down").await;
    let alice = project.add_agent(&api, "alice").await;
    let file = alice.seal_file(&project, None, "left.txt", b"left behind for a while");
    alice.share_file(&api, &file).await;

    let (dir, secret, url) = cdn.stop().await;
    let (status, deleted) = alice
        .post_json(&api, "/v1/files/delete", &alice.file_deleted(file.id()))
        .await;
    assert_eq!(status, 201, "the delete is the fact, CDN or not: {deleted}");
    let pool = env.pool().await;
    let queued = pending_uploads(&pool).await;
    assert_eq!(queued, 1, "the removal is left to the sweeper");
    let blob = dir
        .path()
        .join("blobs")
        .join(project.id.to_string())
        .join(file.id().to_string());
    assert!(blob.exists(), "the CDN was down: the blob is still there");
    let listen = url.trim_start_matches("http://").to_owned();
    let cdn = TestEnv::spawn_cdn_in(dir, secret, &listen).await;
    eventually("the blob swept", Duration::from_secs(20), || async {
        cdn.files_on_disk().is_empty().then_some(())
    })
    .await;
    eventually("the removal forgotten", Duration::from_secs(20), || async {
        let left = pending_uploads(&pool).await;
        (left == 0).then_some(())
    })
    .await;
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_blob_put_back_under_an_upload_url_after_its_file_was_deleted_is_swept() {
    let env = TestEnv::new();
    let cdn = env.spawn_cdn().await;
    let mut settings = env.settings_with_cdn(&cdn);
    settings.files.upload_url_ttl = Duration::from_secs(5);
    settings.files.sweep_interval = Duration::from_millis(200);
    let api = env.spawn_api_with(settings).await;
    let project = TestProject::create(&api, "put-back").await;
    let alice = project.add_agent(&api, "alice").await;
    let file = alice.seal_file(&project, None, "back.txt", b"deleted, then put back");
    let (status, ticket) = alice.declare_file(&api, &file).await;
    assert_eq!(status, 201, "{ticket}");
    let (status, body) = upload(&api, &ticket, file.ciphertext.clone()).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = alice.commit_file(&api, file.id()).await;
    assert_eq!(status, 201, "{body}");
    let (status, deleted) = alice
        .post_json(&api, "/v1/files/delete", &alice.file_deleted(file.id()))
        .await;
    assert_eq!(status, 201, "{deleted}");
    assert!(cdn.files_on_disk().is_empty(), "{:?}", cdn.files_on_disk());
    // The blob queued for the sweeper is no upload to commit.
    let (status, body) = alice.commit_file(&api, file.id()).await;
    assert_error(status, &body, 404, "upload_not_found");

    // The URL is still within its lifetime, and the CDN keeps no state: it stores the
    // blob again. Nothing names it; it must not stay.
    let (status, body) = upload(&api, &ticket, file.ciphertext.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(cdn.files_on_disk().len(), 1);
    let pool = env.pool().await;
    eventually(
        "the blob put back swept once its URL expired",
        Duration::from_secs(30),
        || async {
            let left = pending_uploads(&pool).await;
            (left == 0 && cdn.files_on_disk().is_empty()).then_some(())
        },
    )
    .await;
    let (status, body) = upload(&api, &ticket, file.ciphertext.clone()).await;
    assert_error(status, &body, 403, "url_expired");
    assert!(cdn.files_on_disk().is_empty());
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn two_agents_deleting_one_file_at_once_make_one_deletion_and_one_clear_error() {
    let env = TestEnv::new();
    let (api, _cdn) = env.spawn_api_and_cdn().await;
    let project = TestProject::create(&api, "race").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let file = alice.seal_file(&project, None, "contested.txt", b"mine or yours");
    alice.share_file(&api, &file).await;

    let by_alice = alice.file_deleted(file.id());
    let by_bob = bob.file_deleted(file.id());
    let (first, second) = tokio::join!(
        alice.post_json(&api, "/v1/files/delete", &by_alice),
        bob.post_json(&api, "/v1/files/delete", &by_bob),
    );
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [201, 404], "{first:?} {second:?}");
    let refused = if first.0 == 404 { &first.1 } else { &second.1 };
    assert_error(404, refused, 404, "file_not_found");
    let deletions = log_events(&env)
        .await
        .iter()
        .filter(|e| matches!(e.envelope().unwrap().body, EventBody::FileDeleted(_)))
        .count();
    assert_eq!(deletions, 1);
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn bad_declarations_ids_and_paths_are_clear_errors_and_nothing_is_appended() {
    let env = TestEnv::new();
    let cdn = env.spawn_cdn().await;
    let mut settings = env.settings_with_cdn(&cdn);
    settings.files.quota_bytes = 1_000_000;
    let api = env.spawn_api_with(settings).await;
    let project = TestProject::create(&api, "bad").await;
    let alice = project.add_agent(&api, "alice").await;
    let before = kinds_in_log(&env).await.len();

    // Over the project's quota: refused on declare.
    let big = alice.seal_file(&project, None, "big.bin", &vec![0u8; 1_200_000]);
    let (status, body) = alice.declare_file(&api, &big).await;
    assert_error(status, &body, 413, "file_quota_exceeded");
    // Two declarations that together pass it: the second is refused.
    let first = alice.seal_file(&project, None, "one.bin", &vec![0u8; 600_000]);
    let (status, _) = alice.declare_file(&api, &first).await;
    assert_eq!(status, 201);
    let second = alice.seal_file(&project, None, "two.bin", &vec![0u8; 600_000]);
    let (status, body) = alice.declare_file(&api, &second).await;
    assert_error(status, &body, 413, "file_quota_exceeded");

    // Sizes that do not agree with each other: a forged change breaks the signature;
    // signed as it is, the metadata itself is refused.
    let mut lying = alice.seal_file(&project, None, "lie.bin", b"abc");
    if let EventBody::FileShared(shared) = &mut lying.event.body {
        shared.size = 4;
    }
    let (status, body) = alice.declare_file(&api, &lying).await;
    assert_error(status, &body, 422, "bad_signature");
    let event = lying.event.clone();
    lying.event = nexysync_domain::event::Draft {
        id: event.id,
        project: event.project,
        actor: event.actor,
        at: event.at,
        body: event.body,
        sealed: event.sealed,
    }
    .sign(&alice.key);
    let (status, body) = alice.declare_file(&api, &lying).await;
    assert_error(status, &body, 422, "invalid_file_metadata");

    // Another kind of event at the file endpoints.
    let message = alice.message(&project, None, None, "not a file");
    let (status, body) = alice.post_json(&api, "/v1/files", &message).await;
    assert_error(status, &body, 400, "invalid_request");

    // Ids that are not ids, and traversal in the path.
    for path in [
        "/v1/files/not-an-id",
        "/v1/files/..%2F..%2Fetc%2Fpasswd",
        "/v1/files/%2e%2e",
    ] {
        let (status, body) = alice.get(&api, path).await;
        assert!(status == 400 || status == 404, "{path}: {status} {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    let (status, body) = alice.commit_file(&api, EventId::generate()).await;
    assert_error(status, &body, 404, "upload_not_found");
    let (status, body) = alice
        .post_json(
            &api,
            "/v1/files/delete",
            &alice.file_deleted(EventId::generate()),
        )
        .await;
    assert_error(status, &body, 404, "file_not_found");
    assert_eq!(kinds_in_log(&env).await.len(), before, "nothing appended");
    api.stop().await;
    env.cleanup().await;
}

/// The commit body of a receipt-flow upload: the CDN's answer and the agent's signature
/// of the declared event completed with the measured digest.
fn receipt_commit(
    agent: &nexysync_tests::TestAgent,
    file: &nexysync_tests::files::SealedFile,
    stored: &serde_json::Value,
) -> serde_json::Value {
    let digest = stored["sha256"].as_str().unwrap();
    let sig = agent.signature_with_digest(&file.event, digest);
    serde_json::json!({ "stored": stored, "sig": sig })
}

#[tokio::test]
async fn a_file_declared_without_its_digest_is_shared_with_the_digest_the_cdn_measured() {
    let env = TestEnv::new();
    let (api, cdn) = env.spawn_api_and_cdn().await;
    let project = TestProject::create(&api, "receipt").await;
    let alice = project.add_agent(&api, "alice").await;
    let bob = project.add_agent(&api, "bob").await;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 239) as u8).collect();
    let file = alice.seal_file_leaving_the_digest(&project, "measured.bin", &data);

    let (status, ticket) = alice.declare_file(&api, &file).await;
    assert_eq!(status, 201, "{ticket}");
    assert!(
        !ticket["upload_url"].as_str().unwrap().contains("sha256="),
        "no digest to sign: {ticket}"
    );
    let (status, stored) = upload(&api, &ticket, file.ciphertext.clone()).await;
    assert_eq!(status, 201, "{stored}");
    let measured = hex::encode(sha2::Sha256::digest(&file.ciphertext));
    assert_eq!(stored["sha256"], measured.as_str());
    assert_eq!(stored["size"], file.ciphertext.len());

    // Without the receipt the API cannot know what was stored: refused.
    let (status, body) = alice.commit_file(&api, file.id()).await;
    assert_error(status, &body, 400, "invalid_request");
    let (status, appended) = alice
        .commit_file_with(&api, file.id(), &receipt_commit(&alice, &file, &stored))
        .await;
    assert_eq!(status, 201, "{appended}");
    // A retried commit is the same event, not a second one.
    let (status, again) = alice
        .commit_file_with(&api, file.id(), &receipt_commit(&alice, &file, &stored))
        .await;
    assert!(status == 200 || status == 201, "{again}");
    assert_eq!(again["seq"], appended["seq"], "{again}");

    let shared: Vec<Envelope> = log_events(&env)
        .await
        .iter()
        .map(|e| e.envelope().unwrap())
        .filter(|e| matches!(e.body, EventBody::FileShared(_)))
        .collect();
    assert_eq!(shared.len(), 1);
    let EventBody::FileShared(logged) = &shared[0].body else {
        unreachable!()
    };
    assert_eq!(logged.digest, measured, "the log holds the measured digest");

    let seq = appended["seq"].as_u64().unwrap();
    let (status, got) = bob
        .get(&api, &format!("/v1/files/{}?min_seq={seq}", file.id()))
        .await;
    assert_eq!(status, 200, "{got}");
    let (status, blob) = download(&api.http, got["download_url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(bob.open_file(&project, file.id(), &blob).unwrap(), data);
    let staging: Vec<_> = cdn
        .files_on_disk()
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == ".staging"))
        .collect();
    assert!(staging.is_empty(), "{staging:?}");
    api.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn forged_or_foreign_receipts_and_commits_without_an_upload_are_refused() {
    let env = TestEnv::new();
    let (api, _cdn) = env.spawn_api_and_cdn().await;
    let project = TestProject::create(&api, "forged").await;
    let alice = project.add_agent(&api, "alice").await;
    let mallory = project.add_agent(&api, "mallory").await;
    let file = alice.seal_file_leaving_the_digest(&project, "a.bin", &[7u8; 150_000]);
    let other = alice.seal_file_leaving_the_digest(&project, "b.bin", &[8u8; 150_000]);
    let (_, ticket) = alice.declare_file(&api, &file).await;
    let (_, other_ticket) = alice.declare_file(&api, &other).await;

    // A commit before any upload, with a receipt made up to look right.
    let made_up = serde_json::json!({
        "size": file.ciphertext.len(),
        "sha256": hex::encode(sha2::Sha256::digest(&file.ciphertext)),
        "receipt": "ab".repeat(32),
    });
    let (status, body) = alice
        .commit_file_with(&api, file.id(), &receipt_commit(&alice, &file, &made_up))
        .await;
    assert_error(status, &body, 409, "bad_receipt");

    // An oversize body is still refused without a declared digest.
    let mut bigger = file.ciphertext.clone();
    bigger.push(0);
    let (status, body) = upload(&api, &ticket, bigger).await;
    assert_error(status, &body, 413, "payload_too_large");

    let (status, stored) = upload(&api, &ticket, file.ciphertext.clone()).await;
    assert_eq!(status, 201, "{stored}");
    let (status, other_stored) = upload(&api, &other_ticket, other.ciphertext.clone()).await;
    assert_eq!(status, 201, "{other_stored}");

    // The receipt of another file, a receipt whose digest or size was changed, and the
    // real receipt with a signature over something else: none is appended.
    let (status, body) = alice
        .commit_file_with(
            &api,
            file.id(),
            &receipt_commit(&alice, &file, &other_stored),
        )
        .await;
    assert_error(status, &body, 409, "bad_receipt");
    let mut altered = stored.clone();
    altered["sha256"] = serde_json::json!("0f".repeat(32));
    let (status, body) = alice
        .commit_file_with(&api, file.id(), &receipt_commit(&alice, &file, &altered))
        .await;
    assert_error(status, &body, 409, "bad_receipt");
    let mut resized = stored.clone();
    resized["size"] = serde_json::json!(file.ciphertext.len() - 1);
    let (status, body) = alice
        .commit_file_with(&api, file.id(), &receipt_commit(&alice, &file, &resized))
        .await;
    assert_error(status, &body, 409, "bad_receipt");
    let declared_sig = serde_json::json!({ "stored": stored, "sig": file.event.sig });
    let (status, body) = alice.commit_file_with(&api, file.id(), &declared_sig).await;
    assert_error(status, &body, 422, "bad_signature");
    let by_mallory = receipt_commit(&mallory, &file, &stored);
    let (status, body) = alice.commit_file_with(&api, file.id(), &by_mallory).await;
    assert_error(status, &body, 422, "bad_signature");
    // Only the uploader commits.
    let (status, body) = mallory
        .commit_file_with(&api, file.id(), &receipt_commit(&alice, &file, &stored))
        .await;
    assert_error(status, &body, 404, "upload_not_found");
    let (status, body) = alice
        .commit_file_with(&api, file.id(), &serde_json::json!({"stored": 3}))
        .await;
    assert_error(status, &body, 400, "invalid_json");
    assert!(!kinds_in_log(&env).await.contains(&"file_shared".to_owned()));

    let (status, body) = alice
        .commit_file_with(&api, file.id(), &receipt_commit(&alice, &file, &stored))
        .await;
    assert_eq!(status, 201, "the genuine receipt still commits: {body}");
    api.stop().await;
    env.cleanup().await;
}

//! The CDN over real HTTP, on the local disk backend, and the object-storage path of the
//! same [`BlobStore`] through `object_store`'s in-memory backend.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use nexysync_cdn::{BlobStore, Cdn, CdnError, Settings, Storage};
use nexysync_domain::blob_url::{BlobGrant, BlobMethod, UrlSecret};
use nexysync_domain::ids::{EventId, ProjectId};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

struct Served {
    base: String,
    secret: UrlSecret,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    project: ProjectId,
}

async fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let secret = UrlSecret::generate();
    let mut settings = Settings::new(
        Storage::Disk {
            dir: dir.path().join("blobs"),
        },
        secret.clone(),
    );
    settings.listen = "127.0.0.1:0".parse().unwrap();
    let cdn = Cdn::build(settings).await.unwrap();
    let base = format!("http://{}", cdn.local_addr());
    tokio::spawn(cdn.run_until(std::future::pending()));
    Served {
        base,
        secret,
        dir,
        http: reqwest::Client::new(),
        project: ProjectId::generate(),
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Served {
    fn grant(&self, method: BlobMethod, file: EventId, body: Option<&[u8]>) -> BlobGrant {
        BlobGrant {
            method,
            project: self.project,
            file,
            expires_at: now_s() + 60,
            max_bytes: body.map_or(0, |b| b.len() as u64),
            sha256: body.map(|b| hex::encode(Sha256::digest(b))),
        }
    }

    fn url(&self, grant: &BlobGrant) -> String {
        format!("{}{}", self.base, self.secret.signed_path(grant))
    }

    async fn put(&self, file: EventId, body: &[u8]) -> reqwest::Response {
        let grant = self.grant(BlobMethod::Put, file, Some(body));
        self.http
            .put(self.url(&grant))
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, file: EventId) -> reqwest::Response {
        let grant = self.grant(BlobMethod::Get, file, None);
        self.http.get(self.url(&grant)).send().await.unwrap()
    }

    /// A raw `PUT` under `grant` of `body`, begun: its head (announcing the whole body)
    /// and the first `sent` bytes written; the rest is the caller's.
    async fn begin_put(
        &self,
        grant: &BlobGrant,
        body: &[u8],
        sent: usize,
    ) -> tokio::net::TcpStream {
        let path = self.secret.signed_path(grant);
        let addr = self.base.trim_start_matches("http://").to_owned();
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "PUT {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(&body[..sent]).await.unwrap();
        tcp.flush().await.unwrap();
        tcp
    }

    /// Waits (at most 10 s) until nothing of any upload is left on disk.
    async fn until_nothing_on_disk(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.files_on_disk().is_empty() {
            assert!(
                Instant::now() < deadline,
                "left behind: {:?}",
                self.files_on_disk()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn files_on_disk(&self) -> Vec<PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out
    }
}

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_blob_uploaded_with_a_signed_url_downloads_byte_for_byte_and_deletes() {
    let cdn = serve().await;
    let file = EventId::generate();
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(cdn.put(file, &body).await.status(), 201);
    let got = cdn.get(file).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), body);
    let head = cdn.grant(BlobMethod::Head, file, None);
    let sized = cdn.http.head(cdn.url(&head)).send().await.unwrap();
    // reqwest's content_length() is the body's (empty) length for HEAD: read the header.
    let length = sized.headers()["content-length"].to_str().unwrap();
    assert_eq!(length, body.len().to_string());
    let delete = cdn.grant(BlobMethod::Delete, file, None);
    let gone = cdn.http.delete(cdn.url(&delete)).send().await.unwrap();
    assert_eq!(gone.status(), 204);
    assert_eq!(
        error_code(cdn.get(file).await).await,
        (404, "blob_not_found".into())
    );
    assert!(cdn.files_on_disk().is_empty(), "{:?}", cdn.files_on_disk());
}

#[tokio::test]
async fn tampered_expired_and_misused_urls_are_refused() {
    let cdn = serve().await;
    let file = EventId::generate();
    assert_eq!(cdn.put(file, b"ciphertext").await.status(), 201);
    let grant = cdn.grant(BlobMethod::Get, file, None);
    let url = cdn.url(&grant);

    let tampered = url.replace("sig=", "sig=00");
    let answer = cdn.http.get(&tampered).send().await.unwrap();
    assert_eq!(error_code(answer).await, (403, "bad_signature".into()));

    let longer = url.replace("exp=", "exp=9");
    let answer = cdn.http.get(&longer).send().await.unwrap();
    assert_eq!(error_code(answer).await, (403, "bad_signature".into()));

    let expired = BlobGrant {
        expires_at: now_s() - 1,
        ..grant.clone()
    };
    let answer = cdn.http.get(cdn.url(&expired)).send().await.unwrap();
    assert_eq!(error_code(answer).await, (403, "url_expired".into()));

    // A download URL does not delete, and a URL of one project does not reach another's.
    let answer = cdn.http.delete(&url).send().await.unwrap();
    assert_eq!(error_code(answer).await, (403, "bad_signature".into()));
    let elsewhere = url.replace(&cdn.project.to_string(), &ProjectId::generate().to_string());
    let answer = cdn.http.get(&elsewhere).send().await.unwrap();
    assert_eq!(error_code(answer).await, (403, "bad_signature".into()));

    let answer = cdn.http.post(&url).send().await.unwrap();
    assert_eq!(error_code(answer).await, (405, "method_not_allowed".into()));
    let unsigned = url.split('?').next().unwrap().to_owned();
    let answer = cdn.http.get(&unsigned).send().await.unwrap();
    assert_eq!(error_code(answer).await, (400, "invalid_url".into()));
    assert_eq!(
        cdn.get(file).await.bytes().await.unwrap(),
        &b"ciphertext"[..]
    );
}

#[tokio::test]
async fn path_traversal_in_a_blob_path_reaches_nothing() {
    let cdn = serve().await;
    for path in [
        "/v1/blobs/..%2F..%2Fetc/passwd?exp=1&max=0&sig=00",
        "/v1/blobs/../../etc/passwd",
        "/v1/blobs/%2e%2e/%2e%2e?exp=1&max=0&sig=00",
    ] {
        let answer = cdn
            .http
            .get(format!("{}{path}", cdn.base))
            .send()
            .await
            .unwrap();
        let (status, _) = error_code(answer).await;
        assert!(status == 400 || status == 404, "{path}: {status}");
    }
}

#[tokio::test]
async fn an_oversize_or_mismatched_body_stores_nothing() {
    let cdn = serve().await;
    let file = EventId::generate();
    let grant = cdn.grant(BlobMethod::Put, file, Some(b"four"));
    let answer = cdn
        .http
        .put(cdn.url(&grant))
        .body(b"forty-two bytes and more".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(answer).await, (413, "payload_too_large".into()));
    // Streamed without a length: refused once the limit is passed.
    let chunks = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(b"fo".to_vec()),
        Ok(b"urty".to_vec()),
    ]);
    let answer = cdn
        .http
        .put(cdn.url(&grant))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(answer).await, (413, "payload_too_large".into()));
    let answer = cdn
        .http
        .put(cdn.url(&grant))
        .body(b"five".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(answer).await, (422, "digest_mismatch".into()));
    assert_eq!(
        error_code(cdn.get(file).await).await,
        (404, "blob_not_found".into())
    );
    assert!(cdn.files_on_disk().is_empty(), "{:?}", cdn.files_on_disk());
}

#[tokio::test]
async fn an_upload_cut_off_halfway_leaves_nothing_behind() {
    let cdn = serve().await;
    let file = EventId::generate();
    let body = vec![7u8; 1_000_000];
    let grant = cdn.grant(BlobMethod::Put, file, Some(&body));
    let tcp = cdn.begin_put(&grant, &body, 400_000).await;
    // The upload has begun: its staging file exists.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cdn.files_on_disk().is_empty() {
        assert!(Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(tcp);
    cdn.until_nothing_on_disk().await;
    assert_eq!(
        error_code(cdn.get(file).await).await,
        (404, "blob_not_found".into())
    );
}

#[tokio::test]
async fn an_upload_whole_only_after_its_url_expired_is_not_kept() {
    let cdn = serve().await;
    let file = EventId::generate();
    let body = vec![9u8; 1_000_000];
    let mut grant = cdn.grant(BlobMethod::Put, file, Some(&body));
    grant.expires_at = now_s() + 1;
    let mut tcp = cdn.begin_put(&grant, &body, 400_000).await;
    // Begun within the URL's lifetime, the rest sent after it.
    while now_s() <= grant.expires_at {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tcp.write_all(&body[400_000..]).await.unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut answer)
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("url_expired"), "{answer}");
    cdn.until_nothing_on_disk().await;
}

#[tokio::test]
async fn the_object_storage_path_stores_checks_and_streams_the_same_way() {
    let store = BlobStore::open(&Storage::Memory, 64 * 1024).unwrap();
    let body: Vec<u8> = (0..500_000u32).map(|i| (i % 241) as u8).collect();
    let digest = hex::encode(Sha256::digest(&body));
    let parts = body
        .chunks(10_000)
        .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
        .collect::<Vec<_>>();
    let stored = store
        .put(
            "p/f",
            futures::stream::iter(parts),
            body.len() as u64,
            Some(&digest),
            now_s() + 60,
        )
        .await
        .unwrap();
    assert_eq!(stored.size, body.len() as u64);
    assert_eq!(store.size("p/f").await.unwrap(), body.len() as u64);
    let blob = store.get("p/f").await.unwrap();
    let mut got = Vec::new();
    let mut bytes = blob.bytes;
    while let Some(piece) = bytes.next().await {
        got.extend_from_slice(&piece.unwrap());
    }
    assert_eq!(got, body);

    let wrong = store
        .put(
            "p/g",
            futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                b"x",
            ))]),
            10,
            Some(&digest),
            now_s() + 60,
        )
        .await;
    assert!(matches!(wrong, Err(CdnError::DigestMismatch)));
    let cut = store
        .put(
            "p/h",
            futures::stream::iter(vec![
                Ok(bytes::Bytes::from_static(b"half")),
                Err(std::io::Error::other("connection reset")),
            ]),
            10,
            None,
            now_s() + 60,
        )
        .await;
    assert!(matches!(cut, Err(CdnError::UploadInterrupted)));
    for key in ["p/g", "p/h"] {
        assert!(matches!(store.size(key).await, Err(CdnError::BlobNotFound)));
    }
    store.delete("p/f").await.unwrap();
    store.delete("p/f").await.unwrap();
    assert!(matches!(
        store.get("p/f").await,
        Err(CdnError::BlobNotFound)
    ));
}

#[tokio::test]
async fn an_upload_without_a_signed_digest_is_measured_and_answered_with_a_genuine_receipt() {
    let cdn = serve().await;
    let file = EventId::generate();
    let body: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    let grant = BlobGrant {
        sha256: None,
        ..cdn.grant(BlobMethod::Put, file, Some(&body))
    };
    let answer = cdn
        .http
        .put(cdn.url(&grant))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let stored: nexysync_domain::wire::StoredBlob = answer.json().await.unwrap();
    assert_eq!(stored.size, body.len() as u64);
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(&body)));
    let receipt = nexysync_domain::blob_url::UploadReceipt {
        project: cdn.project,
        file,
        size: stored.size,
        sha256: stored.sha256.clone(),
    };
    assert!(cdn.secret.receipt_is_genuine(&receipt, &stored.receipt));
    let elsewhere = nexysync_domain::blob_url::UploadReceipt {
        file: EventId::generate(),
        ..receipt
    };
    assert!(!cdn.secret.receipt_is_genuine(&elsewhere, &stored.receipt));
    // Stored under its name, and no staging file is left.
    assert_eq!(cdn.get(file).await.bytes().await.unwrap(), body);
    let on_disk = cdn.files_on_disk();
    assert_eq!(on_disk.len(), 1, "{on_disk:?}");
    assert!(
        on_disk[0].ends_with(format!("{}/{file}", cdn.project)),
        "{on_disk:?}"
    );
}

//! Files as the MCP client shares them: the bytes encrypted in chunks under the project
//! key, the name sealed, the ciphertext uploaded to a real CDN with the URL the API
//! signed, then committed (with the digest declared up front, or measured by the CDN and
//! brought back in its receipt). Also the CDN of a test environment.

use nexysync_cdn::{Cdn, Settings as CdnSettings, Storage};
use nexysync_domain::blob_url::UrlSecret;
use nexysync_domain::crypto::file_stream::{
    ciphertext_len, FileDecryptor, FileEncryptor, FILE_CHUNK_SIZE,
};
use nexysync_domain::crypto::Signature;
use nexysync_domain::event::{fields, Actor, Draft, Envelope, EventBody, FileDeleted, FileShared};
use nexysync_domain::ids::EventId;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::{json_of, TestAgent, TestApi, TestEnv, TestProject};

/// A CDN on local disk in a temporary directory, on a free port.
#[derive(Debug)]
pub struct TestCdn {
    pub url: String,
    pub secret: UrlSecret,
    pub dir: tempfile::TempDir,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestCdn {
    /// Stops the CDN and waits until it no longer listens; the blob directory is kept
    /// (returned with the secret, to start it again).
    pub async fn stop(self) -> (tempfile::TempDir, UrlSecret, String) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.task).await;
        (self.dir, self.secret, self.url)
    }

    /// Every file the blob store holds (staging files of unfinished uploads included).
    pub fn files_on_disk(&self) -> Vec<std::path::PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
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

    /// Every byte the blob store holds, concatenated.
    pub fn all_bytes(&self) -> Vec<u8> {
        self.files_on_disk()
            .iter()
            .flat_map(|p| std::fs::read(p).unwrap_or_default())
            .collect()
    }
}

impl TestEnv {
    /// Starts a CDN in this process.
    pub async fn spawn_cdn(&self) -> TestCdn {
        let dir = tempfile::tempdir().expect("temporary directory");
        Self::spawn_cdn_in(dir, UrlSecret::generate(), "127.0.0.1:0").await
    }

    /// Starts a CDN on `listen` over the blob directory `dir` (to restart one).
    pub async fn spawn_cdn_in(dir: tempfile::TempDir, secret: UrlSecret, listen: &str) -> TestCdn {
        let mut settings = CdnSettings::new(
            Storage::Disk {
                dir: dir.path().join("blobs"),
            },
            secret.clone(),
        );
        settings.listen = listen.parse().expect("address");
        let cdn = Cdn::build(settings).await.expect("the CDN starts");
        let url = format!("http://{}", cdn.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(cdn.run_until(async move {
            let _ = stopped.await;
        }));
        TestCdn {
            url,
            secret,
            dir,
            stop,
            task,
        }
    }

    /// API settings for this environment with files served by `cdn`.
    pub fn settings_with_cdn(&self, cdn: &TestCdn) -> nexysync_api::Settings {
        let mut settings = self.settings();
        settings.files.cdn_url = cdn.url.clone();
        settings.files.cdn_internal_url = cdn.url.clone();
        settings.files.url_secret = cdn.secret.clone();
        settings
    }

    /// An API and a CDN that share a URL secret.
    pub async fn spawn_api_and_cdn(&self) -> (TestApi, TestCdn) {
        let cdn = self.spawn_cdn().await;
        let api = self.spawn_api_with(self.settings_with_cdn(&cdn)).await;
        (api, cdn)
    }
}

/// A file ready to declare: its signed `file_shared` and its ciphertext.
#[derive(Debug, Clone)]
pub struct SealedFile {
    pub event: Envelope,
    pub ciphertext: Vec<u8>,
}

impl SealedFile {
    pub fn id(&self) -> EventId {
        self.event.id
    }
}

impl TestAgent {
    /// Encrypts `data` as file `name` for `to` (everyone when `None`) and signs its
    /// `file_shared`.
    pub fn seal_file(
        &self,
        project: &TestProject,
        to: Option<&TestAgent>,
        name: &str,
        data: &[u8],
    ) -> SealedFile {
        let keys = project.keys();
        let mut draft = Draft::new(
            self.project,
            Actor::Agent(self.id),
            EventBody::FileShared(FileShared {
                to: to.map(|a| a.id),
                size: data.len() as u64,
                ciphertext_size: ciphertext_len(data.len() as u64, FILE_CHUNK_SIZE).expect("size"),
                digest: String::new(),
                chunk_size: FILE_CHUNK_SIZE,
            }),
        );
        let mut encryptor = FileEncryptor::new(&keys, self.project, draft.id);
        let mut ciphertext = Vec::new();
        encryptor.push(data, &mut ciphertext);
        encryptor.finish(&mut ciphertext);
        if let EventBody::FileShared(shared) = &mut draft.body {
            shared.digest = hex::encode(Sha256::digest(&ciphertext));
        }
        let event = draft
            .seal(&keys, fields::NAME, name.as_bytes())
            .sign(&self.key);
        SealedFile { event, ciphertext }
    }

    /// As [`TestAgent::seal_file`], declared with the digest left to the CDN.
    pub fn seal_file_leaving_the_digest(
        &self,
        project: &TestProject,
        name: &str,
        data: &[u8],
    ) -> SealedFile {
        let mut file = self.seal_file(project, None, name, data);
        file.event = self.resigned(&file.event, "");
        file
    }

    /// `event` (a `file_shared`) signed by this agent with `digest` in place of its own.
    pub fn resigned(&self, event: &Envelope, digest: &str) -> Envelope {
        let mut body = event.body.clone();
        if let EventBody::FileShared(shared) = &mut body {
            shared.digest = digest.to_owned();
        }
        Draft {
            id: event.id,
            project: event.project,
            actor: event.actor,
            at: event.at,
            body,
            sealed: event.sealed.clone(),
        }
        .sign(&self.key)
    }

    /// This agent's signature of `event` completed with the digest `digest`.
    pub fn signature_with_digest(&self, event: &Envelope, digest: &str) -> Signature {
        self.resigned(event, digest).sig
    }

    /// Commits file `id` with `body` (the CDN's answer and a signature, or anything else).
    pub async fn commit_file_with(
        &self,
        api: &TestApi,
        id: EventId,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.post_json(api, &format!("/v1/files/{id}/commit"), body)
            .await
    }

    /// Decrypts a downloaded blob of file `id`.
    pub fn open_file(
        &self,
        project: &TestProject,
        id: EventId,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, nexysync_domain::crypto::file_stream::FileCryptoError> {
        let keys = project.keys();
        let mut decryptor = FileDecryptor::new(&keys, self.project, id, None);
        let mut out = Vec::new();
        decryptor.push(ciphertext, &mut out)?;
        decryptor.finish(&mut out)?;
        Ok(out)
    }

    /// A signed `file_deleted` of file `file`.
    pub fn file_deleted(&self, file: EventId) -> Envelope {
        Draft::new(
            self.project,
            Actor::Agent(self.id),
            EventBody::FileDeleted(FileDeleted { file }),
        )
        .sign(&self.key)
    }

    /// POSTs `body` as JSON to `path`; the status and JSON answer.
    pub async fn post_json(
        &self,
        api: &TestApi,
        path: &str,
        body: &impl serde::Serialize,
    ) -> (u16, serde_json::Value) {
        let response = api
            .http
            .post(format!("{}{path}", api.url))
            .bearer_auth(self.token.expose_secret())
            .json(body)
            .send()
            .await
            .expect("the API answers");
        json_of(response).await.expect("a JSON answer")
    }

    /// Declares `file`: the status and the upload ticket (or error).
    pub async fn declare_file(&self, api: &TestApi, file: &SealedFile) -> (u16, serde_json::Value) {
        self.post_json(api, "/v1/files", &file.event).await
    }

    /// Commits file `id`: the status and `Appended` (or error).
    pub async fn commit_file(&self, api: &TestApi, id: EventId) -> (u16, serde_json::Value) {
        self.post_json(
            api,
            &format!("/v1/files/{id}/commit"),
            &serde_json::json!({}),
        )
        .await
    }

    /// Declares, uploads and commits `file`; the `Appended` answer of the commit.
    pub async fn share_file(&self, api: &TestApi, file: &SealedFile) -> serde_json::Value {
        let (status, ticket) = self.declare_file(api, file).await;
        assert_eq!(status, 201, "{ticket}");
        let (status, uploaded) = upload(api, &ticket, file.ciphertext.clone()).await;
        assert_eq!(status, 201, "{uploaded}");
        let (status, appended) = self.commit_file(api, file.id()).await;
        assert_eq!(status, 201, "{appended}");
        appended
    }
}

/// PUTs `body` to the ticket's upload URL; the status and JSON answer.
pub async fn upload(
    api: &TestApi,
    ticket: &serde_json::Value,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let url = ticket["upload_url"].as_str().expect("an upload URL");
    let response = api
        .http
        .put(url)
        .body(body)
        .send()
        .await
        .expect("the CDN answers");
    json_of(response).await.expect("a JSON answer")
}

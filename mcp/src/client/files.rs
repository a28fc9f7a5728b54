//! Shared files, client side. A file is encrypted on this machine in authenticated
//! 64 KiB chunks ([`nexysync_domain::crypto::file_stream`]) and streamed to the CDN with
//! the URL the API signed; nothing holds the whole file in memory. The file is read and
//! encrypted once: the declaration leaves the ciphertext's SHA-256 to the CDN, which
//! measures it while storing and answers with a signed receipt; the commit carries the
//! receipt and the `file_shared` signed again with that digest (ADR 0008, addendum). A
//! thread reads and seals 1 MiB pieces in place, a few ahead of the socket. Name and
//! media type are sealed in the event.
//!
//! Downloads stream the other way: a thread authenticates and decrypts each chunk as the
//! socket delivers it and writes 1 MiB at a time, around the page cache where the file
//! system allows ([`nexysync_domain::direct_file`]). A download goes to a temporary file
//! beside the destination, `fsync`ed and renamed into place only once the last chunk
//! verified, so a truncated or tampered file never appears.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use futures::StreamExt;
use nexysync_domain::crypto::file_stream::{ciphertext_len, FileEncryptor, FILE_CHUNK_SIZE};
use nexysync_domain::direct_file::DurableFile;
use nexysync_domain::event::{
    fields, Actor, Draft, EventBody, FileDeleted, FileShared, MAX_FILE_BYTES,
};
use nexysync_domain::ids::{AgentName, EventId, Seq};
use nexysync_domain::wire::{
    Appended, FileCommit, FileDownload, FilePage, StoredBlob, StoredEvent, UploadTicket,
};
use serde::Serialize;

use super::http::{api_error, Attempts, TRANSFER_STALL_TIMEOUT};
use super::message::RejectedMessage;
use super::verify::{author, open_text, rfc3339, Reader, VerifyError};
use super::{ChainMemory, Client, ClientError, Directory};

mod pipeline;
mod stall;

/// Longest wait for the CDN's answer once the whole upload was handed to the connection:
/// its buffers drain first on a slow link, then the CDN syncs the file to disk.
const UPLOAD_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

use pipeline::{decrypt_to, encrypt_in_background, Failure, Received, RECEIVED_AHEAD};

/// Where a new file's bytes come from.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// A local file, read once as it is encrypted.
    Path(PathBuf),
    /// Bytes in memory (small inline content).
    Bytes(Vec<u8>),
}

/// A file to share. `to` absent: every agent of the project.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub source: FileSource,
    pub name: String,
    pub media_type: Option<String>,
    pub to: Option<AgentName>,
}

/// A verified, decrypted file description (its bytes are fetched separately).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharedFile {
    pub id: EventId,
    pub seq: Seq,
    pub from: AgentName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<AgentName>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Plaintext bytes.
    pub size: u64,
    #[serde(skip)]
    pub ciphertext_size: u64,
    pub shared_at: String,
}

/// A page of files, oldest first, each verified or rejected.
#[derive(Debug, Clone)]
pub struct FileListPage {
    pub items: Vec<Result<SharedFile, RejectedMessage>>,
    pub next_since: Seq,
    pub has_more: bool,
}

fn file_error(action: &'static str, path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::File {
        action,
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl Client {
    /// Encrypts, declares, uploads and commits a file; the committed `file_shared`.
    pub async fn upload_file(&self, new: NewFile) -> Result<(Appended, u64), ClientError> {
        let size = match &new.source {
            FileSource::Path(path) => tokio::fs::metadata(path)
                .await
                .map_err(|e| file_error("cannot read", path, e))?
                .len(),
            FileSource::Bytes(bytes) => bytes.len() as u64,
        };
        if size > MAX_FILE_BYTES {
            return Err(ClientError::FileTooLarge {
                size,
                limit: MAX_FILE_BYTES,
            });
        }
        let to = match &new.to {
            Some(name) => Some(self.resolve(name).await?),
            None => None,
        };
        let me = &self.inner.key;
        let keys = &self.inner.keys;
        // Declared with the digest left to the CDN, which measures the one encryption.
        let mut draft = Draft::new(
            me.project.id,
            Actor::Agent(me.agent.id),
            EventBody::FileShared(FileShared {
                to,
                size,
                ciphertext_size: ciphertext_len(size, FILE_CHUNK_SIZE).unwrap_or(u64::MAX),
                digest: String::new(),
                chunk_size: FILE_CHUNK_SIZE,
            }),
        );
        draft = draft.seal(keys, fields::NAME, new.name.as_bytes());
        if let Some(media_type) = &new.media_type {
            draft = draft.seal(keys, fields::MEDIA_TYPE, media_type.as_bytes());
        }
        let id = draft.id;
        let declaration = draft.clone().sign(&me.signing_key);
        tracing::debug!(file = %id, size, "declaring a file upload");
        let ticket: UploadTicket = self.inner.http.post("v1/files", &declaration).await?;

        let failure: Failure = Arc::default();
        let encryptor = FileEncryptor::new(keys, me.project.id, id);
        let body = encrypt_in_background(new.source.clone(), size, encryptor, failure.clone());
        let progress = stall::Progress::new();
        let request = self
            .http()
            .raw()
            .put(&ticket.upload_url)
            .header(reqwest::header::CONTENT_LENGTH, ticket.max_bytes)
            .body(reqwest::Body::wrap_stream(progress.watch(body)))
            .send();
        let sent = tokio::select! {
            sent = request => sent.map_err(|e| e.to_string()),
            _ = progress.stalled(TRANSFER_STALL_TIMEOUT, UPLOAD_ANSWER_TIMEOUT) => Err(format!(
                "the upload stalled (nothing sent for {} s, or no answer {} s after the last \
                 byte); try again",
                TRANSFER_STALL_TIMEOUT.as_secs(),
                UPLOAD_ANSWER_TIMEOUT.as_secs()
            )),
        };
        // A failure of the reading side explains a broken request better than the request.
        if let Some(e) = failure.lock().ok().and_then(|mut slot| slot.take()) {
            return Err(e);
        }
        let answer = sent.map_err(|reason| ClientError::Unreachable {
            url: "the file service (CDN)".into(),
            reason,
        })?;
        if !answer.status().is_success() {
            return Err(api_error(answer).await.into());
        }
        let stored: StoredBlob = tokio::time::timeout(TRANSFER_STALL_TIMEOUT, answer.json())
            .await
            .map_err(|_| "no answer".to_owned())
            .and_then(|read| read.map_err(|e| e.to_string()))
            .map_err(|e| ClientError::Unreachable {
                url: "the file service (CDN)".into(),
                reason: format!("an unreadable answer to the upload: {e}"),
            })?;
        // The event as it will be appended: the declaration with the digest the CDN
        // measured. The chunks' authentication, not this digest, is what protects the
        // content end to end.
        if let EventBody::FileShared(shared) = &mut draft.body {
            shared.digest = stored.sha256.clone();
        }
        let sig = draft.sign(&me.signing_key).sig;
        let commit = FileCommit {
            stored: Some(stored),
            sig: Some(sig),
        };
        let appended: Appended = self
            .inner
            .http
            .post(&format!("v1/files/{id}/commit"), &commit)
            .await?;
        self.note_known(appended.seq);
        Ok((appended, size))
    }

    /// `GET /v1/files`: files this agent may read after `since`, each verified.
    pub async fn files(&self, since: Seq, limit: u32) -> Result<FileListPage, ClientError> {
        let mut query = vec![
            ("since_seq", since.0.to_string()),
            ("limit", limit.to_string()),
        ];
        query.extend(self.min_seq());
        let page: FilePage = self
            .inner
            .http
            .get("v1/files", &query, Attempts::Retry)
            .await?;
        let mut items = Vec::with_capacity(page.files.len());
        for stored in &page.files {
            items.push(self.verify_file(stored).await?);
        }
        Ok(FileListPage {
            items,
            next_since: page.next_since_seq,
            has_more: page.has_more,
        })
    }

    /// `GET /v1/files/{id}`: the verified file and a download URL.
    async fn file_download(&self, id: EventId) -> Result<(SharedFile, String), ClientError> {
        let download: FileDownload = self
            .inner
            .http
            .get(&format!("v1/files/{id}"), &self.min_seq(), Attempts::Retry)
            .await?;
        let file = self
            .verify_file(&download.file)
            .await?
            .map_err(ClientError::from)?;
        Ok((file, download.download_url))
    }

    /// The verified description of file `id`.
    pub async fn file(&self, id: EventId) -> Result<SharedFile, ClientError> {
        Ok(self.file_download(id).await?.0)
    }

    /// Downloads, verifies and decrypts file `id` into `dest` (a temporary file beside it
    /// is `fsync`ed and renamed into place once every chunk verified).
    pub async fn download_file(&self, id: EventId, dest: &Path) -> Result<SharedFile, ClientError> {
        let (file, url) = self.file_download(id).await?;
        let partial = dest.with_file_name(format!(
            ".{}.nexysync-partial",
            dest.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("download")
        ));
        let out = {
            let path = partial.clone();
            tokio::task::spawn_blocking(move || DurableFile::create(&path))
                .await
                .map_err(std::io::Error::other)
                .and_then(|created| created)
                .map_err(|e| file_error("cannot write", &partial, e))?
        };
        let written = match self.decrypt_into(&file, &url, out).await {
            // Durable before it takes the destination's name.
            Ok(out) => tokio::task::spawn_blocking(move || out.sync_all())
                .await
                .map_err(std::io::Error::other)
                .and_then(|synced| synced)
                .map_err(|e| file_error("cannot write", &partial, e)),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        tokio::fs::rename(&partial, dest)
            .await
            .map_err(|e| file_error("cannot write", dest, e))?;
        Ok(file)
    }

    /// Downloads file `id` into memory if it has at most `max` bytes.
    pub async fn download_file_bytes(
        &self,
        id: EventId,
        max: u64,
    ) -> Result<(SharedFile, Option<Vec<u8>>), ClientError> {
        let (file, url) = self.file_download(id).await?;
        if file.size > max {
            return Ok((file, None));
        }
        let bytes = Vec::with_capacity(file.size as usize);
        let bytes = self.decrypt_into(&file, &url, bytes).await?;
        Ok((file, Some(bytes)))
    }

    /// Streams the blob at `url` through a decrypting thread into `out`; `out` once the
    /// whole file verified.
    async fn decrypt_into<W: std::io::Write + Send + 'static>(
        &self,
        file: &SharedFile,
        url: &str,
        out: W,
    ) -> Result<W, ClientError> {
        let answer = self.http().downloads().get(url).send().await.map_err(|e| {
            ClientError::Unreachable {
                url: "the file service (CDN)".into(),
                reason: e.to_string(),
            }
        })?;
        if !answer.status().is_success() {
            return Err(api_error(answer).await.into());
        }
        let (tx, rx) = tokio::sync::mpsc::channel(RECEIVED_AHEAD);
        let keys = self.inner.keys.clone();
        let project = self.inner.key.project.id;
        let shared = file.clone();
        let decrypting =
            tokio::task::spawn_blocking(move || decrypt_to(&keys, project, &shared, rx, out));
        let mut body = answer.bytes_stream();
        let mut broke_off = None;
        while let Some(piece) = body.next().await {
            match piece {
                Ok(piece) => {
                    if tx.send(Received::Ciphertext(piece)).await.is_err() {
                        break; // The thread stopped on an error it returns.
                    }
                }
                Err(e) => {
                    broke_off = Some(e);
                    break;
                }
            }
        }
        if broke_off.is_none() {
            let _ = tx.send(Received::End).await;
        }
        drop(tx);
        let decrypted = decrypting.await.map_err(|e| ClientError::File {
            action: "cannot decrypt",
            path: file.name.clone(),
            reason: e.to_string(),
        })?;
        if let Some(e) = broke_off {
            return Err(ClientError::Unreachable {
                url: "the file service (CDN)".into(),
                reason: format!("the download broke off: {e}"),
            });
        }
        decrypted
    }

    /// Signs and sends a `file_deleted`; the server removes the blob.
    pub async fn delete_file(&self, id: EventId) -> Result<Appended, ClientError> {
        let me = &self.inner.key;
        let envelope = Draft::new(
            me.project.id,
            Actor::Agent(me.agent.id),
            EventBody::FileDeleted(FileDeleted { file: id }),
        )
        .sign(&me.signing_key);
        let appended: Appended = self.inner.http.post("v1/files/delete", &envelope).await?;
        self.note_known(appended.seq);
        Ok(appended)
    }

    pub(super) async fn verify_file(
        &self,
        stored: &StoredEvent,
    ) -> Result<Result<SharedFile, RejectedMessage>, ClientError> {
        self.verify_kind(stored, "file", check_file).await
    }
}

fn check_file(
    reader: Reader<'_>,
    directory: &Directory,
    chain: &mut ChainMemory,
    stored: &StoredEvent,
) -> Result<SharedFile, VerifyError> {
    let event = &stored.event;
    let EventBody::FileShared(shared) = &event.body else {
        return Err(VerifyError::NotAFile {
            kind: event.body.kind().as_str(),
        });
    };
    let sender = author(reader, directory, event)?;
    chain.observe(stored.seq, event)?;
    let to = directory.recipient_name(shared.to)?;
    Ok(SharedFile {
        id: event.id,
        seq: stored.seq,
        from: sender.name.clone(),
        to,
        name: open_text(reader, stored, fields::NAME)?
            .ok_or(VerifyError::MissingField(fields::NAME))?,
        media_type: open_text(reader, stored, fields::MEDIA_TYPE)?,
        size: shared.size,
        ciphertext_size: shared.ciphertext_size,
        shared_at: rfc3339(event.at),
    })
}

#[cfg(test)]
mod tests {
    use nexysync_domain::crypto::file_stream::{ciphertext_len, FILE_CHUNK_SIZE};
    use nexysync_domain::crypto::SigningKey;
    use nexysync_domain::event::{fields, Actor, Draft, EventBody, FileShared};
    use nexysync_domain::wire::AgentList;

    use super::check_file;
    use crate::client::test_events::{Agent, Project, Sent};
    use crate::client::verify::{Reader, VerifyError};
    use crate::client::{ChainMemory, Directory};

    fn shared(project: &Project, from: &Agent, name: Option<&str>) -> Draft {
        let draft = Draft::new(
            project.id,
            Actor::Agent(from.id),
            EventBody::FileShared(FileShared {
                to: None,
                size: 10,
                ciphertext_size: ciphertext_len(10, FILE_CHUNK_SIZE).unwrap(),
                digest: "cd".repeat(32),
                chunk_size: FILE_CHUNK_SIZE,
            }),
        );
        match name {
            Some(name) => draft.seal(&project.keys, fields::NAME, name.as_bytes()),
            None => draft,
        }
    }

    fn check(
        project: &Project,
        directory: &Directory,
        chain: &mut ChainMemory,
        stored: &nexysync_domain::wire::StoredEvent,
    ) -> Result<super::SharedFile, VerifyError> {
        let reader = Reader {
            project: project.id,
            keys: &project.keys,
        };
        check_file(reader, directory, chain, stored)
    }

    #[test]
    fn a_genuine_file_opens_and_forged_or_foreign_ones_are_refused() {
        let project = Project::new();
        let alice = project.agent("alice");
        let mut chain = ChainMemory::new();
        let list = AgentList {
            agents: vec![project.agent_info(&alice)],
        };
        let directory =
            Directory::verify(project.id, &project.owner.public_key(), &list, &mut chain);

        let genuine = project.append(shared(&project, &alice, Some("plan.md")).sign(&alice.key));
        let file = check(&project, &directory, &mut chain, &genuine).unwrap();
        assert_eq!((file.name.as_str(), file.size), ("plan.md", 10));
        assert_eq!(file.from, alice.name);

        let forged =
            project.append(shared(&project, &alice, Some("x")).sign(&SigningKey::generate()));
        assert!(matches!(
            check(&project, &directory, &mut chain, &forged),
            Err(VerifyError::BadSignature(_))
        ));
        let nameless = project.append(shared(&project, &alice, None).sign(&alice.key));
        assert!(matches!(
            check(&project, &directory, &mut chain, &nameless),
            Err(VerifyError::MissingField(fields::NAME))
        ));
        let message = project.message(&alice, Sent::broadcast(), "not a file");
        assert!(matches!(
            check(&project, &directory, &mut chain, &message),
            Err(VerifyError::NotAFile { .. })
        ));
    }
}

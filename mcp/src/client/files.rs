//! Shared files, client side. A file is encrypted on this machine in authenticated
//! 64 KiB chunks ([`nexysync_domain::crypto::file_stream`]) and streamed to the CDN with
//! the URL the API signed; nothing holds the whole file in memory. The encryption runs
//! twice with one salt: the first pass hashes the ciphertext for the signed `file_shared`,
//! the second uploads the same bytes. Name and media type are sealed in the event.
//!
//! Downloads stream the other way, each chunk authenticated before it is written; a
//! download goes to a temporary file beside the destination and is renamed into place
//! only once the last chunk verified, so a truncated or tampered file never appears.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use nexysync_domain::crypto::file_stream::{
    ciphertext_len, FileDecryptor, FileEncryptor, FILE_CHUNK_SIZE,
};
use nexysync_domain::event::{
    fields, Actor, Draft, EventBody, FileDeleted, FileShared, MAX_FILE_BYTES,
};
use nexysync_domain::ids::{AgentName, EventId, Seq};
use nexysync_domain::wire::{Appended, FileDownload, FilePage, StoredEvent, UploadTicket};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::http::{api_error, Attempts};
use super::message::RejectedMessage;
use super::verify::{author, open_text, rfc3339, Reader, VerifyError};
use super::{ChainMemory, Client, ClientError, Directory};

/// Plaintext read per step of an encryption pass.
const READ_PIECE: usize = 256 * 1024;

/// Where a new file's bytes come from.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// A local file, read (twice) as it is encrypted.
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

/// Encrypts `source` on a blocking thread, a piece at a time, into a bounded channel: the
/// encryption of the next pieces overlaps the hashing or sending of the last ones, and at
/// most a few pieces are in memory.
fn encrypt_in_background(
    source: FileSource,
    encryptor: FileEncryptor,
) -> impl futures::Stream<Item = Result<Bytes, ClientError>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, ClientError>>(8);
    tokio::task::spawn_blocking(move || {
        let (mut reader, path): (Box<dyn std::io::Read + Send>, String) = match source {
            FileSource::Path(path) => match std::fs::File::open(&path) {
                Ok(file) => (Box::new(file), path.display().to_string()),
                Err(e) => {
                    let _ = tx.blocking_send(Err(file_error("cannot open", &path, e)));
                    return;
                }
            },
            FileSource::Bytes(bytes) => (Box::new(std::io::Cursor::new(bytes)), "content".into()),
        };
        let mut encryptor = encryptor;
        let mut buf = vec![0u8; READ_PIECE];
        loop {
            let n = match read_piece(&mut reader, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.blocking_send(Err(file_error("cannot read", Path::new(&path), e)));
                    return;
                }
            };
            let mut out = Vec::with_capacity(n + 1024);
            if n == 0 {
                encryptor.finish(&mut out);
                let _ = tx.blocking_send(Ok(Bytes::from(out)));
                return;
            }
            encryptor.push(&buf[..n], &mut out);
            if tx.blocking_send(Ok(Bytes::from(out))).is_err() {
                return; // The reader stopped (the upload failed): stop encrypting.
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// Fills `buf` as far as the source allows; 0 at the end.
fn read_piece(reader: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
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
        // Pass 1: hash the ciphertext (and count it: the file may have changed size).
        let encryptor = FileEncryptor::new(keys, me.project.id, draft.id);
        let salt = encryptor.salt().unwrap_or_default();
        let mut hasher = Sha256::new();
        let mut hashed = 0u64;
        let mut pieces = std::pin::pin!(encrypt_in_background(new.source.clone(), encryptor));
        while let Some(piece) = pieces.next().await {
            let piece = piece?;
            hashed += piece.len() as u64;
            hasher.update(&piece);
        }
        let expected = ciphertext_len(size, FILE_CHUNK_SIZE).unwrap_or(u64::MAX);
        if hashed != expected {
            return Err(ClientError::File {
                action: "changed while reading",
                path: new.name.clone(),
                reason: "its size changed during the upload; try again".into(),
            });
        }
        if let EventBody::FileShared(shared) = &mut draft.body {
            shared.digest = hex::encode(hasher.finalize());
        }
        draft = draft.seal(keys, fields::NAME, new.name.as_bytes());
        if let Some(media_type) = &new.media_type {
            draft = draft.seal(keys, fields::MEDIA_TYPE, media_type.as_bytes());
        }
        let envelope = draft.sign(&me.signing_key);
        let id = envelope.id;
        tracing::debug!(file = %id, size, "declaring a file upload");
        let ticket: UploadTicket = self.inner.http.post("v1/files", &envelope).await?;

        // Pass 2: the same bytes (same salt), streamed to the CDN.
        let encryptor = FileEncryptor::with_salt(keys, me.project.id, id, salt);
        let body = encrypt_in_background(new.source.clone(), encryptor);
        let answer = self
            .http()
            .raw()
            .put(&ticket.upload_url)
            .header(reqwest::header::CONTENT_LENGTH, ticket.max_bytes)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: "the file service (CDN)".into(),
                reason: e.to_string(),
            })?;
        if !answer.status().is_success() {
            return Err(api_error(answer).await.into());
        }
        let appended: Appended = self
            .inner
            .http
            .post(&format!("v1/files/{id}/commit"), &serde_json::json!({}))
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
    /// is renamed into place once every chunk verified).
    pub async fn download_file(&self, id: EventId, dest: &Path) -> Result<SharedFile, ClientError> {
        let (file, url) = self.file_download(id).await?;
        let partial = dest.with_file_name(format!(
            ".{}.nexysync-partial",
            dest.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("download")
        ));
        let mut out = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| file_error("cannot write", &partial, e))?;
        let written = self.decrypt_into(&file, &url, &mut out).await;
        let written = match written {
            Ok(()) => out
                .flush()
                .await
                .map_err(|e| file_error("cannot write", &partial, e)),
            Err(e) => Err(e),
        };
        drop(out);
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
        let mut bytes = Vec::with_capacity(file.size as usize);
        self.decrypt_into(&file, &url, &mut bytes).await?;
        Ok((file, Some(bytes)))
    }

    async fn decrypt_into<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        file: &SharedFile,
        url: &str,
        out: &mut W,
    ) -> Result<(), ClientError> {
        let answer =
            self.http()
                .raw()
                .get(url)
                .send()
                .await
                .map_err(|e| ClientError::Unreachable {
                    url: "the file service (CDN)".into(),
                    reason: e.to_string(),
                })?;
        if !answer.status().is_success() {
            return Err(api_error(answer).await.into());
        }
        let me = &self.inner.key;
        let mut decryptor = FileDecryptor::new(
            &self.inner.keys,
            me.project.id,
            file.id,
            Some(file.ciphertext_size),
        );
        let mut plain = Vec::with_capacity(READ_PIECE);
        let mut body = answer.bytes_stream();
        let write_error = |e: std::io::Error| ClientError::File {
            action: "cannot write",
            path: file.name.clone(),
            reason: e.to_string(),
        };
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| ClientError::Unreachable {
                url: "the file service (CDN)".into(),
                reason: format!("the download broke off: {e}"),
            })?;
            plain.clear();
            decryptor.push(&piece, &mut plain)?;
            out.write_all(&plain).await.map_err(write_error)?;
        }
        plain.clear();
        decryptor.finish(&mut plain)?;
        out.write_all(&plain).await.map_err(write_error)?;
        Ok(())
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

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
//! socket delivers it and writes 1 MiB at a time. A download goes to a temporary file
//! beside the destination, `fsync`ed and renamed into place only once the last chunk
//! verified, so a truncated or tampered file never appears.

use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use nexysync_domain::crypto::file_stream::{
    ciphertext_len, FileDecryptor, FileEncryptor, FILE_CHUNK_SIZE, FILE_HEADER_LEN, FILE_TAG_LEN,
};
use nexysync_domain::crypto::ContentKeys;
use nexysync_domain::event::{
    fields, Actor, Draft, EventBody, FileDeleted, FileShared, MAX_FILE_BYTES,
};
use nexysync_domain::ids::ProjectId;
use nexysync_domain::ids::{AgentName, EventId, Seq};
use nexysync_domain::wire::{
    Appended, FileCommit, FileDownload, FilePage, StoredBlob, StoredEvent, UploadTicket,
};
use serde::Serialize;

use super::http::{api_error, Attempts};
use super::message::RejectedMessage;
use super::verify::{author, open_text, rfc3339, Reader, VerifyError};
use super::{ChainMemory, Client, ClientError, Directory};

/// Chunks sealed per piece sent to the CDN (1 MiB of plaintext).
const CHUNKS_PER_PIECE: usize = 16;
/// Pieces sealed ahead of the socket.
const PIECES_AHEAD: usize = 4;
/// Ciphertext pieces received ahead of the decrypting thread.
const RECEIVED_AHEAD: usize = 16;
/// Plaintext gathered per write of a download.
const WRITE_PIECE: usize = 1024 * 1024;

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

/// The first error of a background stage, for the caller to report instead of the broken
/// stream it caused.
type Failure = Arc<Mutex<Option<ClientError>>>;

fn fail(failure: &Failure, error: ClientError) -> std::io::Error {
    let text = error.to_string();
    if let Ok(mut slot) = failure.lock() {
        slot.get_or_insert(error);
    }
    std::io::Error::other(text)
}

/// Reads `source` (`size` plaintext bytes) on a blocking thread and seals it in place,
/// [`CHUNKS_PER_PIECE`] chunks to a piece, into a bounded channel: the encryption of the
/// next pieces overlaps the sending of the last ones, and at most a few pieces are in
/// memory. A source whose length is not `size` fails the stream (see `failure`).
fn encrypt_in_background(
    source: FileSource,
    size: u64,
    encryptor: FileEncryptor,
    failure: Failure,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(PIECES_AHEAD);
    tokio::task::spawn_blocking(move || {
        let (mut reader, path): (Box<dyn std::io::Read + Send>, String) = match source {
            FileSource::Path(path) => match std::fs::File::open(&path) {
                Ok(file) => (Box::new(file), path.display().to_string()),
                Err(e) => {
                    let e = fail(&failure, file_error("cannot open", &path, e));
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            },
            FileSource::Bytes(bytes) => (Box::new(std::io::Cursor::new(bytes)), "content".into()),
        };
        let mut encryptor = Some(encryptor);
        let mut header = encryptor.as_mut().and_then(FileEncryptor::take_header);
        let chunk = FILE_CHUNK_SIZE as usize;
        let mut read = 0u64;
        let pool = PiecePool::new(FILE_HEADER_LEN + CHUNKS_PER_PIECE * (chunk + FILE_TAG_LEN));
        while encryptor.is_some() {
            let mut piece = pool.take();
            let mut used = 0;
            if let Some(header) = header.take() {
                piece[..FILE_HEADER_LEN].copy_from_slice(&header);
                used = FILE_HEADER_LEN;
            }
            for _ in 0..CHUNKS_PER_PIECE {
                let start = used;
                let n = match read_piece(&mut reader, &mut piece[start..start + chunk]) {
                    Ok(n) => n,
                    Err(e) => {
                        let e = fail(&failure, file_error("cannot read", Path::new(&path), e));
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                read += n as u64;
                let changed = read > size || (n < chunk && read != size);
                if changed {
                    let e = fail(
                        &failure,
                        ClientError::File {
                            action: "changed while reading",
                            path: path.clone(),
                            reason: "its size changed during the upload; try again".into(),
                        },
                    );
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
                let sealed = &mut piece[start..start + n];
                let tag = match (n < chunk, encryptor.as_mut()) {
                    (false, Some(enc)) => enc.seal_whole_chunk(sealed),
                    // A short read is the end: the final chunk (possibly empty).
                    (true, Some(_)) => match encryptor.take() {
                        Some(last) => last.seal_final_chunk(sealed),
                        None => return,
                    },
                    (_, None) => return,
                };
                piece[start + n..start + n + FILE_TAG_LEN].copy_from_slice(&tag);
                used = start + n + FILE_TAG_LEN;
                if encryptor.is_none() {
                    break;
                }
            }
            if tx.blocking_send(Ok(pool.lend(piece, used))).is_err() {
                return; // The upload stopped: stop encrypting.
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// Buffers for the pieces of an upload, each handed to the HTTP body as [`Bytes`] and
/// back here when the body is done with it: no allocation, page fault or zero-filling
/// per piece (a profile showed them as a fifth of the client's time). The pool holds
/// only what is in flight, a few pieces.
struct PiecePool {
    size: usize,
    home: std::sync::mpsc::Sender<Vec<u8>>,
    returned: std::sync::mpsc::Receiver<Vec<u8>>,
}

/// A pooled buffer lent out as the first `used` bytes of a [`Bytes`].
struct Lent {
    buf: Vec<u8>,
    used: usize,
    home: std::sync::mpsc::Sender<Vec<u8>>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.used]
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        // The pool is gone once the upload ended: then the buffer is simply freed.
        let _ = self.home.send(std::mem::take(&mut self.buf));
    }
}

impl PiecePool {
    fn new(size: usize) -> Self {
        let (home, returned) = std::sync::mpsc::channel();
        Self {
            size,
            home,
            returned,
        }
    }

    /// A buffer of `size` bytes (a returned one when there is one).
    fn take(&self) -> Vec<u8> {
        self.returned
            .try_recv()
            .ok()
            .filter(|buf| buf.len() == self.size)
            .unwrap_or_else(|| vec![0; self.size])
    }

    /// `buf`'s first `used` bytes, which return to the pool once dropped.
    fn lend(&self, buf: Vec<u8>, used: usize) -> Bytes {
        Bytes::from_owner(Lent {
            buf,
            used,
            home: self.home.clone(),
        })
    }
}

/// What the decrypting thread is handed.
enum Received {
    Ciphertext(Bytes),
    /// The download ended without error: the final chunk may be checked.
    End,
}

/// Authenticates and decrypts what arrives on `rx` into `out`, [`WRITE_PIECE`] at a time,
/// on the calling (blocking) thread; `out` once the final chunk verified.
fn decrypt_to<W: std::io::Write>(
    keys: &ContentKeys,
    project: ProjectId,
    file: &SharedFile,
    mut rx: tokio::sync::mpsc::Receiver<Received>,
    mut out: W,
) -> Result<W, ClientError> {
    let write_error = |e: std::io::Error| ClientError::File {
        action: "cannot write",
        path: file.name.clone(),
        reason: e.to_string(),
    };
    let mut decryptor = FileDecryptor::new(keys, project, file.id, Some(file.ciphertext_size));
    let mut plain = Vec::with_capacity(WRITE_PIECE + RECEIVED_AHEAD * FILE_CHUNK_SIZE as usize);
    loop {
        match rx.blocking_recv() {
            Some(Received::Ciphertext(piece)) => {
                decryptor.push(&piece, &mut plain)?;
                if plain.len() >= WRITE_PIECE {
                    out.write_all(&plain).map_err(write_error)?;
                    plain.clear();
                }
            }
            Some(Received::End) => break,
            // The receiving side stopped on an error it reports itself.
            None => {
                return Err(ClientError::Unreachable {
                    url: "the file service (CDN)".into(),
                    reason: "the download broke off".into(),
                })
            }
        }
    }
    decryptor.finish(&mut plain)?;
    out.write_all(&plain).map_err(write_error)?;
    out.flush().map_err(write_error)?;
    Ok(out)
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
        let sent = self
            .http()
            .raw()
            .put(&ticket.upload_url)
            .header(reqwest::header::CONTENT_LENGTH, ticket.max_bytes)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await;
        // A failure of the reading side explains a broken request better than the request.
        if let Some(e) = failure.lock().ok().and_then(|mut slot| slot.take()) {
            return Err(e);
        }
        let answer = sent.map_err(|e| ClientError::Unreachable {
            url: "the file service (CDN)".into(),
            reason: e.to_string(),
        })?;
        if !answer.status().is_success() {
            return Err(api_error(answer).await.into());
        }
        let stored: StoredBlob = answer.json().await.map_err(|e| ClientError::Unreachable {
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
        let out = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| file_error("cannot write", &partial, e))?
            .into_std()
            .await;
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

//! [`BlobStore`]: the one storage interface of the CDN. It is written once over
//! `object_store`'s trait, so local disk (`LocalFileSystem`), S3-compatible storage
//! (`AmazonS3`) and memory (`InMemory`, for tests) share every line of store logic.
//!
//! Uploads are counted as they pass and hashed on a thread beside them, a few parts at
//! most are buffered, and the object appears under its name only when the upload
//! completes within its size limit (and with the right SHA-256, when one was signed).
//! Object storage gets multipart writes; local disk gets [`disk`]'s durable writer
//! (`fsync` before the upload counts), as `object_store`'s local backend never syncs. A
//! cut-off upload's staging file or parts are removed.
//!
//! Local-disk downloads are read by a thread of their own in 1 MiB pieces, ahead of the
//! socket by a few pieces.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetResultPayload, ObjectStore, WriteMultipart};

use nexysync_domain::blob_url::UrlError;

use crate::error::CdnError;
use crate::settings::Storage;

mod disk;
mod hashing;

/// Bytes read from local disk per piece of a download.
const DISK_READ_PIECE: usize = 1024 * 1024;
/// Download pieces read ahead of the socket.
const PIECES_READ_AHEAD: usize = 4;
/// Bytes of an upload gathered before they are handed to the hashing and writing threads.
const HANDOVER_RUN: usize = 1024 * 1024;
/// Upload parts in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
}

/// A blob being read: its length and its bytes as a stream.
pub struct Blob {
    pub size: u64,
    pub bytes: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({} bytes)", self.size)
    }
}

/// The blobs, wherever they are kept. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    part_size: usize,
    /// Local disk: uploads are written durably here rather than through `inner`.
    disk: Option<Arc<disk::DiskBlobs>>,
}

/// Where the bytes of one upload go.
enum Sink {
    Multipart(WriteMultipart),
    Disk(disk::DurableUpload),
}

impl Sink {
    async fn write(&mut self, pieces: Vec<Bytes>) -> Result<(), CdnError> {
        match self {
            Self::Multipart(writer) => {
                for piece in pieces {
                    writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                    writer.put(piece);
                }
                Ok(())
            }
            Self::Disk(upload) => upload.write(pieces).await,
        }
    }

    async fn finish(self) -> Result<(), CdnError> {
        match self {
            Self::Multipart(writer) => writer.finish().await.map(|_| ()).map_err(Into::into),
            Self::Disk(upload) => upload.finish().await,
        }
    }

    async fn abort(self) {
        match self {
            Self::Multipart(writer) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, "could not discard a refused upload");
                }
            }
            // Answered only once the staging file is gone: a refusal leaves nothing.
            Self::Disk(upload) => upload.abort().await,
        }
    }
}

impl BlobStore {
    /// Opens the configured storage (creating the directory of a disk store).
    pub fn open(storage: &Storage, part_size: usize) -> anyhow::Result<Self> {
        use anyhow::Context;
        let inner: Arc<dyn ObjectStore> = match storage {
            Storage::Disk { dir } => {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("failed to create blob directory {}", dir.display())
                })?;
                let local = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .with_context(|| format!("failed to open blob directory {}", dir.display()))?;
                let disk = disk::DiskBlobs::open(dir).with_context(|| {
                    format!("failed to open the staging directory in {}", dir.display())
                })?;
                return Ok(Self {
                    disk: Some(Arc::new(disk)),
                    ..Self::over(Arc::new(local), part_size)
                });
            }
            Storage::S3 {
                bucket,
                region,
                endpoint,
                access_key_id,
                secret_access_key,
                allow_http,
            } => {
                let mut builder = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_access_key_id(access_key_id)
                    .with_secret_access_key(secret_access_key)
                    .with_allow_http(*allow_http);
                if let Some(endpoint) = endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                Arc::new(builder.build().context("failed to configure S3 storage")?)
            }
            Storage::Memory => Arc::new(object_store::memory::InMemory::new()),
        };
        Ok(Self::over(inner, part_size))
    }

    /// A store over any `object_store` backend.
    pub fn over(inner: Arc<dyn ObjectStore>, part_size: usize) -> Self {
        Self {
            inner,
            part_size: part_size.max(64 * 1024),
            disk: None,
        }
    }

    /// Removes what crashed uploads left in the local-disk staging directory.
    pub fn sweep_staging(&self) {
        if let Some(disk) = &self.disk {
            disk.sweep_staging(disk::STALE_STAGING);
        }
    }

    /// Stores `body` under `key` if it has at most `max_bytes` and, when given, the
    /// SHA-256 `sha256`, nothing is stored there yet, and it is whole by `expires_at`
    /// (Unix seconds, its URL's expiry); otherwise stores nothing and says why. A blob is
    /// written once: its digest is in the log, and an upload URL, valid for minutes, must
    /// not swap the bytes of a file already shared. One whole only after its URL expired
    /// could never be committed (the API refuses an expired upload), and the API's
    /// sweeper of expired uploads may already have passed: kept, it would stay for ever.
    pub async fn put<S, E>(
        &self,
        key: &str,
        body: S,
        max_bytes: u64,
        sha256: Option<&str>,
        expires_at: u64,
    ) -> Result<Stored, CdnError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        // Refused before reading a byte. On local disk the final link is the atomic check;
        // object storage has no conditional multipart upload, so two uploads racing on one
        // URL could still both pass here.
        if self.size(key).await.is_ok() {
            return Err(CdnError::BlobExists);
        }
        let mut sink = match &self.disk {
            Some(disk) => Sink::Disk(disk.start(key).await?),
            None => {
                let upload = self.inner.put_multipart(&Path::from(key)).await?;
                Sink::Multipart(WriteMultipart::new_with_chunk_size(upload, self.part_size))
            }
        };
        let mut hasher = hashing::BackgroundSha256::start();
        let mut size = 0u64;
        let mut body = std::pin::pin!(body);
        // The request's pieces (a few KiB to a few hundred) are handed on a run at a time:
        // one wake-up of the hashing and writing threads per MiB, not per piece.
        let mut run = Vec::new();
        let mut run_bytes = 0;
        let outcome = loop {
            let next = body.next().await;
            let end = next.is_none();
            match next {
                None => {}
                Some(Err(e)) => {
                    tracing::info!(error = %e, "upload cut off");
                    break Err(CdnError::UploadInterrupted);
                }
                Some(Ok(chunk)) => {
                    size += chunk.len() as u64;
                    if size > max_bytes {
                        break Err(CdnError::TooLarge { limit: max_bytes });
                    }
                    run_bytes += chunk.len();
                    run.push(chunk);
                }
            }
            if run_bytes >= HANDOVER_RUN || (end && !run.is_empty()) {
                let pieces = std::mem::take(&mut run);
                run_bytes = 0;
                hasher.update(pieces.clone()).await;
                if let Err(e) = sink.write(pieces).await {
                    break Err(e);
                }
            }
            if end {
                break Ok(());
            }
        };
        let outcome = match outcome {
            Ok(()) => hasher.finish().await.map_err(CdnError::Disk),
            Err(e) => Err(e),
        };
        let outcome = outcome.and_then(|digest| match sha256 {
            Some(expected) if expected != digest => Err(CdnError::DigestMismatch),
            _ if crate::routes::now_s() > expires_at => Err(UrlError::Expired.into()),
            _ => Ok(digest),
        });
        match outcome {
            Ok(digest) => {
                sink.finish().await?;
                Ok(Stored {
                    size,
                    sha256: digest,
                })
            }
            Err(e) => {
                sink.abort().await;
                Err(e)
            }
        }
    }

    /// The blob under `key`, streamed.
    pub async fn get(&self, key: &str) -> Result<Blob, CdnError> {
        let found = self.inner.get(&Path::from(key)).await?;
        let size = found.meta.size;
        let bytes = match found.payload {
            // Local disk: large reads on a thread of their own rather than
            // object_store's small ones (or one blocking-pool hop per read).
            GetResultPayload::File(file, _) => read_ahead(file, size),
            GetResultPayload::Stream(stream) => stream.map_err(std::io::Error::other).boxed(),
        };
        Ok(Blob { size, bytes })
    }

    /// The length of the blob under `key`.
    pub async fn size(&self, key: &str) -> Result<u64, CdnError> {
        Ok(self.inner.head(&Path::from(key)).await?.size)
    }

    /// Removes the blob under `key`; removing an absent blob is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), CdnError> {
        match self.inner.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Streams `size` bytes of `file`, read by a blocking thread in [`DISK_READ_PIECE`]s at
/// most [`PIECES_READ_AHEAD`] ahead; the thread stops when the stream is dropped.
fn read_ahead(
    mut file: std::fs::File,
    size: u64,
) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(PIECES_READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        // Buffers come back once hyper has sent them: no zero-filling per piece.
        let pool = nexysync_domain::pieces::PiecePool::new(DISK_READ_PIECE);
        let mut left = size;
        while left > 0 {
            let want = left.min(DISK_READ_PIECE as u64) as usize;
            let mut piece = pool.take();
            let read = loop {
                match file.read(&mut piece[..want]) {
                    Ok(0) => break Err(std::io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => break Ok(n),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            let item = read.map(|n| {
                left -= n as u64;
                pool.lend(piece, n)
            });
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

//! [`BlobStore`]: the one storage interface of the CDN. It is written once over
//! `object_store`'s trait, so local disk (`LocalFileSystem`), S3-compatible storage
//! (`AmazonS3`) and memory (`InMemory`, for tests) share every line of store logic.
//!
//! Uploads go through multipart writes: the bytes are hashed and counted as they pass,
//! a few parts at most are buffered, and the object appears under its name only when the
//! upload completes with the right size and SHA-256 (on local disk, a staging file is
//! renamed; a cut-off upload's staging file is removed).

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetResultPayload, ObjectStore, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::error::CdnError;
use crate::settings::Storage;

/// Bytes read from local disk per chunk of a download.
const DISK_READ_CHUNK: usize = 256 * 1024;
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
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(dir).with_context(
                        || format!("failed to open blob directory {}", dir.display()),
                    )?,
                )
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
        }
    }

    /// Stores `body` under `key` if it has at most `max_bytes` and, when given, the
    /// SHA-256 `sha256`; otherwise stores nothing and says why.
    pub async fn put<S, E>(
        &self,
        key: &str,
        body: S,
        max_bytes: u64,
        sha256: Option<&str>,
    ) -> Result<Stored, CdnError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let upload = self.inner.put_multipart(&Path::from(key)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = std::pin::pin!(body);
        let outcome = loop {
            match body.next().await {
                None => break Ok(()),
                Some(Err(e)) => {
                    tracing::info!(error = %e, "upload cut off");
                    break Err(CdnError::UploadInterrupted);
                }
                Some(Ok(chunk)) => {
                    size += chunk.len() as u64;
                    if size > max_bytes {
                        break Err(CdnError::TooLarge { limit: max_bytes });
                    }
                    hasher.update(&chunk);
                    if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                        break Err(e.into());
                    }
                    writer.put(chunk);
                }
            }
        };
        let digest = hex::encode(hasher.finalize());
        let outcome = outcome.and_then(|()| match sha256 {
            Some(expected) if expected != digest => Err(CdnError::DigestMismatch),
            _ => Ok(()),
        });
        match outcome {
            Ok(()) => {
                writer.finish().await?;
                Ok(Stored {
                    size,
                    sha256: digest,
                })
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, "could not discard a refused upload");
                }
                Err(e)
            }
        }
    }

    /// The blob under `key`, streamed.
    pub async fn get(&self, key: &str) -> Result<Blob, CdnError> {
        let found = self.inner.get(&Path::from(key)).await?;
        let size = found.meta.size;
        let bytes = match found.payload {
            // Local disk: read in large chunks rather than object_store's small ones.
            GetResultPayload::File(file, _) => {
                use tokio::io::AsyncReadExt;
                let file = tokio::fs::File::from_std(file).take(size);
                tokio_util::io::ReaderStream::with_capacity(file, DISK_READ_CHUNK).boxed()
            }
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

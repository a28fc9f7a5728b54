//! Durable uploads to local disk. `object_store`'s local backend writes a staging file and
//! renames it, but never `fsync`s: an upload acknowledged a moment before a power cut
//! could come back empty or torn under its final name. Here an upload is written by a
//! thread of its own (so the disk never waits on the network, nor the network on the
//! disk), straight to the disk in 1 MiB runs where the file system allows it
//! ([`nexysync_domain::direct_file`]; else through the page cache, a second thread
//! starting the disk on each 32 MiB as it is written), then `fsync`ed, renamed into place
//! and its directory `fsync`ed, all before the CDN answers. Reads, sizes and deletes still go through
//! `object_store` over the same directory.
//!
//! Staging files live in `<dir>/.staging/`, outside any blob key (keys are two UUIDs). One
//! that is cut off, refused or dropped is removed by its writer; one left by a crash is
//! removed by [`DiskBlobs::sweep_staging`] once nothing has written to it for an hour.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use nexysync_domain::direct_file::DurableFile;
use tokio::sync::mpsc;

use crate::error::CdnError;

/// Runs of an upload's pieces queued for its writer: bounded, so memory stays flat when
/// the disk is slower than the network (a run is about 1 MiB of request body).
const QUEUED_RUNS: usize = 4;
/// Pieces handed to one `writev`.
const PIECES_PER_WRITE: usize = 64;
/// A staging file untouched for this long belongs to no running upload.
pub(crate) const STALE_STAGING: Duration = Duration::from_secs(3600);

/// What the writer of an upload is told.
#[derive(Debug)]
enum Piece {
    Bytes(Vec<Bytes>),
    /// Every byte was sent: make it durable and give it its name.
    Finish,
}

/// The blob directory on local disk.
#[derive(Debug)]
pub(crate) struct DiskBlobs {
    root: PathBuf,
    staging: PathBuf,
}

impl DiskBlobs {
    /// The blob directory `root` (created by the caller) and its staging directory.
    pub(crate) fn open(root: &Path) -> std::io::Result<Self> {
        let staging = root.join(".staging");
        std::fs::create_dir_all(&staging)?;
        let blobs = Self {
            root: root.to_owned(),
            staging,
        };
        blobs.sweep_staging(STALE_STAGING);
        Ok(blobs)
    }

    /// Starts a durable upload of the blob `key` (`<project>/<file>`).
    pub(crate) async fn start(&self, key: &str) -> Result<DurableUpload, CdnError> {
        let staging = self
            .staging
            .join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        let dest = self.root.join(key);
        let (tx, rx) = mpsc::channel(QUEUED_RUNS);
        let file = {
            let staging = staging.clone();
            tokio::task::spawn_blocking(move || DurableFile::create_new(&staging))
                .await
                .map_err(|e| CdnError::Disk(std::io::Error::other(e)))?
                .map_err(CdnError::Disk)?
        };
        let root = self.root.clone();
        let writer = tokio::task::spawn_blocking({
            let staging = staging.clone();
            move || write_upload(file, rx, &staging, &dest, &root)
        });
        Ok(DurableUpload { tx, writer })
    }

    /// Removes staging files nothing has written to for `older_than`: left by a crash.
    pub(crate) fn sweep_staging(&self, older_than: Duration) {
        let Ok(entries) = std::fs::read_dir(&self.staging) else {
            return;
        };
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age >= older_than);
            if stale {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => tracing::info!("removed the staging file of an interrupted upload"),
                    Err(e) => tracing::warn!(error = %e, "could not remove a stale staging file"),
                }
            }
        }
    }
}

/// An upload in progress. Dropped without [`DurableUpload::finish`], its staging file is
/// removed and nothing appears under the blob's name.
#[derive(Debug)]
pub(crate) struct DurableUpload {
    tx: mpsc::Sender<Piece>,
    writer: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl DurableUpload {
    /// Queues `run`, the next pieces, for the writer (waits while the queue is full).
    pub(crate) async fn write(&mut self, run: Vec<Bytes>) -> Result<(), CdnError> {
        if self.tx.send(Piece::Bytes(run)).await.is_ok() {
            return Ok(());
        }
        // The writer stopped: its error says why.
        Err(match (&mut self.writer).await {
            Ok(Err(e)) => CdnError::Disk(e),
            _ => CdnError::Disk(std::io::Error::other("the blob writer stopped")),
        })
    }

    /// Stops the upload and waits until its writer has removed the staging file.
    pub(crate) async fn abort(self) {
        drop(self.tx);
        // The writer's error only says that the upload stopped, which the caller knows.
        let _ = self.writer.await;
    }

    /// Waits until every byte is on disk under the blob's name.
    pub(crate) async fn finish(self) -> Result<(), CdnError> {
        let _ = self.tx.send(Piece::Finish).await;
        drop(self.tx);
        match self.writer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(CdnError::BlobExists)
            }
            Ok(Err(e)) => Err(CdnError::Disk(e)),
            Err(e) => Err(CdnError::Disk(std::io::Error::other(e))),
        }
    }
}

/// Moves the finished `staging` file to `dest` unless `dest` exists (`AlreadyExists`): a
/// blob is written once. Linked, not renamed, so the check and the move are one step; on a
/// file system without hard links, checked, then renamed.
fn place_once(staging: &Path, dest: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(staging, dest) {
        Ok(()) => {
            // The blob is in place: a staging file left behind is the sweep's, not an
            // error of the upload.
            if let Err(e) = std::fs::remove_file(staging) {
                tracing::warn!(error = %e, "could not remove an upload's staging file");
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        Err(e) if dest.exists() => Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, e)),
        Err(e) => {
            tracing::debug!(error = %e, "no hard link here; renaming the upload into place");
            std::fs::rename(staging, dest)
        }
    }
}

/// The writer thread of one upload: writes what arrives; on `Finish`, `fsync`s, moves it
/// under its name (unless taken) and `fsync`s the directory; on a closed queue without
/// it, removes the staging file.
fn write_upload(
    mut file: DurableFile,
    mut rx: mpsc::Receiver<Piece>,
    staging: &Path,
    dest: &Path,
    root: &Path,
) -> std::io::Result<()> {
    let written = (|| {
        let mut batch: Vec<Bytes> = Vec::with_capacity(PIECES_PER_WRITE);
        let mut finished = false;
        while !finished {
            let Some(piece) = rx.blocking_recv() else {
                break;
            };
            let mut next = Some(piece);
            while let Some(piece) = next.take() {
                match piece {
                    Piece::Bytes(run) => batch.extend(run),
                    Piece::Finish => finished = true,
                }
                if !finished && batch.len() < PIECES_PER_WRITE {
                    next = rx.try_recv().ok();
                }
            }
            file.write_pieces(&batch)?;
            batch.clear();
        }
        if !finished {
            return Ok(false);
        }
        file.sync_all()?;
        let parent = dest.parent().unwrap_or(root);
        let created = !parent.exists();
        std::fs::create_dir_all(parent)?;
        place_once(staging, dest)?;
        // The new name (and a new project directory) must survive a crash too.
        File::open(parent)?.sync_all()?;
        if created {
            File::open(root)?.sync_all()?;
        }
        Ok(true)
    })();
    match written {
        Ok(true) => Ok(()),
        Ok(false) => {
            let _ = std::fs::remove_file(staging);
            Err(std::io::Error::other("the upload stopped before its end"))
        }
        Err(e) => {
            let _ = std::fs::remove_file(staging);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    // A test: a panic is the failure report.
    #![allow(clippy::unwrap_used)]

    use nexysync_domain::flushing_file::FLUSH_EVERY;

    use super::*;

    #[test]
    fn only_staging_files_nothing_wrote_to_for_long_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = DiskBlobs::open(dir.path()).unwrap();
        let stale = blobs.staging.join("stale.part");
        let fresh = blobs.staging.join("fresh.part");
        std::fs::write(&stale, b"left by a crash").unwrap();
        std::fs::write(&fresh, b"being written").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        blobs.sweep_staging(STALE_STAGING);
        assert!(!stale.exists());
        assert!(fresh.exists());
    }

    #[tokio::test]
    async fn an_upload_larger_than_a_background_flush_is_stored_whole() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = DiskBlobs::open(dir.path()).unwrap();
        let piece: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let pieces = (FLUSH_EVERY / piece.len() as u64) * 2 + 3;
        let mut upload = blobs.start("p/large").await.unwrap();
        for _ in 0..pieces {
            upload
                .write(vec![Bytes::from(piece.clone())])
                .await
                .unwrap();
        }
        upload.finish().await.unwrap();
        let stored = std::fs::read(dir.path().join("p/large")).unwrap();
        assert_eq!(stored.len() as u64, pieces * piece.len() as u64);
        assert!(stored.chunks(piece.len()).all(|c| c == &piece[..]));
    }

    #[tokio::test]
    async fn a_finished_upload_is_renamed_into_place_and_a_dropped_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = DiskBlobs::open(dir.path()).unwrap();
        let mut upload = blobs.start("p/kept").await.unwrap();
        for piece in [&b"first "[..], b"second"] {
            upload.write(vec![Bytes::from_static(piece)]).await.unwrap();
        }
        upload.finish().await.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("p/kept")).unwrap(),
            b"first second"
        );

        let mut dropped = blobs.start("p/dropped").await.unwrap();
        dropped
            .write(vec![Bytes::from_static(b"half")])
            .await
            .unwrap();
        drop(dropped);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_dir(&blobs.staging).unwrap().next().is_some() {
            assert!(std::time::Instant::now() < deadline, "staging file left");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!dir.path().join("p/dropped").exists());
    }

    #[tokio::test]
    async fn a_name_already_stored_is_kept_and_the_second_upload_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = DiskBlobs::open(dir.path()).unwrap();
        for (body, done) in [(&b"the first"[..], true), (b"a swap", false)] {
            let mut upload = blobs.start("p/once").await.unwrap();
            upload.write(vec![Bytes::from_static(body)]).await.unwrap();
            let finished = upload.finish().await;
            assert_eq!(finished.is_ok(), done, "{finished:?}");
            if !done {
                assert!(
                    matches!(finished, Err(CdnError::BlobExists)),
                    "{finished:?}"
                );
            }
        }
        assert_eq!(
            std::fs::read(dir.path().join("p/once")).unwrap(),
            b"the first"
        );
        assert!(std::fs::read_dir(&blobs.staging).unwrap().next().is_none());
    }
}

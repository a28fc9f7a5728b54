//! [`FlushingFile`]: a file written front to back and made durable once complete, with
//! the disk kept writing on the way, for the file pipelines (the CDN storing an upload,
//! the agents' client a download) where the file system refuses direct writes
//! ([`crate::direct_file`]). A thread beside the writer `fdatasync`s what is
//! written whenever another [`FLUSH_EVERY`] bytes are in, so the `fsync` at the end has
//! only the tail left instead of the whole file.

use std::fs::File;
use std::io::{IoSlice, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Bytes written between two flushes started in the background.
pub const FLUSH_EVERY: u64 = 32 * 1024 * 1024;

/// Writes to a file, flushing it to disk in the background as it grows.
#[derive(Debug)]
pub struct FlushingFile {
    file: File,
    unflushed: u64,
    /// Asks the flusher for a flush; dropped to stop it.
    flush: Option<mpsc::Sender<()>>,
    /// Answers the first error of a background flush: Linux reports a writeback error
    /// once per open file, and the flusher's handle shares this one's, so the final
    /// `fsync` alone could miss it.
    flusher: Option<JoinHandle<std::io::Result<()>>>,
}

impl FlushingFile {
    /// Writes to `file`. Without a second handle on it (`try_clone` failed) nothing is
    /// flushed before [`FlushingFile::sync_all`], which is still correct, only slower.
    pub fn new(file: File) -> Self {
        let (flush, flushes) = mpsc::channel::<()>();
        let flusher = file.try_clone().ok().map(|clone| {
            std::thread::spawn(move || {
                while flushes.recv().is_ok() {
                    while flushes.try_recv().is_ok() {} // One flush covers every request so far.
                    clone.sync_data()?;
                }
                Ok(())
            })
        });
        Self {
            file,
            unflushed: 0,
            flush: flusher.as_ref().map(|_| flush),
            flusher,
        }
    }

    /// Waits for a flush under way, then `fsync`s: every byte written is on disk, or the
    /// error of the flush or the `fsync` that found otherwise.
    pub fn sync_all(mut self) -> std::io::Result<()> {
        self.stop_flusher()?;
        self.file.sync_all()
    }

    fn stop_flusher(&mut self) -> std::io::Result<()> {
        drop(self.flush.take());
        match self.flusher.take().map(JoinHandle::join) {
            Some(Ok(flushed)) => flushed,
            Some(Err(_)) => Err(std::io::Error::other("the background flush panicked")),
            None => Ok(()),
        }
    }
}

impl FlushingFile {
    /// Counts `written` more bytes, asking for a flush once [`FLUSH_EVERY`] are in.
    fn wrote(&mut self, written: usize) -> usize {
        self.unflushed += written as u64;
        if self.unflushed >= FLUSH_EVERY {
            if let Some(flush) = &self.flush {
                let _ = flush.send(());
            }
            self.unflushed = 0;
        }
        written
    }
}

impl Write for FlushingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(buf)?;
        Ok(self.wrote(written))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        let written = self.file.write_vectored(bufs)?;
        Ok(self.wrote(written))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for FlushingFile {
    /// A transfer abandoned half way leaves no thread behind (its file is removed, so
    /// what a flush found no longer matters).
    fn drop(&mut self) {
        let _ = self.stop_flusher();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_written_across_background_flushes_is_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut out = FlushingFile::new(File::create(&path).unwrap());
        let block: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        let blocks = FLUSH_EVERY as usize / block.len() * 2 + 3;
        for _ in 0..blocks {
            out.write_all(&block).unwrap();
        }
        out.sync_all().unwrap();
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len(), blocks * block.len());
        assert!(written.chunks(block.len()).all(|chunk| chunk == block));
    }
}

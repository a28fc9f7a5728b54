//! An upload's staging file written around the page cache (`O_DIRECT`), where the file
//! system allows it. Copying an upload into the page cache was most of the CDN's upload
//! time on the development VM (`copy_folio_from_iter_atomic`, 36% of the machine's samples
//! during an upload: every byte lands in a page the host had to hand back first), and the
//! `fsync` that acknowledges the upload then had all of it still to write. Written direct,
//! the bytes go from one reused buffer to the disk, and the `fsync` has only the file's
//! size and blocks left.
//!
//! A direct write must start and end on block boundaries and come from an aligned buffer:
//! the pieces of the request are gathered into [`DIRECT_RUN`]-byte runs of one aligned
//! buffer, and the tail is written padded to a block, then cut back to the upload's size.
//! Where the file system refuses direct writes (when opening, or on a write), the upload
//! goes on through the page cache, as [`FlushingFile`] writes it.

use std::fs::File;
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use bytes::Bytes;
use nexysync_domain::flushing_file::FlushingFile;

/// Bytes written to the disk at once: a multiple of any block size.
pub(crate) const DIRECT_RUN: usize = 1 << 20;
/// The alignment of a direct write's buffer, offset and length (the largest logical block
/// size of common disks).
const BLOCK: usize = 4096;

/// Where an upload's bytes go.
pub(crate) enum StagingFile {
    Direct(DirectFile),
    Buffered(FlushingFile),
}

/// A staging file opened with `O_DIRECT` and the run being gathered for it.
pub(crate) struct DirectFile {
    file: File,
    /// [`DIRECT_RUN`] bytes from `start` are the run; `buffer` has room to align it.
    buffer: Vec<u8>,
    start: usize,
    filled: usize,
    /// Bytes written to the file so far (whole runs).
    written: u64,
}

impl StagingFile {
    /// Creates `path` (which must not exist), written direct where the file system allows.
    pub(crate) fn create_new(path: &Path) -> std::io::Result<Self> {
        let direct = File::options()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        match direct {
            Ok(file) => Ok(Self::Direct(DirectFile::new(file))),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!("no direct writes here; uploads go through the page cache");
                Ok(Self::Buffered(FlushingFile::new(File::create_new(path)?)))
            }
            Err(e) => Err(e),
        }
    }

    /// Writes `pieces` after what was written (`path` is the file's, to go on buffered).
    pub(crate) fn write(&mut self, pieces: &[Bytes], path: &Path) -> std::io::Result<()> {
        let mut pieces = pieces;
        while let Self::Direct(direct) = self {
            let Some((piece, rest)) = pieces.split_first() else {
                return Ok(());
            };
            match direct.write(piece) {
                Ok(()) => pieces = rest,
                // The run gathered is written again, then what of the piece it left.
                Err((gathered, e)) if e.raw_os_error() == Some(libc::EINVAL) => {
                    self.go_buffered(path, e)?;
                    if let Self::Buffered(file) = self {
                        file.write_all(&piece[gathered..])?;
                    }
                    pieces = rest;
                }
                Err((_, e)) => return Err(e),
            }
        }
        match self {
            Self::Buffered(file) => write_vectored_all(file, pieces),
            Self::Direct(_) => Ok(()),
        }
    }

    /// Makes everything written durable: the tail written, the size set, then `fsync`.
    pub(crate) fn sync_all(mut self, path: &Path) -> std::io::Result<()> {
        if let Self::Direct(direct) = &mut self {
            if let Err(e) = direct.write_tail() {
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(e);
                }
                self.go_buffered(path, e)?;
            }
        }
        match self {
            Self::Direct(direct) => direct.file.sync_all(),
            Self::Buffered(file) => file.sync_all(),
        }
    }

    /// Goes on through the page cache after a refused direct write: the whole runs written
    /// are kept, the run being gathered is written again.
    fn go_buffered(&mut self, path: &Path, refused: std::io::Error) -> std::io::Result<()> {
        let Self::Direct(direct) = self else {
            return Ok(());
        };
        tracing::debug!(error = %refused, "a direct write was refused; going on through the page cache");
        let mut file = File::options().write(true).open(path)?;
        file.set_len(direct.written)?;
        file.seek(SeekFrom::Start(direct.written))?;
        let mut buffered = FlushingFile::new(file);
        buffered.write_all(direct.run())?;
        *self = Self::Buffered(buffered);
        Ok(())
    }
}

impl DirectFile {
    fn new(file: File) -> Self {
        let buffer = vec![0u8; DIRECT_RUN + BLOCK];
        // Where in the buffer an aligned run starts (always within the spare block).
        let start = buffer.as_ptr().align_offset(BLOCK).min(BLOCK);
        Self {
            file,
            buffer,
            start,
            filled: 0,
            written: 0,
        }
    }

    fn run(&self) -> &[u8] {
        &self.buffer[self.start..self.start + self.filled]
    }

    /// Gathers `piece`, writing each run it fills. A write that fails leaves its run
    /// gathered and answers how much of `piece` was.
    fn write(&mut self, piece: &[u8]) -> Result<(), (usize, std::io::Error)> {
        let mut gathered = 0;
        while gathered < piece.len() {
            let taken = (DIRECT_RUN - self.filled).min(piece.len() - gathered);
            let at = self.start + self.filled;
            self.buffer[at..at + taken].copy_from_slice(&piece[gathered..gathered + taken]);
            self.filled += taken;
            gathered += taken;
            if self.filled == DIRECT_RUN {
                self.file
                    .write_all(&self.buffer[self.start..self.start + DIRECT_RUN])
                    .map_err(|e| (gathered, e))?;
                self.written += DIRECT_RUN as u64;
                self.filled = 0;
            }
        }
        Ok(())
    }

    /// Writes the run being gathered, padded to a whole block, then cuts the file to the
    /// bytes written.
    fn write_tail(&mut self) -> std::io::Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        let padded = self.filled.div_ceil(BLOCK) * BLOCK;
        let at = self.start + self.filled;
        self.buffer[at..self.start + padded].fill(0);
        self.file
            .write_all(&self.buffer[self.start..self.start + padded])?;
        let size = self.written + self.filled as u64;
        self.file.set_len(size)?;
        self.written = size;
        self.filled = 0;
        Ok(())
    }
}

/// Writes every byte of `pieces` with as few `writev` calls as the kernel allows.
fn write_vectored_all(file: &mut FlushingFile, pieces: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|b| IoSlice::new(b)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    // A test: a panic is the failure report.
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn pieces_of_any_size_are_stored_whole_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for size in [
            0,
            1,
            BLOCK - 1,
            BLOCK,
            DIRECT_RUN,
            DIRECT_RUN + 5,
            3 * DIRECT_RUN + 4097,
        ] {
            let path = dir.path().join(format!("{size}.part"));
            let content = pattern(size);
            let mut file = StagingFile::create_new(&path).unwrap();
            let pieces: Vec<Bytes> = content.chunks(65_000).map(Bytes::copy_from_slice).collect();
            for run in pieces.chunks(7) {
                file.write(run, &path).unwrap();
            }
            file.sync_all(&path).unwrap();
            assert!(std::fs::read(&path).unwrap() == content, "{size} bytes");
        }
    }

    #[test]
    fn a_refused_direct_write_goes_on_through_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switched.part");
        let content = pattern(DIRECT_RUN + 12_345);
        let mut file = StagingFile::create_new(&path).unwrap();
        let piece = |range: std::ops::Range<usize>| [Bytes::copy_from_slice(&content[range])];
        file.write(&piece(0..DIRECT_RUN + 10), &path).unwrap();
        file.go_buffered(&path, std::io::Error::from_raw_os_error(libc::EINVAL))
            .unwrap();
        assert!(matches!(file, StagingFile::Buffered(_)));
        file.write(&piece(DIRECT_RUN + 10..content.len()), &path)
            .unwrap();
        file.sync_all(&path).unwrap();
        assert!(std::fs::read(&path).unwrap() == content);
    }

    #[test]
    fn a_direct_write_refused_mid_piece_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refused.part");
        let mut file = StagingFile::create_new(&path).unwrap();
        let StagingFile::Direct(direct) = &mut file else {
            return; // No direct writes on this file system: nothing to refuse.
        };
        // A run that starts off the block boundary: the kernel refuses to write it.
        direct.start += 1;
        let content = pattern(3 * DIRECT_RUN / 2);
        let pieces = [
            Bytes::copy_from_slice(&content[..DIRECT_RUN / 2]),
            Bytes::copy_from_slice(&content[DIRECT_RUN / 2..]),
        ];
        file.write(&pieces, &path).unwrap();
        assert!(matches!(file, StagingFile::Buffered(_)));
        file.sync_all(&path).unwrap();
        assert!(std::fs::read(&path).unwrap() == content);
    }

    #[test]
    fn an_existing_file_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taken.part");
        std::fs::write(&path, b"kept").unwrap();
        assert!(StagingFile::create_new(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
    }
}

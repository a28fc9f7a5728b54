//! A file written around the page cache (`O_DIRECT`) where the file system allows it, for
//! the file pipelines' large writes (the CDN storing an upload, the client writing a
//! download). Copying into the page cache was most of an upload's time on the development
//! VM (`copy_folio_from_iter_atomic`, 36% of the machine's samples during an upload: every
//! byte lands in a page the host had to hand back first), and the `fsync` that makes the
//! file durable then had all of it still to write. Written direct, the bytes go from one
//! reused buffer to the disk, and the `fsync` has only the file's size and blocks left.
//!
//! A direct write must start and end on block boundaries and come from an aligned buffer:
//! what is written is gathered into [`DIRECT_RUN`]-byte runs of one aligned buffer, and the
//! tail is written padded to a block, then cut back to the file's size. Where the file
//! system refuses direct writes (when opening, or on a write), the file goes on through the
//! page cache, as [`FlushingFile`] writes it.

use std::fs::File;
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::flushing_file::FlushingFile;

/// Bytes written to the disk at once: a multiple of any block size.
pub const DIRECT_RUN: usize = 1 << 20;
/// The alignment of a direct write's buffer, offset and length (the largest logical block
/// size of common disks).
const BLOCK: usize = 4096;

/// A file being written, direct or through the page cache; durable once
/// [`DurableFile::sync_all`] returns.
pub struct DurableFile {
    path: PathBuf,
    sink: Sink,
}

enum Sink {
    Direct(DirectFile),
    Buffered(FlushingFile),
}

/// A file opened with `O_DIRECT` and the run being gathered for it.
struct DirectFile {
    file: File,
    /// [`DIRECT_RUN`] bytes from `start` are the run; `buffer` has room to align it.
    buffer: Vec<u8>,
    start: usize,
    filled: usize,
    /// Bytes written to the file so far (whole runs).
    written: u64,
}

impl DurableFile {
    /// Creates `path`, which must not exist.
    pub fn create_new(path: &Path) -> std::io::Result<Self> {
        Self::open(path, File::options().write(true).create_new(true))
    }

    /// Creates `path`, or empties it if it exists.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Self::open(
            path,
            File::options().write(true).create(true).truncate(true),
        )
    }

    fn open(path: &Path, options: &mut std::fs::OpenOptions) -> std::io::Result<Self> {
        let sink = match options.clone().custom_flags(libc::O_DIRECT).open(path) {
            Ok(file) => Sink::Direct(DirectFile::new(file)),
            // No direct writes on this file system.
            Err(e) if refused(&e) => Sink::Buffered(FlushingFile::new(options.open(path)?)),
            Err(e) => return Err(e),
        };
        Ok(Self {
            path: path.to_owned(),
            sink,
        })
    }

    /// Writes `pieces` after what was written.
    pub fn write_pieces<B: AsRef<[u8]>>(&mut self, pieces: &[B]) -> std::io::Result<()> {
        let mut pieces = pieces;
        while let Sink::Direct(direct) = &mut self.sink {
            let Some((piece, rest)) = pieces.split_first() else {
                return Ok(());
            };
            let piece = piece.as_ref();
            match direct.write(piece) {
                Ok(()) => pieces = rest,
                // The run gathered is written again, then what of the piece it left.
                Err((gathered, e)) if refused(&e) => {
                    self.go_buffered()?;
                    self.write_pieces(&[&piece[gathered..]])?;
                    pieces = rest;
                }
                Err((_, e)) => return Err(e),
            }
        }
        match &mut self.sink {
            Sink::Buffered(file) => write_vectored_all(file, pieces),
            Sink::Direct(_) => Ok(()),
        }
    }

    /// Whether the file is being written direct (else through the page cache).
    pub fn is_direct(&self) -> bool {
        matches!(self.sink, Sink::Direct(_))
    }

    /// Makes everything written durable: the tail written, the size set, then `fsync`.
    pub fn sync_all(mut self) -> std::io::Result<()> {
        if let Sink::Direct(direct) = &mut self.sink {
            match direct.write_tail() {
                Err(e) if refused(&e) => self.go_buffered()?,
                other => other?,
            }
        }
        match self.sink {
            Sink::Direct(direct) => direct.file.sync_all(),
            Sink::Buffered(file) => file.sync_all(),
        }
    }

    /// Goes on through the page cache after a refused direct write: the whole runs written
    /// are kept, the run being gathered is written again.
    fn go_buffered(&mut self) -> std::io::Result<()> {
        let Sink::Direct(direct) = &self.sink else {
            return Ok(());
        };
        let mut file = File::options().write(true).open(&self.path)?;
        file.set_len(direct.written)?;
        file.seek(SeekFrom::Start(direct.written))?;
        let mut buffered = FlushingFile::new(file);
        buffered.write_all(direct.run())?;
        self.sink = Sink::Buffered(buffered);
        Ok(())
    }
}

impl std::fmt::Debug for DurableFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableFile")
            .field("path", &self.path)
            .field("direct", &self.is_direct())
            .finish()
    }
}

impl Write for DurableFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_pieces(&[buf])?;
        Ok(buf.len())
    }

    /// Nothing to do: a direct run waits for the next or for [`DurableFile::sync_all`].
    fn flush(&mut self) -> std::io::Result<()> {
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

/// Whether `e` is the kernel refusing a direct open or write (`EINVAL`).
fn refused(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// Writes every byte of `pieces` with as few `writev` calls as the kernel allows.
fn write_vectored_all<B: AsRef<[u8]>>(
    file: &mut FlushingFile,
    pieces: &[B],
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|b| IoSlice::new(b.as_ref())).collect();
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

    use bytes::Bytes;

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
            let mut file = DurableFile::create_new(&path).unwrap();
            let pieces: Vec<Bytes> = content.chunks(65_000).map(Bytes::copy_from_slice).collect();
            for run in pieces.chunks(7) {
                file.write_pieces(run).unwrap();
            }
            file.sync_all().unwrap();
            assert!(std::fs::read(&path).unwrap() == content, "{size} bytes");
        }
    }

    #[test]
    fn a_refused_direct_write_goes_on_through_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switched.part");
        let content = pattern(DIRECT_RUN + 12_345);
        let mut file = DurableFile::create_new(&path).unwrap();
        let piece = |range: std::ops::Range<usize>| [Bytes::copy_from_slice(&content[range])];
        file.write_pieces(&piece(0..DIRECT_RUN + 10)).unwrap();
        file.go_buffered().unwrap();
        assert!(!file.is_direct());
        file.write_pieces(&piece(DIRECT_RUN + 10..content.len()))
            .unwrap();
        file.sync_all().unwrap();
        assert!(std::fs::read(&path).unwrap() == content);
    }

    #[test]
    fn a_direct_write_refused_mid_piece_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refused.part");
        let mut file = DurableFile::create_new(&path).unwrap();
        let Sink::Direct(direct) = &mut file.sink else {
            return; // No direct writes on this file system: nothing to refuse.
        };
        // A run that starts off the block boundary: the kernel refuses to write it.
        direct.start += 1;
        let content = pattern(3 * DIRECT_RUN / 2);
        let pieces = [
            Bytes::copy_from_slice(&content[..DIRECT_RUN / 2]),
            Bytes::copy_from_slice(&content[DIRECT_RUN / 2..]),
        ];
        file.write_pieces(&pieces).unwrap();
        assert!(!file.is_direct());
        file.sync_all().unwrap();
        assert!(std::fs::read(&path).unwrap() == content);
    }

    #[test]
    fn a_file_written_through_write_is_stored_whole_and_create_empties_it_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("written");
        std::fs::write(&path, pattern(3 * BLOCK)).unwrap();
        let content = pattern(DIRECT_RUN + 3);
        let mut file = DurableFile::create(&path).unwrap();
        file.write_all(&content[..10]).unwrap();
        file.write_all(&content[10..]).unwrap();
        file.flush().unwrap();
        file.sync_all().unwrap();
        assert!(std::fs::read(&path).unwrap() == content);
    }

    #[test]
    fn an_existing_file_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taken.part");
        std::fs::write(&path, b"kept").unwrap();
        assert!(DurableFile::create_new(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
    }
}

//! The two pipelines of a file transfer, each a blocking thread beside the async HTTP
//! side: reading and sealing an upload into pooled 1 MiB pieces, and authenticating,
//! decrypting and writing a download 1 MiB at a time.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use nexysync_domain::crypto::file_stream::{
    FileDecryptor, FileEncryptor, FILE_CHUNK_SIZE, FILE_HEADER_LEN, FILE_TAG_LEN,
};
use nexysync_domain::crypto::ContentKeys;
use nexysync_domain::ids::ProjectId;
use nexysync_domain::pieces::PiecePool;

use super::{file_error, FileSource, SharedFile};
use crate::client::ClientError;

/// Chunks sealed per piece sent to the CDN (1 MiB of plaintext).
const CHUNKS_PER_PIECE: usize = 16;
/// Pieces sealed ahead of the socket.
const PIECES_AHEAD: usize = 4;
/// Ciphertext pieces received ahead of the decrypting thread.
pub(super) const RECEIVED_AHEAD: usize = 16;
/// Plaintext gathered per write of a download.
const WRITE_PIECE: usize = 1024 * 1024;

/// The first error of a background stage, for the caller to report instead of the broken
/// stream it caused.
pub(super) type Failure = Arc<Mutex<Option<ClientError>>>;

pub(super) fn fail(failure: &Failure, error: ClientError) -> std::io::Error {
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
pub(super) fn encrypt_in_background(
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

/// What the decrypting thread is handed.
pub(super) enum Received {
    Ciphertext(Bytes),
    /// The download ended without error: the final chunk may be checked.
    End,
}

/// Authenticates and decrypts what arrives on `rx` into `out`, [`WRITE_PIECE`] at a time,
/// on the calling (blocking) thread; `out` once the final chunk verified.
pub(super) fn decrypt_to<W: std::io::Write>(
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

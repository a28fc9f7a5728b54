//! Chunked file encryption: a file is sealed on the agent's machine in 64 KiB chunks, so a
//! file of any size is encrypted and decrypted with flat memory, and the reader detects a
//! truncated, reordered, swapped or modified chunk at the chunk where it happens.
//!
//! The construction (STREAM-like, AES-256-GCM):
//! - header (56 bytes): magic `NXF1`, chunk size (u32 big-endian), a random 16-byte salt,
//!   and a 32-byte key commitment (HMAC of the commitment subkey over project, file, salt),
//!   so a wrong project key is named as such instead of "chunk 0 is corrupt";
//! - file key: HKDF-SHA256 of the content-encryption subkey, salted with the header salt,
//!   `info` binding project and file id: no two files share a key, so chunk nonces never
//!   repeat across files, and a chunk moved from another file fails to authenticate;
//! - chunk `i`: AES-256-GCM with nonce `i (u64 BE) ‖ 0 0 0 ‖ last` (`last` is 1 on the
//!   final chunk only) and associated data `nexysync/v1/file-chunk ‖ project ‖ file`.
//!   A chunk out of place fails (its index is in the nonce); a file cut at a chunk
//!   boundary lacks the chunk flagged last.
//!
//! Every chunk but the last holds exactly `chunk_size` plaintext bytes; the last holds
//! fewer (possibly none), so a file has `size / chunk_size + 1` chunks and its ciphertext
//! length follows from its size alone ([`ciphertext_len`]).

use std::fmt;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use hmac::Mac;
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::ContentKeys;
use crate::ids::{EventId, ProjectId};

/// Plaintext bytes per chunk.
pub const FILE_CHUNK_SIZE: u32 = 64 * 1024;
/// Bytes of the header that starts every encrypted file.
pub const FILE_HEADER_LEN: usize = 56;
/// Bytes the AEAD tag adds to each chunk.
pub const FILE_TAG_LEN: usize = 16;
const MAGIC: &[u8; 4] = b"NXF1";
/// Smallest and largest chunk sizes a reader accepts (the writer uses [`FILE_CHUNK_SIZE`]).
const CHUNK_RANGE: std::ops::RangeInclusive<u32> = 1024..=(1024 * 1024);

/// Length of the encrypted form of a `size`-byte file in chunks of `chunk_size`.
pub fn ciphertext_len(size: u64, chunk_size: u32) -> Option<u64> {
    if chunk_size == 0 {
        return None;
    }
    let chunks = size / u64::from(chunk_size) + 1;
    chunks
        .checked_mul(FILE_TAG_LEN as u64)?
        .checked_add(size)?
        .checked_add(FILE_HEADER_LEN as u64)
}

/// Why an encrypted file was refused. Each names what went wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileCryptoError {
    #[error("not an encrypted NexySync file (bad header)")]
    BadHeader,
    #[error("the file was encrypted under a different project key or for another file")]
    WrongKey,
    #[error("chunk {index} failed authentication: it was modified, reordered, or taken from another file")]
    ChunkRejected { index: u64 },
    #[error("the encrypted file is truncated: {found} bytes of the {expected} expected")]
    Truncated { expected: u64, found: u64 },
    #[error("the encrypted file ends after chunk {chunks} without its final chunk (truncated)")]
    MissingFinalChunk { chunks: u64 },
    #[error("the encrypted file has data after its final chunk")]
    TrailingData,
}

/// The per-file cipher, shared by the two directions.
struct ChunkCipher {
    cipher: Aes256Gcm,
    ad: [u8; 54],
    chunk: usize,
    index: u64,
}

impl ChunkCipher {
    fn new(
        keys: &ContentKeys,
        project: ProjectId,
        file: EventId,
        salt: &[u8; 16],
        chunk: u32,
    ) -> Self {
        let mut ad = [0u8; 54];
        ad[..22].copy_from_slice(b"nexysync/v1/file-chunk");
        ad[22..38].copy_from_slice(project.as_uuid().as_bytes());
        ad[38..].copy_from_slice(file.as_uuid().as_bytes());
        let hkdf = Hkdf::<Sha256>::new(Some(salt), &keys.encryption);
        let mut key = [0u8; 32];
        hkdf.expand(&ad, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let cipher = Aes256Gcm::new_from_slice(&key).expect("the file key is 32 bytes");
        zeroize::Zeroize::zeroize(&mut key);
        Self {
            cipher,
            ad,
            chunk: chunk as usize,
            index: 0,
        }
    }

    fn nonce(&self, last: bool) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&self.index.to_be_bytes());
        nonce[11] = u8::from(last);
        nonce
    }
}

fn commitment(keys: &ContentKeys, project: ProjectId, file: EventId, salt: &[u8; 16]) -> [u8; 32] {
    let mut mac = keys.mac(&keys.commitment);
    mac.update(b"nexysync/v1/file-commitment\0");
    mac.update(project.as_uuid().as_bytes());
    mac.update(file.as_uuid().as_bytes());
    mac.update(salt);
    mac.finalize().into_bytes().into()
}

/// Encrypts a file as it is read: [`FileEncryptor::push`] the plaintext in pieces of any
/// size, then [`FileEncryptor::finish`]. Output is appended to the caller's buffer.
pub struct FileEncryptor {
    chunks: ChunkCipher,
    buf: Vec<u8>,
    header: Option<[u8; FILE_HEADER_LEN]>,
}

impl fmt::Debug for FileEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileEncryptor(chunk {})", self.chunks.index)
    }
}

impl FileEncryptor {
    /// A fresh encryption of file `file` of `project`, with a random salt.
    pub fn new(keys: &ContentKeys, project: ProjectId, file: EventId) -> Self {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Self::with_salt(keys, project, file, salt)
    }

    /// The same encryption again: with the same salt and plaintext the output is the same
    /// bytes, so a client can hash the ciphertext in one pass and upload it in another.
    pub fn with_salt(
        keys: &ContentKeys,
        project: ProjectId,
        file: EventId,
        salt: [u8; 16],
    ) -> Self {
        let mut header = [0u8; FILE_HEADER_LEN];
        header[..4].copy_from_slice(MAGIC);
        header[4..8].copy_from_slice(&FILE_CHUNK_SIZE.to_be_bytes());
        header[8..24].copy_from_slice(&salt);
        header[24..].copy_from_slice(&commitment(keys, project, file, &salt));
        Self {
            chunks: ChunkCipher::new(keys, project, file, &salt, FILE_CHUNK_SIZE),
            buf: Vec::with_capacity(FILE_CHUNK_SIZE as usize + FILE_TAG_LEN),
            header: Some(header),
        }
    }

    /// The salt, to encrypt the same file again with [`FileEncryptor::with_salt`].
    pub fn salt(&self) -> Option<[u8; 16]> {
        self.header.map(|h| {
            let mut salt = [0u8; 16];
            salt.copy_from_slice(&h[8..24]);
            salt
        })
    }

    /// Encrypts what `plaintext` completes of the current chunks into `out`.
    pub fn push(&mut self, mut plaintext: &[u8], out: &mut Vec<u8>) {
        self.emit_header(out);
        while !plaintext.is_empty() {
            let room = self.chunks.chunk - self.buf.len();
            let take = room.min(plaintext.len());
            self.buf.extend_from_slice(&plaintext[..take]);
            plaintext = &plaintext[take..];
            if self.buf.len() == self.chunks.chunk {
                // A full chunk is never the last one: the last holds fewer bytes.
                self.seal_chunk(false, out);
            }
        }
    }

    /// Encrypts the final chunk (what is left, possibly nothing) into `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.emit_header(out);
        self.seal_chunk(true, out);
    }

    fn emit_header(&mut self, out: &mut Vec<u8>) {
        if let Some(header) = self.header.take() {
            out.extend_from_slice(&header);
        }
    }

    fn seal_chunk(&mut self, last: bool, out: &mut Vec<u8>) {
        let nonce = self.chunks.nonce(last);
        let tag = self
            .chunks
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &self.chunks.ad, &mut self.buf)
            .expect("a chunk is far below AES-GCM's message limit");
        out.extend_from_slice(&self.buf);
        out.extend_from_slice(&tag);
        self.buf.clear();
        self.chunks.index += 1;
    }
}

/// Decrypts an encrypted file as it arrives: [`FileDecryptor::push`] the ciphertext in
/// pieces of any size, then [`FileDecryptor::finish`]. Plaintext is released one
/// authenticated chunk at a time; a caller that must not act on a partial file writes it
/// somewhere temporary until `finish` succeeds.
pub struct FileDecryptor<'k> {
    keys: &'k ContentKeys,
    project: ProjectId,
    file: EventId,
    expected_len: Option<u64>,
    seen: u64,
    chunks: Option<ChunkCipher>,
    buf: Vec<u8>,
}

impl fmt::Debug for FileDecryptor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileDecryptor({} bytes seen)", self.seen)
    }
}

impl<'k> FileDecryptor<'k> {
    /// A reader of file `file` of `project`. With `expected_len` (the ciphertext size the
    /// file was shared with), a short or long file is named as such.
    pub fn new(
        keys: &'k ContentKeys,
        project: ProjectId,
        file: EventId,
        expected_len: Option<u64>,
    ) -> Self {
        Self {
            keys,
            project,
            file,
            expected_len,
            seen: 0,
            chunks: None,
            buf: Vec::with_capacity(FILE_CHUNK_SIZE as usize + FILE_TAG_LEN),
        }
    }

    /// Decrypts every chunk `ciphertext` completes into `out`.
    pub fn push(
        &mut self,
        mut ciphertext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FileCryptoError> {
        self.seen += ciphertext.len() as u64;
        if self
            .expected_len
            .is_some_and(|expected| self.seen > expected)
        {
            return Err(FileCryptoError::TrailingData);
        }
        while !ciphertext.is_empty() {
            let want = match &self.chunks {
                None => FILE_HEADER_LEN,
                Some(chunks) => chunks.chunk + FILE_TAG_LEN,
            };
            let take = (want - self.buf.len()).min(ciphertext.len());
            self.buf.extend_from_slice(&ciphertext[..take]);
            ciphertext = &ciphertext[take..];
            if self.buf.len() < want {
                break;
            }
            match self.chunks {
                None => self.read_header()?,
                // A full-size chunk cannot be the last one.
                Some(_) => self.open_chunk(false, out)?,
            }
        }
        Ok(())
    }

    /// Decrypts the final chunk; fails if the file was cut short or has trailing data.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), FileCryptoError> {
        if let Some(expected) = self.expected_len.filter(|e| self.seen < *e) {
            return Err(FileCryptoError::Truncated {
                expected,
                found: self.seen,
            });
        }
        let Some(chunks) = &self.chunks else {
            return Err(FileCryptoError::BadHeader);
        };
        if self.buf.len() < FILE_TAG_LEN {
            return Err(if self.buf.is_empty() {
                FileCryptoError::MissingFinalChunk {
                    chunks: chunks.index,
                }
            } else {
                FileCryptoError::ChunkRejected {
                    index: chunks.index,
                }
            });
        }
        self.open_chunk(true, out)
    }

    fn read_header(&mut self) -> Result<(), FileCryptoError> {
        let header = &self.buf[..FILE_HEADER_LEN];
        if &header[..4] != MAGIC {
            return Err(FileCryptoError::BadHeader);
        }
        let mut size = [0u8; 4];
        size.copy_from_slice(&header[4..8]);
        let chunk = u32::from_be_bytes(size);
        if !CHUNK_RANGE.contains(&chunk) {
            return Err(FileCryptoError::BadHeader);
        }
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&header[8..24]);
        let expected = commitment(self.keys, self.project, self.file, &salt);
        if !bool::from(expected.ct_eq(&header[24..])) {
            return Err(FileCryptoError::WrongKey);
        }
        self.chunks = Some(ChunkCipher::new(
            self.keys,
            self.project,
            self.file,
            &salt,
            chunk,
        ));
        self.buf.clear();
        Ok(())
    }

    fn open_chunk(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), FileCryptoError> {
        let Some(chunks) = &mut self.chunks else {
            return Err(FileCryptoError::BadHeader);
        };
        let split = self.buf.len() - FILE_TAG_LEN;
        let tag = Tag::clone_from_slice(&self.buf[split..]);
        self.buf.truncate(split);
        let nonce = chunks.nonce(last);
        chunks
            .cipher
            .decrypt_in_place_detached(Nonce::from_slice(&nonce), &chunks.ad, &mut self.buf, &tag)
            .map_err(|_| FileCryptoError::ChunkRejected {
                index: chunks.index,
            })?;
        out.extend_from_slice(&self.buf);
        self.buf.clear();
        chunks.index += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ProjectKey;

    struct Case {
        keys: ContentKeys,
        project: ProjectId,
        file: EventId,
    }

    fn case() -> Case {
        Case {
            keys: ProjectKey::generate().content_keys(),
            project: ProjectId::generate(),
            file: EventId::generate(),
        }
    }

    fn plaintext(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn encrypt(case: &Case, data: &[u8], piece: usize) -> Vec<u8> {
        let mut enc = FileEncryptor::new(&case.keys, case.project, case.file);
        let mut out = Vec::new();
        for part in data.chunks(piece.max(1)) {
            enc.push(part, &mut out);
        }
        enc.finish(&mut out);
        out
    }

    fn decrypt(
        case: &Case,
        data: &[u8],
        expected: Option<u64>,
    ) -> Result<Vec<u8>, FileCryptoError> {
        let mut dec = FileDecryptor::new(&case.keys, case.project, case.file, expected);
        let mut out = Vec::new();
        for part in data.chunks(7_777) {
            dec.push(part, &mut out)?;
        }
        dec.finish(&mut out)?;
        Ok(out)
    }

    const CHUNK: usize = FILE_CHUNK_SIZE as usize;
    const SEALED_CHUNK: usize = CHUNK + FILE_TAG_LEN;

    #[test]
    fn files_of_every_awkward_size_round_trip_with_the_predicted_length() {
        let case = case();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5] {
            let data = plaintext(len);
            let sealed = encrypt(&case, &data, 10_000);
            assert_eq!(
                sealed.len() as u64,
                ciphertext_len(len as u64, FILE_CHUNK_SIZE).unwrap(),
                "length of a {len}-byte file"
            );
            assert_eq!(
                decrypt(&case, &sealed, Some(sealed.len() as u64)).unwrap(),
                data
            );
        }
    }

    #[test]
    fn the_same_salt_gives_the_same_ciphertext() {
        let case = case();
        let data = plaintext(CHUNK + 10);
        let mut first = FileEncryptor::new(&case.keys, case.project, case.file);
        let salt = first.salt().unwrap();
        let mut again = FileEncryptor::with_salt(&case.keys, case.project, case.file, salt);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        first.push(&data, &mut a);
        first.finish(&mut a);
        again.push(&data, &mut b);
        again.finish(&mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn a_file_cut_at_a_chunk_boundary_lacks_its_final_chunk() {
        let case = case();
        let sealed = encrypt(&case, &plaintext(2 * CHUNK + 100), 4096);
        let cut = &sealed[..FILE_HEADER_LEN + 2 * SEALED_CHUNK];
        assert_eq!(
            decrypt(&case, cut, None),
            Err(FileCryptoError::MissingFinalChunk { chunks: 2 })
        );
        assert_eq!(
            decrypt(&case, cut, Some(sealed.len() as u64)),
            Err(FileCryptoError::Truncated {
                expected: sealed.len() as u64,
                found: cut.len() as u64
            })
        );
    }

    #[test]
    fn a_file_cut_inside_a_chunk_is_rejected_at_that_chunk() {
        let case = case();
        let sealed = encrypt(&case, &plaintext(2 * CHUNK + 100), 4096);
        let cut = &sealed[..FILE_HEADER_LEN + SEALED_CHUNK + 500];
        assert_eq!(
            decrypt(&case, cut, None),
            Err(FileCryptoError::ChunkRejected { index: 1 })
        );
    }

    #[test]
    fn reordered_chunks_are_rejected_at_the_first_one_out_of_place() {
        let case = case();
        let mut sealed = encrypt(&case, &plaintext(3 * CHUNK + 100), 4096);
        let (first, second) = (FILE_HEADER_LEN, FILE_HEADER_LEN + SEALED_CHUNK);
        let one: Vec<u8> = sealed[first..second].to_vec();
        let two: Vec<u8> = sealed[second..second + SEALED_CHUNK].to_vec();
        sealed[first..second].copy_from_slice(&two);
        sealed[second..second + SEALED_CHUNK].copy_from_slice(&one);
        assert_eq!(
            decrypt(&case, &sealed, None),
            Err(FileCryptoError::ChunkRejected { index: 0 })
        );
    }

    #[test]
    fn a_chunk_swapped_in_from_another_file_is_rejected() {
        let case = case();
        let other = Case {
            file: EventId::generate(),
            keys: case.keys.clone(),
            project: case.project,
        };
        let data = plaintext(3 * CHUNK);
        let mut sealed = encrypt(&case, &data, 4096);
        let foreign = encrypt(&other, &data, 4096);
        let at = FILE_HEADER_LEN + 2 * SEALED_CHUNK;
        sealed[at..at + SEALED_CHUNK].copy_from_slice(&foreign[at..at + SEALED_CHUNK]);
        assert_eq!(
            decrypt(&case, &sealed, None),
            Err(FileCryptoError::ChunkRejected { index: 2 })
        );
    }

    #[test]
    fn a_flipped_bit_is_rejected_at_its_chunk() {
        let case = case();
        let mut sealed = encrypt(&case, &plaintext(2 * CHUNK), 4096);
        sealed[FILE_HEADER_LEN + SEALED_CHUNK + 3] ^= 1;
        assert_eq!(
            decrypt(&case, &sealed, None),
            Err(FileCryptoError::ChunkRejected { index: 1 })
        );
    }

    #[test]
    fn a_wrong_key_and_a_wrong_file_id_are_named_before_any_chunk() {
        let case = case();
        let sealed = encrypt(&case, &plaintext(100), 4096);
        let wrong_key = Case {
            keys: ProjectKey::generate().content_keys(),
            ..case
        };
        assert_eq!(
            decrypt(&wrong_key, &sealed, None),
            Err(FileCryptoError::WrongKey)
        );
        let wrong_file = Case {
            file: EventId::generate(),
            keys: case.keys.clone(),
            project: case.project,
        };
        assert_eq!(
            decrypt(&wrong_file, &sealed, None),
            Err(FileCryptoError::WrongKey)
        );
    }

    #[test]
    fn trailing_data_and_a_bad_header_are_refused() {
        let case = case();
        let mut sealed = encrypt(&case, &plaintext(100), 4096);
        let expected = sealed.len() as u64;
        sealed.push(0);
        assert_eq!(
            decrypt(&case, &sealed, Some(expected)),
            Err(FileCryptoError::TrailingData)
        );
        assert_eq!(
            decrypt(
                &case,
                b"not a file at all, but long enough to hold a header.....",
                None
            ),
            Err(FileCryptoError::BadHeader)
        );
    }
}

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
//!
//! The chunks are sealed with `ring`'s AES-256-GCM (hand-written AES-NI/VAES and CLMUL
//! code, about four times the RustCrypto `aes-gcm` rate on the development VM); the bytes
//! are standard AES-256-GCM, so files written by either implementation read with the
//! other (a test below holds them to each other). A chunk that arrives whole is sealed or
//! opened where it lies in the caller's buffer, without a copy through a chunk buffer.

use std::fmt;

use hkdf::Hkdf;
use hmac::Mac;
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
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
    key: LessSafeKey,
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
        let unbound = UnboundKey::new(&AES_256_GCM, &key).expect("the file key is 32 bytes");
        zeroize::Zeroize::zeroize(&mut key);
        Self {
            key: LessSafeKey::new(unbound),
            ad,
            chunk: chunk as usize,
            index: 0,
        }
    }

    fn nonce(&self, last: bool) -> Nonce {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&self.index.to_be_bytes());
        nonce[11] = u8::from(last);
        Nonce::assume_unique_for_key(nonce)
    }

    /// Encrypts chunk `index` in place; its tag.
    fn seal(&mut self, last: bool, in_out: &mut [u8]) -> [u8; FILE_TAG_LEN] {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(last), Aad::from(&self.ad), in_out)
            .expect("a chunk is far below AES-GCM's message limit");
        self.index += 1;
        let mut out = [0u8; FILE_TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Authenticates and decrypts chunk `index` in place.
    fn open(&mut self, last: bool, in_out: &mut [u8], tag: &[u8]) -> Result<(), FileCryptoError> {
        let rejected = FileCryptoError::ChunkRejected { index: self.index };
        let tag = Tag::try_from(tag).map_err(|_| rejected.clone())?;
        self.key
            .open_in_place_separate_tag(self.nonce(last), Aad::from(&self.ad), tag, in_out, 0..)
            .map_err(|_| rejected)?;
        self.index += 1;
        Ok(())
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
            let chunk = self.chunks.chunk;
            if self.buf.is_empty() && plaintext.len() >= chunk {
                // A whole chunk: sealed where it lands in `out`, no copy through `buf`.
                let start = out.len();
                out.extend_from_slice(&plaintext[..chunk]);
                let tag = self.chunks.seal(false, &mut out[start..]);
                out.extend_from_slice(&tag);
                plaintext = &plaintext[chunk..];
                continue;
            }
            let take = (chunk - self.buf.len()).min(plaintext.len());
            self.buf.extend_from_slice(&plaintext[..take]);
            plaintext = &plaintext[take..];
            if self.buf.len() == chunk {
                // A full chunk is never the last one: the last holds fewer bytes.
                self.seal_buffered(false, out);
            }
        }
    }

    /// Encrypts the final chunk (what is left, possibly nothing) into `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.emit_header(out);
        self.seal_buffered(true, out);
    }

    /// The header, the first time it is asked for: a caller that seals chunks in its own
    /// buffers ([`FileEncryptor::seal_whole_chunk`]) puts it before the first chunk.
    pub fn take_header(&mut self) -> Option<[u8; FILE_HEADER_LEN]> {
        self.header.take()
    }

    /// Plaintext bytes of every chunk but the last.
    pub fn chunk_size(&self) -> usize {
        self.chunks.chunk
    }

    /// Encrypts `chunk`, exactly [`FileEncryptor::chunk_size`] plaintext bytes read
    /// straight into the caller's buffer, in place; its tag, which follows it in the file.
    /// Not to be mixed with [`FileEncryptor::push`] (whose partial chunk would be skipped).
    pub fn seal_whole_chunk(&mut self, chunk: &mut [u8]) -> [u8; FILE_TAG_LEN] {
        assert!(
            chunk.len() == self.chunks.chunk && self.buf.is_empty(),
            "a whole chunk, with nothing pushed before it"
        );
        self.chunks.seal(false, chunk)
    }

    /// As [`FileEncryptor::seal_whole_chunk`] for the final chunk: fewer plaintext bytes
    /// than a whole chunk (possibly none).
    pub fn seal_final_chunk(mut self, chunk: &mut [u8]) -> [u8; FILE_TAG_LEN] {
        assert!(
            chunk.len() < self.chunks.chunk && self.buf.is_empty(),
            "a final chunk is shorter than a whole one, with nothing pushed before it"
        );
        self.chunks.seal(true, chunk)
    }

    fn emit_header(&mut self, out: &mut Vec<u8>) {
        if let Some(header) = self.header.take() {
            out.extend_from_slice(&header);
        }
    }

    fn seal_buffered(&mut self, last: bool, out: &mut Vec<u8>) {
        let tag = self.chunks.seal(last, &mut self.buf);
        out.extend_from_slice(&self.buf);
        out.extend_from_slice(&tag);
        self.buf.clear();
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
            // A whole chunk (never the final one, which is shorter) that arrived in one
            // piece: opened where it lands in `out`, no copy through `buf`.
            if let Some(chunks) = self.chunks.as_mut().filter(|_| self.buf.is_empty()) {
                if ciphertext.len() >= want {
                    let start = out.len();
                    let split = want - FILE_TAG_LEN;
                    out.extend_from_slice(&ciphertext[..split]);
                    let opened = chunks.open(false, &mut out[start..], &ciphertext[split..want]);
                    if let Err(e) = opened {
                        out.truncate(start);
                        return Err(e);
                    }
                    ciphertext = &ciphertext[want..];
                    continue;
                }
            }
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
        let (body, tag) = self.buf.split_at_mut(split);
        chunks.open(last, body, tag)?;
        out.extend_from_slice(body);
        self.buf.clear();
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

    /// The file format written with RustCrypto's `aes-gcm`, chunk by chunk, as the first
    /// implementation did.
    fn reference_encrypt(case: &Case, data: &[u8], salt: [u8; 16]) -> Vec<u8> {
        use aes_gcm::aead::{AeadInPlace, KeyInit};
        let header_of = FileEncryptor::with_salt(&case.keys, case.project, case.file, salt);
        let mut out = header_of.header.unwrap().to_vec();
        let chunks = ChunkCipher::new(&case.keys, case.project, case.file, &salt, FILE_CHUNK_SIZE);
        let hkdf = Hkdf::<Sha256>::new(Some(&salt), &case.keys.encryption);
        let mut key = [0u8; 32];
        hkdf.expand(&chunks.ad, &mut key).unwrap();
        let cipher = aes_gcm::Aes256Gcm::new_from_slice(&key).unwrap();
        let pieces: Vec<&[u8]> = data.chunks(CHUNK).collect();
        let count = data.len() / CHUNK + 1;
        for index in 0..count {
            let mut piece = pieces.get(index).map_or_else(Vec::new, |p| p.to_vec());
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&(index as u64).to_be_bytes());
            nonce[11] = u8::from(index + 1 == count);
            let tag = cipher
                .encrypt_in_place_detached(
                    aes_gcm::Nonce::from_slice(&nonce),
                    &chunks.ad,
                    &mut piece,
                )
                .unwrap();
            out.extend_from_slice(&piece);
            out.extend_from_slice(&tag);
        }
        out
    }

    #[test]
    fn the_bytes_are_those_of_the_first_implementation_so_old_files_still_open() {
        let case = case();
        for len in [0, 10, CHUNK, 2 * CHUNK + 7] {
            let data = plaintext(len);
            let mut enc = FileEncryptor::new(&case.keys, case.project, case.file);
            let salt = enc.salt().unwrap();
            let mut ours = Vec::new();
            enc.push(&data, &mut ours);
            enc.finish(&mut ours);
            let reference = reference_encrypt(&case, &data, salt);
            assert_eq!(ours, reference, "a {len}-byte file");
            assert_eq!(decrypt(&case, &reference, None).unwrap(), data);
        }
    }

    #[test]
    fn chunks_sealed_in_the_callers_buffers_make_the_same_file_as_push() {
        let case = case();
        for len in [0, 5, CHUNK, 3 * CHUNK + 11] {
            let data = plaintext(len);
            let mut enc = FileEncryptor::new(&case.keys, case.project, case.file);
            let salt = enc.salt().unwrap();
            let mut in_place = enc.take_header().unwrap().to_vec();
            let mut rest = &data[..];
            while rest.len() >= enc.chunk_size() {
                let mut chunk = rest[..CHUNK].to_vec();
                let tag = enc.seal_whole_chunk(&mut chunk);
                in_place.extend_from_slice(&chunk);
                in_place.extend_from_slice(&tag);
                rest = &rest[CHUNK..];
            }
            let mut last = rest.to_vec();
            let tag = enc.seal_final_chunk(&mut last);
            in_place.extend_from_slice(&last);
            in_place.extend_from_slice(&tag);
            assert_eq!(
                in_place,
                reference_encrypt(&case, &data, salt),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn whole_chunks_in_one_piece_and_in_many_decrypt_alike() {
        let case = case();
        let data = plaintext(4 * CHUNK + 3);
        let sealed = encrypt(&case, &data, 1 << 20);
        let mut dec = FileDecryptor::new(&case.keys, case.project, case.file, None);
        let mut out = Vec::new();
        dec.push(&sealed, &mut out).unwrap();
        dec.finish(&mut out).unwrap();
        assert_eq!(out, data);
        let mut tampered = sealed.clone();
        tampered[FILE_HEADER_LEN + 2 * SEALED_CHUNK + 9] ^= 4;
        let mut dec = FileDecryptor::new(&case.keys, case.project, case.file, None);
        let mut out = Vec::new();
        assert_eq!(
            dec.push(&tampered, &mut out),
            Err(FileCryptoError::ChunkRejected { index: 2 })
        );
        assert_eq!(out.len(), 2 * CHUNK, "only the chunks that verified");
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

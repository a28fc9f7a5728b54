//! The audit bundle: a directory that proves a project's history with no server.
//!
//! - `events.jsonl`: one line per event, in log order, `{"seq":N,"event":<envelope>}`, the
//!   envelope byte for byte as the log stored it (so its signature and hash still check).
//! - `manifest.json`: the project, the count, the first and last sequence, the chain head's
//!   hash and the SHA-256 of `events.jsonl`.
//!
//! The manifest's head hash is what to compare with the live log (or a copy published
//! elsewhere): the chain proves every event before it, the head proves none was cut off
//! after it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use nexysync_domain::event::EventHash;
use nexysync_domain::ids::{ProjectId, ProjectName, Seq};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::AuditFailure;

pub const EVENTS_FILE: &str = "events.jsonl";
pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest's `format`.
pub const FORMAT: &str = "nexysync-audit-bundle";
/// The manifest's `version` this code writes and reads.
pub const VERSION: u32 = 1;

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub project: ProjectId,
    /// The name `ProjectCreated` gave the project, when its first event could be read.
    pub project_name: Option<ProjectName>,
    pub events: u64,
    pub first_seq: Seq,
    pub last_seq: Seq,
    /// The hash of the last event: the chain's head.
    pub head_hash: EventHash,
    /// SHA-256 of `events.jsonl`, hex.
    pub events_sha256: String,
    /// When the bundle was written, Unix milliseconds.
    pub exported_at: i64,
}

/// What a bundle holds, as found while reading it; compared with its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    pub events: u64,
    pub first_seq: Seq,
    pub last_seq: Seq,
    pub head_hash: EventHash,
    pub events_sha256: String,
}

/// The bundle itself is not what it claims to be.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{MANIFEST_FILE} is not a NexySync audit bundle manifest (version {VERSION}): {0}")]
    BadManifest(String),
    #[error("line {line} of {EVENTS_FILE} is not {{\"seq\":N,\"event\":{{…}}}}: {reason}")]
    MalformedLine { line: u64, reason: String },
    #[error("{EVENTS_FILE} holds no events")]
    Empty,
    #[error("the manifest says {field} is {manifest}, but {EVENTS_FILE} gives {found}")]
    Mismatch {
        field: &'static str,
        manifest: String,
        found: String,
    },
}

impl Manifest {
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read(&path)
            .with_context(|| format!("failed to read the bundle manifest {}", path.display()))?;
        let manifest: Manifest = serde_json::from_slice(&text)
            .map_err(|e| AuditFailure::from(BundleError::BadManifest(e.to_string())))?;
        if manifest.format != FORMAT || manifest.version != VERSION {
            return Err(AuditFailure::from(BundleError::BadManifest(format!(
                "format `{}` version {}",
                manifest.format, manifest.version
            )))
            .into());
        }
        Ok(manifest)
    }

    /// Every claim of the manifest against what the events file holds.
    pub fn check(&self, found: &Contents) -> Result<(), BundleError> {
        let claims: [(&'static str, String, String); 5] = [
            ("events", self.events.to_string(), found.events.to_string()),
            (
                "first_seq",
                self.first_seq.to_string(),
                found.first_seq.to_string(),
            ),
            (
                "last_seq",
                self.last_seq.to_string(),
                found.last_seq.to_string(),
            ),
            (
                "head_hash",
                self.head_hash.to_hex(),
                found.head_hash.to_hex(),
            ),
            (
                "events_sha256",
                self.events_sha256.clone(),
                found.events_sha256.clone(),
            ),
        ];
        for (field, manifest, found) in claims {
            if manifest != found {
                return Err(BundleError::Mismatch {
                    field,
                    manifest,
                    found,
                });
            }
        }
        Ok(())
    }
}

/// One line of `events.jsonl` for the event stored at `seq`. `None` when the stored bytes
/// are not one line of JSON, which the format cannot hold as stored.
pub fn line(seq: Seq, stored: &[u8]) -> Option<Vec<u8>> {
    if stored.contains(&b'\n') || serde_json::from_slice::<&RawValue>(stored).is_err() {
        return None;
    }
    let mut out = Vec::with_capacity(stored.len() + 32);
    out.extend_from_slice(format!("{{\"seq\":{},\"event\":", seq.0).as_bytes());
    out.extend_from_slice(stored);
    out.extend_from_slice(b"}\n");
    Some(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    seq: u64,
    #[serde(borrow)]
    event: &'a RawValue,
}

/// Reads `events.jsonl` one line at a time, hashing every byte.
#[derive(Debug)]
pub struct BundleReader {
    file: BufReader<File>,
    buf: Vec<u8>,
    line: u64,
    sha256: Sha256,
}

impl BundleReader {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(EVENTS_FILE);
        let file = File::open(&path)
            .with_context(|| format!("failed to open the bundle's events {}", path.display()))?;
        Ok(Self {
            file: BufReader::with_capacity(1 << 20, file),
            buf: Vec::new(),
            line: 0,
            sha256: Sha256::new(),
        })
    }

    /// The next event as stored, or `None` at the end of the file.
    pub fn next_event(&mut self) -> anyhow::Result<Option<(Seq, Bytes)>> {
        self.buf.clear();
        let read = self
            .file
            .read_until(b'\n', &mut self.buf)
            .with_context(|| format!("failed to read {EVENTS_FILE}"))?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;
        self.sha256.update(&self.buf);
        let text = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        let line: Line<'_> = serde_json::from_slice(text).map_err(|e| {
            AuditFailure::from(BundleError::MalformedLine {
                line: self.line,
                reason: e.to_string(),
            })
        })?;
        Ok(Some((
            Seq(line.seq),
            Bytes::copy_from_slice(line.event.get().as_bytes()),
        )))
    }

    /// The SHA-256 of everything read, hex.
    pub fn sha256(&self) -> String {
        hex::encode(self.sha256.clone().finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_holds_the_stored_bytes_exactly_and_reads_back() {
        let stored = br#"{"v":1,"kind":"x","b":[1, 2]}"#;
        let dir = tempfile::tempdir().unwrap();
        let mut text = line(Seq(42), stored).unwrap();
        text.extend(line(Seq(43), b"{}").unwrap());
        std::fs::write(dir.path().join(EVENTS_FILE), &text).unwrap();
        let mut reader = BundleReader::open(dir.path()).unwrap();
        let (seq, back) = reader.next_event().unwrap().unwrap();
        assert_eq!((seq, &back[..]), (Seq(42), &stored[..]));
        assert_eq!(reader.next_event().unwrap().unwrap().0, Seq(43));
        assert!(reader.next_event().unwrap().is_none());
        assert_eq!(reader.sha256(), hex::encode(Sha256::digest(&text)));
    }

    #[test]
    fn stored_bytes_that_are_not_one_line_of_json_cannot_be_bundled() {
        assert!(line(Seq(1), b"{\"a\":\n1}").is_none());
        assert!(line(Seq(1), b"{\"a\":").is_none());
    }

    #[test]
    fn a_malformed_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = line(Seq(1), b"{}").unwrap();
        text.extend_from_slice(b"{\"seq\":2}\n");
        std::fs::write(dir.path().join(EVENTS_FILE), &text).unwrap();
        let mut reader = BundleReader::open(dir.path()).unwrap();
        reader.next_event().unwrap();
        let err = reader.next_event().unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}

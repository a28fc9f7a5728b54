//! `nexysync audit export`: a project's history, as stored, into a bundle that verifies
//! with no server (see [`super::bundle`]).
//!
//! Every event is written, even after one that breaks a rule, so a damaged log can be
//! handed to someone else as evidence; the export then reports the first broken rule and
//! fails. Existing bundle files are never overwritten.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nexysync_domain::audit::AuditError;
use nexysync_domain::event::{Envelope, EventHash};
use nexysync_domain::ids::{ProjectId, Seq};
use sha2::{Digest, Sha256};

use super::bundle::{self, Manifest, EVENTS_FILE, FORMAT, MANIFEST_FILE, VERSION};
use super::progress::Progress;
use super::source::EventSource;
use super::{AuditFailure, ProjectAuditor};
use crate::settings::Settings;

/// A written bundle, and the first rule its events break, if any.
#[derive(Debug)]
pub struct Exported {
    pub manifest: Manifest,
    pub failure: Option<AuditError>,
}

/// Writes `project`'s history as it stands now into the bundle directory `out`.
pub async fn export(
    settings: &Settings,
    project: ProjectId,
    out: &Path,
) -> anyhow::Result<Exported> {
    let events_path = out.join(EVENTS_FILE);
    let manifest_path = out.join(MANIFEST_FILE);
    for path in [&events_path, &manifest_path] {
        if path.exists() {
            bail!(
                "{} already exists; choose an empty --out directory (a bundle is never overwritten)",
                path.display()
            );
        }
    }
    let log = super::open_log(settings).await?;
    let mut source = EventSource::live(&log, project).await?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("failed to create the directory {}", out.display()))?;

    let partial = out.join(format!("{EVENTS_FILE}.partial"));
    let written = write_events(&mut source, project, &partial).await;
    let (contents, failure, name) = match written {
        Ok(done) => done,
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            return Err(err);
        }
    };
    std::fs::rename(&partial, &events_path)
        .with_context(|| format!("failed to move the events into {}", events_path.display()))?;

    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        project,
        project_name: name,
        events: contents.events,
        first_seq: contents.first_seq,
        last_seq: contents.last_seq,
        head_hash: contents.head_hash,
        events_sha256: contents.events_sha256,
        exported_at: now_ms(),
    };
    let mut json = serde_json::to_vec_pretty(&manifest).context("failed to encode the manifest")?;
    json.push(b'\n');
    write_new(&manifest_path, &json)?;
    Ok(Exported { manifest, failure })
}

type Written = (
    bundle::Contents,
    Option<AuditError>,
    Option<nexysync_domain::ids::ProjectName>,
);

async fn write_events(
    source: &mut EventSource,
    project: ProjectId,
    path: &PathBuf,
) -> anyhow::Result<Written> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let mut sha256 = Sha256::new();
    let mut auditor = ProjectAuditor::new(project);
    let mut failure: Option<AuditError> = None;
    let mut progress = Progress::on_terminal("exporting", source.last_seq(), true);
    let (mut events, mut first, mut head) = (0u64, None::<Seq>, None::<(Seq, EventHash)>);
    while let Some((seq, stored)) = source.next_event().await? {
        let unreadable = |reason: &str| {
            AuditFailure::from(AuditError::Unreadable {
                seq,
                reason: reason.into(),
            })
        };
        let line = bundle::line(seq, &stored)
            .ok_or_else(|| unreadable("not one line of JSON, so it cannot be bundled as stored"))?;
        writer
            .write_all(&line)
            .with_context(|| format!("failed to write {}", path.display()))?;
        sha256.update(&line);
        // After the first broken rule the auditor stops; the rest is bundled as evidence.
        let hash = match failure {
            None => match auditor.push_json(seq, &stored) {
                Ok((_, hash)) => hash,
                Err(err) => {
                    failure = Some(err);
                    hash_of(&stored).ok_or_else(|| unreadable("not an event envelope"))?
                }
            },
            Some(_) => hash_of(&stored).ok_or_else(|| unreadable("not an event envelope"))?,
        };
        events += 1;
        first.get_or_insert(seq);
        head = Some((seq, hash));
        progress.tick(events, seq);
    }
    progress.finish();
    if failure.is_none() {
        // A gap no retention tombstone covered shows only at the end (ADR 0012).
        failure = auditor.finish().err();
    }
    let file = writer
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("failed to write {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("failed to write {}", path.display()))?;
    let (Some(first_seq), Some((last_seq, head_hash))) = (first, head) else {
        bail!("the project has no events to export");
    };
    let contents = bundle::Contents {
        events,
        first_seq,
        last_seq,
        head_hash,
        events_sha256: hex::encode(sha256.finalize()),
    };
    Ok((contents, failure, auditor.summary().name))
}

fn hash_of(stored: &[u8]) -> Option<EventHash> {
    serde_json::from_slice::<Envelope>(stored)
        .ok()
        .map(|event| event.hash())
}

fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("failed to write {}", path.display()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

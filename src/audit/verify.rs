//! `nexysync audit verify`: the live log (`--project`) or a bundle (`--bundle`), checked
//! by the domain's auditor; no key needed.

use std::path::Path;

use anyhow::Context;

use nexysync_domain::event::{Envelope, EventHash};
use nexysync_domain::ids::{ProjectId, Seq};

use super::bundle::{BundleError, BundleReader, Contents, Manifest};
use super::parallel::{self, AuditedEvent};
use super::progress::Progress;
use super::source::EventSource;
use super::{AuditError, AuditFailure, AuditSummary, ProjectAuditor};

/// Feeds every event of `source` to a fresh auditor of `project`, then to `each` once it
/// has verified. Stops at the first broken rule ([`AuditFailure`]) or error of `each`.
///
/// Three batches are in flight at once, each stage on the cores while the others run: one
/// being read, the one before it being decoded and hashed ([`parallel::prepare`], which
/// needs no auditor), and the one before that going through the rules and its signatures
/// ([`parallel::audit_prepared`]). `each` sees a batch's events with the auditor as it
/// stands after that batch.
pub async fn walk(
    source: &mut EventSource,
    project: ProjectId,
    progress: &mut Progress,
    mut each: impl FnMut(Seq, &Envelope, EventHash, &ProjectAuditor) -> anyhow::Result<()>,
) -> anyhow::Result<ProjectAuditor> {
    type Audited = (ProjectAuditor, Result<Vec<AuditedEvent>, AuditError>);
    let threads = parallel::threads();
    let mut auditor = Some(ProjectAuditor::new(project));
    let mut events = 0u64;
    let mut read_all = false;
    let mut preparing: Option<tokio::task::JoinHandle<parallel::Prepared>> = None;
    let mut auditing: Option<tokio::task::JoinHandle<Audited>> = None;
    loop {
        let mut batch = Vec::with_capacity(parallel::BATCH);
        while !read_all && batch.len() < parallel::BATCH {
            match source.next_event().await? {
                Some(event) => batch.push(event),
                None => read_all = true,
            }
        }
        if let Some(job) = auditing.take() {
            let (back, audited) = job.await.context("the audit worker stopped")?;
            for audited in audited.map_err(AuditFailure::from)? {
                each(audited.seq, &audited.event, audited.hash, &back)?;
                events += 1;
                progress.tick(events, audited.seq);
            }
            auditor = Some(back);
        }
        if let Some(job) = preparing.take() {
            let prepared = job.await.context("the audit worker stopped")?;
            let mut working = auditor.take().expect("the auditor is back between batches");
            auditing = Some(tokio::task::spawn_blocking(move || {
                let audited = parallel::audit_prepared(&mut working, prepared, threads);
                (working, audited)
            }));
        }
        if !batch.is_empty() {
            preparing = Some(tokio::task::spawn_blocking(move || {
                parallel::prepare(batch, threads)
            }));
        } else if auditing.is_none() && preparing.is_none() {
            break;
        }
    }
    progress.finish();
    let auditor = auditor.expect("the auditor is back once every batch is done");
    // A gap no retention tombstone covered is only known at the end (ADR 0012).
    auditor.finish().map_err(AuditFailure::from)?;
    Ok(auditor)
}

/// Verifies `project`'s history on the live log, up to its last event when reading began.
pub async fn live(
    settings: &crate::settings::Settings,
    project: ProjectId,
) -> anyhow::Result<AuditSummary> {
    let log = super::open_log(settings).await?;
    let mut source = EventSource::live(&log, project).await?;
    let mut progress = Progress::on_terminal("verifying", source.last_seq(), true);
    let auditor = walk(&mut source, project, &mut progress, |_, _, _, _| Ok(())).await?;
    Ok(auditor.summary())
}

/// Verifies a bundle: every event as [`live`] does, then every claim of its manifest.
pub async fn bundle(dir: &Path) -> anyhow::Result<(Manifest, AuditSummary)> {
    let manifest = Manifest::load(dir)?;
    let mut source = EventSource::Bundle(BundleReader::open(dir)?);
    let mut progress = Progress::on_terminal("verifying", Some(manifest.last_seq), true);
    let auditor = walk(
        &mut source,
        manifest.project,
        &mut progress,
        |_, _, _, _| Ok(()),
    )
    .await?;
    let summary = auditor.summary();
    let (Some(first_seq), Some(head)) = (summary.first_seq, summary.head) else {
        return Err(AuditFailure::from(BundleError::Empty).into());
    };
    let events_sha256 = source
        .bundle_sha256()
        .context("a bundle's source hashes what it reads")?;
    let contents = Contents {
        events: summary.events,
        first_seq,
        last_seq: head.seq,
        head_hash: head.hash,
        events_sha256,
    };
    manifest.check(&contents).map_err(AuditFailure::from)?;
    Ok((manifest, summary))
}

/// What `audit verify` prints on success.
pub fn report(summary: &AuditSummary) -> String {
    let name = summary
        .name
        .as_ref()
        .map(|n| format!("`{n}` "))
        .unwrap_or_default();
    let mut out = format!("Verified project {name}(id {})\n", summary.project);
    if let (Some(first), Some(head)) = (summary.first_seq, summary.head) {
        out.push_str(&format!(
            "  events: {} (seq {first} to {})\n  agents: {}\n  head:   seq {}, hash {}\n",
            summary.events,
            head.seq,
            summary.agents,
            head.seq,
            head.hash.to_hex()
        ));
    }
    out.push_str(
        "The first event is the owner's project_created, every registration is signed by the \
         owner key, every agent event by its actor's registered key, and the hash chain is \
         unbroken.\n",
    );
    if summary.erased > 0 {
        out.push_str(&format!(
            "{} expired event(s) were erased by retention; each is proven by its tombstone \
             (hash, signature and chain link, without its content).\n",
            summary.erased
        ));
    }
    out
}

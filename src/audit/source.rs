//! Where an audit reads a project's events from, in log order, as stored.

use anyhow::{bail, Context};
use bytes::Bytes;
use nexysync_domain::ids::{ProjectId, Seq};
use nexysync_log::{EventLog, RawEvent, ReadAhead};

use super::bundle::BundleReader;

/// Batches of the live log read ahead of the audit, which works on the cores meanwhile.
const BATCHES_AHEAD: usize = 4;

/// A project's events, one at a time.
pub enum EventSource {
    /// The project's subject on the live log, up to its last event when reading began,
    /// read ahead by a task of its own.
    Live {
        events: ReadAhead,
        batch: std::vec::IntoIter<RawEvent>,
        last: Seq,
        done: bool,
    },
    /// A bundle's `events.jsonl`.
    Bundle(BundleReader),
}

impl std::fmt::Debug for EventSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Live { last, .. } => write!(f, "EventSource::Live(up to seq {last})"),
            Self::Bundle(_) => f.write_str("EventSource::Bundle"),
        }
    }
}

impl EventSource {
    /// `project`'s history on `log` as it stands now: events appended after this call
    /// are not read.
    pub async fn live(log: &EventLog, project: ProjectId) -> anyhow::Result<Self> {
        let Some(last) = log.last_seq_of(project).await? else {
            bail!(
                "project {project} has no events in the stream `{}` (is the project id or \
                 NEXYSYNC_STREAM_PREFIX wrong?)",
                log.prefix().stream_name()
            );
        };
        let events = log
            .read_project(project, Seq(0))
            .await
            .context("failed to start reading the project's events")?;
        Ok(Self::Live {
            events: ReadAhead::start(events, super::parallel::BATCH, BATCHES_AHEAD),
            batch: Vec::new().into_iter(),
            last,
            done: false,
        })
    }

    /// The last sequence this source will give, when known in advance.
    pub fn last_seq(&self) -> Option<Seq> {
        match self {
            Self::Live { last, .. } => Some(*last),
            Self::Bundle(_) => None,
        }
    }

    /// For a bundle, the SHA-256 of what has been read so far.
    pub fn bundle_sha256(&self) -> Option<String> {
        match self {
            Self::Live { .. } => None,
            Self::Bundle(reader) => Some(reader.sha256()),
        }
    }

    /// The next event as stored, or `None` when there are no more.
    pub async fn next_event(&mut self) -> anyhow::Result<Option<(Seq, Bytes)>> {
        match self {
            Self::Live {
                events,
                batch,
                last,
                done,
            } => {
                if *done {
                    return Ok(None);
                }
                let raw = match batch.next() {
                    Some(raw) => raw,
                    None => {
                        let Some(next) = events.next().await else {
                            bail!("the log stopped delivering before seq {last}");
                        };
                        *batch = next
                            .context("failed to read the project's events")?
                            .into_iter();
                        batch.next().context("the log delivered an empty batch")?
                    }
                };
                *done = raw.seq >= *last;
                Ok(Some((raw.seq, raw.payload)))
            }
            Self::Bundle(reader) => reader.next_event(),
        }
    }
}

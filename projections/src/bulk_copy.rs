//! A rebuild's runs of messages written with `COPY`, instead of the statement the live
//! projector applies them with ([`crate::apply`]): the same rows, without the unnesting,
//! joins, `ON CONFLICT` checks and `RETURNING` the statement has the database do for each
//! message (each row's JSON is still validated).
//!
//! The statement decides in SQL which messages to keep and who gets an inbox entry, by
//! joining the run to `agents` and `projects`. Here the writer decides with the same rules,
//! from those rows read first ([`Rosters`]). That holds because a run is only messages,
//! which change neither table, and every other event before it has committed and none
//! after it has started ([`crate::bulk_load`]).
//!
//! The one thing not read first is whether a message's id is taken (the log deduplicates
//! ids per project, so another project's message can reuse one): `COPY` then fails on the
//! key, and the run is applied by the statement instead, which skips that message as the
//! live projector did.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use rustc_hash::{FxHashMap, FxHashSet};
use sqlx::{PgConnection, PgExecutor};
use tracing::warn;
use uuid::Uuid;

use crate::apply::{MessageCounts, MessageRun, RunMessage};
use crate::copy_binary::CopyRows;

/// What the statement joins a message to: its project's default TTL and agents.
#[derive(Debug)]
pub(crate) struct ProjectRoster {
    default_ttl_s: Option<i32>,
    agents: FxHashSet<Uuid>,
}

/// Rosters by project id. A project missing from one [`load_rosters`] answered is
/// unknown to the read models.
pub(crate) type Rosters = FxHashMap<Uuid, Arc<ProjectRoster>>;

/// Reads the rosters of `projects` (those the read models know).
pub(crate) async fn load_rosters(
    db: impl PgExecutor<'_>,
    projects: &[Uuid],
) -> Result<Rosters, sqlx::Error> {
    let rows: Vec<(Uuid, Option<i32>, Vec<Uuid>)> = sqlx::query_as(
        "SELECT p.id, p.default_ttl_s, COALESCE(array_agg(a.id) FILTER (WHERE a.id IS NOT NULL), '{}')
         FROM projects p LEFT JOIN agents a ON a.project_id = p.id
         WHERE p.id = ANY($1)
         GROUP BY p.id, p.default_ttl_s",
    )
    .bind(projects)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, default_ttl_s, agents)| {
            let roster = ProjectRoster {
                default_ttl_s,
                agents: agents.into_iter().collect(),
            };
            (id, Arc::new(roster))
        })
        .collect())
}

/// What [`copy_run`] did.
#[derive(Debug)]
pub(crate) enum Copied {
    /// The run is written; what it adds to the counters.
    Written(MessageCounts),
    /// One of its ids is taken (the constraint named): nothing is written, the
    /// transaction has failed and must be rolled back.
    IdTaken(Option<String>),
}

/// Bytes of rows made before they are sent.
const CHUNK: usize = 1 << 20;

/// Writes `run` with `COPY` in `conn`'s transaction.
pub(crate) async fn copy_run(
    conn: &mut PgConnection,
    run: &MessageRun,
    rosters: &Rosters,
) -> Result<Copied, sqlx::Error> {
    let kept = kept(run, rosters);
    let copied = async {
        copy_each(conn, MESSAGES, &kept, message_row).await?;
        copy_each(conn, INBOX_ENTRIES, &kept, inbox_rows).await?;
        // An erased reply leaves its edge: a message reusing its id makes this one fail.
        copy_each(conn, THREAD_EDGES, &kept, thread_edge_row).await
    };
    match copied.await {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Ok(Copied::IdTaken(e.constraint().map(str::to_owned)));
        }
        result => result?,
    }
    let skipped = run.len() - kept.len();
    if skipped > 0 {
        warn!(skipped, "messages skipped: unknown sender");
    }
    let mut counts = MessageCounts::default();
    for (m, _) in &kept {
        counts.add(*m.project, m.sent_at.date_naive(), 1, m.sealed_len);
    }
    Ok(Copied::Written(counts))
}

const MESSAGES: &str = "COPY messages (id, project_id, seq, sender, recipient, reply_to, topic_ix, ttl_s, sent_at, envelope, expires_at) FROM STDIN (FORMAT binary)";
const INBOX_ENTRIES: &str =
    "COPY inbox_entries (agent_id, seq, message_id) FROM STDIN (FORMAT binary)";
const THREAD_EDGES: &str =
    "COPY thread_edges (child, parent, project_id) FROM STDIN (FORMAT binary)";

/// A message the statement would keep, with its project's roster.
type Kept<'a> = (RunMessage<'a>, &'a ProjectRoster);

/// The statement's rule: a message from an agent of a known project is kept.
fn kept<'a>(run: &'a MessageRun, rosters: &'a Rosters) -> Vec<Kept<'a>> {
    run.messages()
        .filter_map(|m| {
            let roster = rosters.get(m.project)?;
            roster.agents.contains(m.sender).then_some((m, &**roster))
        })
        .collect()
}

/// Copies in the rows `each` makes of every kept message, a chunk at a time; no `COPY`
/// at all when it makes none.
async fn copy_each(
    conn: &mut PgConnection,
    statement: &str,
    kept: &[Kept<'_>],
    each: fn(&mut CopyRows, &Kept<'_>),
) -> Result<(), sqlx::Error> {
    let mut rows = CopyRows::new();
    let mut rest = kept.iter();
    for message in rest.by_ref() {
        each(&mut rows, message);
        if rows.rows() > 0 {
            break;
        }
    }
    if rows.rows() == 0 {
        return Ok(());
    }
    let mut copy = conn.copy_in_raw(statement).await?;
    for message in rest {
        each(&mut rows, message);
        if rows.pending() >= CHUNK {
            copy.send(rows.take()).await?;
        }
    }
    copy.send(rows.finish()).await?;
    copy.finish().await?;
    Ok(())
}

fn message_row(rows: &mut CopyRows, (m, roster): &Kept<'_>) {
    rows.row(11)
        .field(m.id)
        .field(m.project)
        .field(m.seq)
        .field(m.sender)
        .field(m.recipient)
        .field(m.reply_to)
        .field(m.topic_ix)
        .field(m.ttl_s)
        .field(m.sent_at)
        .field(m.envelope_text().as_ref())
        .field(expires_at(m, roster));
}

/// `sent_at + make_interval(secs => COALESCE(ttl_s, default_ttl_s))`.
fn expires_at(m: &RunMessage<'_>, roster: &ProjectRoster) -> Option<DateTime<Utc>> {
    let ttl = m.ttl_s.or(roster.default_ttl_s)?;
    Some(m.sent_at + TimeDelta::seconds(ttl.into()))
}

fn inbox_rows(rows: &mut CopyRows, (m, roster): &Kept<'_>) {
    if let Some(recipient) = reader(m, roster) {
        rows.row(3).field(recipient).field(m.seq).field(m.id);
    }
}

/// Who gets an inbox entry: the recipient of a direct message if it is an agent of the
/// project. A broadcast gets none: it is read where it is (migration 0010).
fn reader<'a>(m: &'a RunMessage<'_>, roster: &'a ProjectRoster) -> Option<&'a Uuid> {
    m.recipient.and_then(|r| roster.agents.get(r))
}

fn thread_edge_row(rows: &mut CopyRows, (m, _): &Kept<'_>) {
    if let Some(parent) = m.reply_to {
        rows.row(3).field(m.id).field(parent).field(m.project);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use nexysync_domain::crypto::SigningKey;
    use nexysync_domain::event::{Actor, Draft, EventBody, MessageSent};
    use nexysync_domain::ids::{AgentId, ProjectId, Seq};

    use super::*;

    fn roster(default_ttl_s: Option<i32>, agents: &[AgentId]) -> Arc<ProjectRoster> {
        Arc::new(ProjectRoster {
            default_ttl_s,
            agents: agents.iter().map(|a| *a.as_uuid()).collect(),
        })
    }

    /// A run of messages (project, sender, recipient, own TTL).
    fn run_of(messages: &[(ProjectId, AgentId, Option<AgentId>, Option<u32>)]) -> MessageRun {
        let key = SigningKey::generate();
        let mut run = MessageRun::default();
        for (i, (project, from, to, ttl_s)) in messages.iter().enumerate() {
            let sent = MessageSent {
                to: *to,
                reply_to: None,
                ttl_s: *ttl_s,
                topic_ix: None,
            };
            let event =
                Draft::new(*project, Actor::Agent(*from), EventBody::MessageSent(sent)).sign(&key);
            let stored = Bytes::from(event.to_json());
            assert!(run.push(Seq(i as u64 + 1), &event, &stored).is_none());
        }
        run
    }

    #[test]
    fn the_rows_follow_the_statements_rules() {
        let (project, elsewhere, unknown) = (
            ProjectId::generate(),
            ProjectId::generate(),
            ProjectId::generate(),
        );
        let [alice, bob, carol, dave] = [(); 4].map(|_| AgentId::generate());
        let rosters: Rosters = [
            (*project.as_uuid(), roster(Some(60), &[alice, bob, carol])),
            (*elsewhere.as_uuid(), roster(None, &[dave])),
        ]
        .into_iter()
        .collect();
        let run = run_of(&[
            (project, alice, Some(bob), Some(5)),
            (project, alice, None, None),
            // An agent of another project, as the sender or the recipient.
            (project, dave, Some(bob), None),
            (project, alice, Some(dave), None),
            (unknown, alice, Some(bob), None),
            (elsewhere, dave, None, None),
        ]);
        let kept = kept(&run, &rosters);
        let seqs: Vec<i64> = kept.iter().map(|(m, _)| m.seq).collect();
        assert_eq!(seqs, [1, 2, 4, 6]);
        let reader_of = |i: usize| {
            let (m, roster) = &kept[i];
            reader(m, roster).copied()
        };
        assert_eq!(reader_of(0), Some(*bob.as_uuid()));
        assert_eq!(reader_of(1), None, "a broadcast is read where it is");
        assert_eq!(reader_of(2), None, "a recipient of another project");
        let expiry = |i: usize| {
            let (m, roster) = &kept[i];
            expires_at(m, roster).map(|at| (at - m.sent_at).num_seconds())
        };
        assert_eq!(
            [expiry(0), expiry(1), expiry(3)],
            [Some(5), Some(60), None],
            "its own TTL, else its project's default"
        );
    }
}

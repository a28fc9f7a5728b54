//! A rebuild's runs of messages written with `COPY`, instead of the statement the live
//! projector applies them with ([`crate::apply`]): the same rows, for a fraction of what
//! the database spends per message on parsing, planning, joins and `ON CONFLICT`.
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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::TimeDelta;
use sqlx::PgConnection;
use tracing::warn;
use uuid::Uuid;

use crate::apply::{MessageCounts, MessageRun, RunMessage};
use crate::copy_binary::CopyRows;

/// What the statement joins a message to: its project's default TTL and agents.
#[derive(Debug)]
pub(crate) struct ProjectRoster {
    default_ttl_s: Option<i32>,
    agents: HashSet<Uuid>,
}

/// The rosters of projects, by id; a project not in it is unknown to the read models.
pub(crate) type Rosters = HashMap<Uuid, Arc<ProjectRoster>>;

/// Reads the rosters of `projects` (those the read models know).
pub(crate) async fn load_rosters(
    conn: &mut PgConnection,
    projects: &[Uuid],
) -> Result<Rosters, sqlx::Error> {
    let rows: Vec<(Uuid, Option<i32>, Vec<Uuid>)> = sqlx::query_as(
        "SELECT p.id, p.default_ttl_s, COALESCE(array_agg(a.id) FILTER (WHERE a.id IS NOT NULL), '{}')
         FROM projects p LEFT JOIN agents a ON a.project_id = p.id
         WHERE p.id = ANY($1)
         GROUP BY p.id, p.default_ttl_s",
    )
    .bind(projects)
    .fetch_all(conn)
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

/// The `SQLSTATE` of a unique violation.
const UNIQUE_VIOLATION: &str = "23505";

/// Writes `run` with `COPY` in `conn`'s transaction, answering what it adds to the
/// counters; `None` when one of its ids is taken, and then the transaction has failed and
/// must be rolled back.
pub(crate) async fn copy_run(
    conn: &mut PgConnection,
    run: &MessageRun,
    rosters: &Rosters,
) -> Result<Option<MessageCounts>, sqlx::Error> {
    let rows = RunRows::of(run, rosters);
    let skipped = run.len() - rows.messages.rows();
    match copy_in(conn, MESSAGES, rows.messages).await {
        Err(e) if is_unique_violation(&e) => return Ok(None),
        result => result?,
    }
    copy_in(conn, INBOX_ENTRIES, rows.inbox_entries).await?;
    copy_in(conn, THREAD_EDGES, rows.thread_edges).await?;
    if skipped > 0 {
        warn!(skipped, "messages skipped: unknown sender");
    }
    Ok(Some(rows.counts))
}

const MESSAGES: &str = "COPY messages (id, project_id, seq, sender, recipient, reply_to, topic_ix, ttl_s, sent_at, envelope, expires_at) FROM STDIN (FORMAT binary)";
const INBOX_ENTRIES: &str =
    "COPY inbox_entries (agent_id, seq, message_id) FROM STDIN (FORMAT binary)";
const THREAD_EDGES: &str =
    "COPY thread_edges (child, parent, project_id) FROM STDIN (FORMAT binary)";

async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    rows: CopyRows,
) -> Result<(), sqlx::Error> {
    if rows.rows() == 0 {
        return Ok(());
    }
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(rows.finish()).await?;
    copy.finish().await?;
    Ok(())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == UNIQUE_VIOLATION)
}

/// The rows a run makes, with the statement's rules: a message from an agent of a known
/// project is kept; it reaches its recipient if that is an agent of the project, or for
/// a broadcast every other agent of it; a reply makes a thread edge.
struct RunRows {
    messages: CopyRows,
    inbox_entries: CopyRows,
    thread_edges: CopyRows,
    counts: MessageCounts,
}

impl RunRows {
    fn of(run: &MessageRun, rosters: &Rosters) -> Self {
        let mut rows = Self {
            messages: CopyRows::new(),
            inbox_entries: CopyRows::new(),
            thread_edges: CopyRows::new(),
            counts: MessageCounts::default(),
        };
        for message in run.messages() {
            let Some(roster) = rosters.get(message.project) else {
                continue;
            };
            if roster.agents.contains(message.sender) {
                rows.add(&message, roster);
            }
        }
        rows
    }

    fn add(&mut self, m: &RunMessage<'_>, roster: &ProjectRoster) {
        // `sent_at + make_interval(secs => COALESCE(ttl_s, default_ttl_s))`.
        let expires_at = m
            .ttl_s
            .or(roster.default_ttl_s)
            .map(|ttl| m.sent_at + TimeDelta::seconds(ttl.into()));
        self.messages
            .row(11)
            .field(m.id)
            .field(m.project)
            .field(m.seq)
            .field(m.sender)
            .field(m.recipient)
            .field(m.reply_to)
            .field(m.topic_ix)
            .field(m.ttl_s)
            .field(m.sent_at)
            .field(m.envelope.as_ref())
            .field(expires_at);
        match m.recipient {
            Some(recipient) if roster.agents.contains(recipient) => {
                self.inbox_entry(recipient, m);
            }
            Some(_) => {}
            None => {
                for agent in roster.agents.iter().filter(|a| *a != m.sender) {
                    self.inbox_entry(agent, m);
                }
            }
        }
        if let Some(parent) = m.reply_to {
            self.thread_edges
                .row(3)
                .field(m.id)
                .field(parent)
                .field(m.project);
        }
        self.counts
            .add(*m.project, m.sent_at.date_naive(), 1, m.sealed_len);
    }

    fn inbox_entry(&mut self, agent: &Uuid, m: &RunMessage<'_>) {
        self.inbox_entries
            .row(3)
            .field(agent)
            .field(m.seq)
            .field(m.id);
    }
}

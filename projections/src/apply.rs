//! Applying events to the read models, inside the batch's transaction: provisioning,
//! KV, code-reference, message-state, profile and file events one by one, runs of
//! consecutive messages in one statement each (a rebuild copies its long runs in instead:
//! [`crate::bulk_copy`]). Content-bearing events also move the quota counters.
//!
//! Every statement is guarded so that an event the log holds but the read models cannot
//! place (an agent of an unknown project, a message from an unknown agent) is skipped
//! rather than poisoning the batch: the API validated everything it appended, so such an
//! event was written around it, and `audit verify` is where it gets reported.

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use nexysync_domain::event::{Actor, Envelope, EventBody};
use nexysync_domain::ids::Seq;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgConnection};
use tracing::warn;

/// Applies a provisioning event (or, one at a time, a message).
pub(crate) async fn apply(
    conn: &mut PgConnection,
    seq: Seq,
    event: &Envelope,
    raw: &[u8],
) -> Result<(), sqlx::Error> {
    let seq = seq.0 as i64;
    let at = DateTime::<Utc>::from_timestamp_millis(event.at).unwrap_or_default();
    match &event.body {
        EventBody::ProjectCreated(created) => {
            sqlx::query(
                "INSERT INTO projects (id, name, owner_key, created_seq, created_at, default_ttl_s, max_ttl_s)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
            )
            .bind(event.project.as_uuid())
            .bind(created.name.as_str())
            .bind(created.owner_key.to_base64())
            .bind(seq)
            .bind(at)
            .bind(ttl_column(created.retention.default_ttl_s))
            .bind(ttl_column(created.retention.max_ttl_s))
            .execute(&mut *conn)
            .await?;
        }
        EventBody::RetentionSet(policy) => {
            sqlx::query("UPDATE projects SET default_ttl_s = $2, max_ttl_s = $3 WHERE id = $1")
                .bind(event.project.as_uuid())
                .bind(ttl_column(policy.default_ttl_s))
                .bind(ttl_column(policy.max_ttl_s))
                .execute(&mut *conn)
                .await?;
        }
        EventBody::EventsErased(erased) => {
            crate::apply_erased::apply_events_erased(conn, seq, event.project, erased).await?;
        }
        EventBody::AgentRegistered(registered) => {
            let inserted = sqlx::query(
                "INSERT INTO agents (id, project_id, name, signing_key, token_hash, registered_seq, registration)
                 SELECT $1, $2, $3, $4, $5, $6, $7
                 WHERE EXISTS (SELECT 1 FROM projects WHERE id = $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(registered.agent.as_uuid())
            .bind(event.project.as_uuid())
            .bind(registered.name.as_str())
            .bind(registered.signing_key.to_base64())
            .bind(registered.token_hash.as_str())
            .bind(seq)
            .bind(std::str::from_utf8(raw).unwrap_or("{}"))
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 0 {
                warn!(
                    seq,
                    "agent registration skipped: unknown project or taken name"
                );
            }
        }
        EventBody::MessageSent(sent) => {
            let Actor::Agent(sender) = event.actor else {
                warn!(seq, "message without an agent actor skipped");
                return Ok(());
            };
            // The expiry counts the project's default in force now, in log order (ADR 0012).
            let inserted = sqlx::query(
                "INSERT INTO messages (id, project_id, seq, sender, recipient, reply_to, topic_ix, ttl_s, sent_at, envelope, expires_at)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                        $9 + make_interval(secs => COALESCE($8, p.default_ttl_s))
                 FROM projects p
                 WHERE p.id = $2 AND EXISTS (SELECT 1 FROM agents WHERE id = $4 AND project_id = $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(event.id.as_uuid())
            .bind(event.project.as_uuid())
            .bind(seq)
            .bind(sender.as_uuid())
            .bind(sent.to.map(|a| *a.as_uuid()))
            .bind(sent.reply_to.map(|m| *m.as_uuid()))
            .bind(sent.topic_ix.as_ref().map(|ix| ix.as_str()))
            .bind(sent.ttl_s.map(|t| t as i32))
            .bind(at)
            .bind(std::str::from_utf8(raw).unwrap_or("{}"))
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 0 {
                warn!(seq, "message skipped: unknown sender or already applied");
                return Ok(());
            }
            // A direct message goes into its recipient's inbox; a broadcast is read where
            // it is (migration 0010).
            if let Some(recipient) = sent.to {
                sqlx::query(
                    "INSERT INTO inbox_entries (agent_id, seq, message_id)
                     SELECT id, $2, $3 FROM agents WHERE id = $1 AND project_id = $4",
                )
                .bind(recipient.as_uuid())
                .bind(seq)
                .bind(event.id.as_uuid())
                .bind(event.project.as_uuid())
                .execute(&mut *conn)
                .await?;
            }
            if let Some(parent) = sent.reply_to {
                // An erased reply leaves its edge: a message reusing its id keeps that one.
                sqlx::query(
                    "INSERT INTO thread_edges (child, parent, project_id) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(event.id.as_uuid())
                .bind(parent.as_uuid())
                .bind(event.project.as_uuid())
                .execute(&mut *conn)
                .await?;
            }
            sqlx::query("UPDATE projects SET message_count = message_count + 1 WHERE id = $1")
                .bind(event.project.as_uuid())
                .execute(&mut *conn)
                .await?;
            count_content(conn, event, at).await?;
        }
        EventBody::KvSet(set) => {
            let Actor::Agent(writer) = event.actor else {
                warn!(seq, "kv_set without an agent actor skipped");
                return Ok(());
            };
            let expires_at = set.ttl_s.and_then(|ttl| {
                DateTime::<Utc>::from_timestamp_millis(event.at + ttl as i64 * 1000)
            });
            // Guarded: only a newer write replaces the entry, only a writer of the project.
            let applied = sqlx::query(
                "INSERT INTO kv_entries (project_id, key_ix, revision, event_id, value_envelope, expires_at, updated_by)
                 SELECT $1, $2, $3, $4, $5, $6, $7
                 WHERE EXISTS (SELECT 1 FROM agents WHERE id = $7 AND project_id = $1)
                 ON CONFLICT (project_id, key_ix) DO UPDATE
                 SET revision = EXCLUDED.revision, event_id = EXCLUDED.event_id,
                     value_envelope = EXCLUDED.value_envelope, expires_at = EXCLUDED.expires_at,
                     updated_by = EXCLUDED.updated_by
                 WHERE kv_entries.revision < EXCLUDED.revision",
            )
            .bind(event.project.as_uuid())
            .bind(set.key_ix.as_str())
            .bind(seq)
            .bind(event.id.as_uuid())
            .bind(std::str::from_utf8(raw).unwrap_or("{}"))
            .bind(expires_at)
            .bind(writer.as_uuid())
            .execute(&mut *conn)
            .await?;
            if applied.rows_affected() == 0 {
                warn!(seq, "kv_set skipped: unknown writer or already applied");
            }
        }
        EventBody::KvDeleted(deleted) => {
            sqlx::query(
                "DELETE FROM kv_entries WHERE project_id = $1 AND key_ix = $2 AND revision < $3",
            )
            .bind(event.project.as_uuid())
            .bind(deleted.key_ix.as_str())
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        EventBody::RefShared(shared) => {
            let Actor::Agent(sender) = event.actor else {
                warn!(seq, "ref_shared without an agent actor skipped");
                return Ok(());
            };
            // Guarded: only a sender (and recipient) of the project, only once.
            let inserted = sqlx::query(
                "INSERT INTO refs (id, project_id, seq, sender, recipient, start_line, end_line, envelope, shared_at)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
                 WHERE EXISTS (SELECT 1 FROM agents WHERE id = $4 AND project_id = $2)
                   AND ($5::uuid IS NULL OR EXISTS (SELECT 1 FROM agents WHERE id = $5 AND project_id = $2))
                 ON CONFLICT DO NOTHING",
            )
            .bind(event.id.as_uuid())
            .bind(event.project.as_uuid())
            .bind(seq)
            .bind(sender.as_uuid())
            .bind(shared.to.map(|a| *a.as_uuid()))
            .bind(i64::from(shared.start_line).min(i64::from(i32::MAX)) as i32)
            .bind(i64::from(shared.end_line).min(i64::from(i32::MAX)) as i32)
            .bind(std::str::from_utf8(raw).unwrap_or("{}"))
            .bind(at)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 0 {
                warn!(seq, "ref_shared skipped: unknown agent or already applied");
                return Ok(());
            }
            count_content(conn, event, at).await?;
        }
        EventBody::AgentProfileUpdated(_) => {
            let Actor::Agent(agent) = event.actor else {
                warn!(seq, "agent_profile_updated without an agent actor skipped");
                return Ok(());
            };
            // Guarded: only an agent of the project, only a newer profile replaces one.
            let applied = sqlx::query(
                "INSERT INTO agent_profiles (agent_id, project_id, seq, envelope)
                 SELECT $1, $2, $3, $4
                 WHERE EXISTS (SELECT 1 FROM agents WHERE id = $1 AND project_id = $2)
                 ON CONFLICT (agent_id) DO UPDATE
                 SET seq = EXCLUDED.seq, envelope = EXCLUDED.envelope
                 WHERE agent_profiles.seq < EXCLUDED.seq",
            )
            .bind(agent.as_uuid())
            .bind(event.project.as_uuid())
            .bind(seq)
            .bind(std::str::from_utf8(raw).unwrap_or("{}"))
            .execute(&mut *conn)
            .await?;
            if applied.rows_affected() == 0 {
                warn!(
                    seq,
                    "agent_profile_updated skipped: unknown agent or already applied"
                );
            }
        }
        EventBody::ReactionAdded(_)
        | EventBody::ReactionRemoved(_)
        | EventBody::MessageRead(_)
        | EventBody::MessagePinned(_)
        | EventBody::MessageUnpinned(_)
        | EventBody::MessageDeleted(_) => {
            crate::apply_state::apply_message_state(conn, seq, event, raw).await?;
        }
        EventBody::FileShared(shared) => {
            let Actor::Agent(sender) = event.actor else {
                warn!(seq, "file_shared without an agent actor skipped");
                return Ok(());
            };
            let inserted = sqlx::query(
                "INSERT INTO files (id, project_id, seq, sender, recipient, size, ciphertext_size, envelope, shared_at)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
                 WHERE EXISTS (SELECT 1 FROM agents WHERE id = $4 AND project_id = $2)
                   AND ($5::uuid IS NULL OR EXISTS (SELECT 1 FROM agents WHERE id = $5 AND project_id = $2))
                 ON CONFLICT DO NOTHING",
            )
            .bind(event.id.as_uuid())
            .bind(event.project.as_uuid())
            .bind(seq)
            .bind(sender.as_uuid())
            .bind(shared.to.map(|a| *a.as_uuid()))
            .bind(shared.size.min(i64::MAX as u64) as i64)
            .bind(shared.ciphertext_size.min(i64::MAX as u64) as i64)
            .bind(std::str::from_utf8(raw).unwrap_or("{}"))
            .bind(at)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 0 {
                warn!(seq, "file_shared skipped: unknown agent or already applied");
            }
            // Committed: the upload is no longer pending (and must not be swept).
            sqlx::query("DELETE FROM pending_uploads WHERE id = $1 AND project_id = $2")
                .bind(event.id.as_uuid())
                .bind(event.project.as_uuid())
                .execute(&mut *conn)
                .await?;
        }
        EventBody::FileDeleted(deleted) => {
            sqlx::query(
                "UPDATE files SET deleted_seq = $3
                 WHERE id = $1 AND project_id = $2 AND deleted_seq IS NULL",
            )
            .bind(deleted.file.as_uuid())
            .bind(event.project.as_uuid())
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// A TTL in seconds as its `integer` column (TTLs are at most 90 days).
fn ttl_column(ttl_s: Option<u32>) -> Option<i32> {
    ttl_s.map(|t| t.min(i32::MAX as u32) as i32)
}

/// One more content-bearing event for the project's quota: a message of its UTC day and
/// its sealed bytes stored.
async fn count_content(
    conn: &mut PgConnection,
    event: &Envelope,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH bytes AS (UPDATE projects SET stored_bytes = stored_bytes + $3 WHERE id = $1)
         INSERT INTO quota_daily (project_id, day, messages)
         SELECT $1, ($2 AT TIME ZONE 'UTC')::date, 1 WHERE EXISTS (SELECT 1 FROM projects WHERE id = $1)
         ON CONFLICT (project_id, day) DO UPDATE SET messages = quota_daily.messages + 1",
    )
    .bind(event.project.as_uuid())
    .bind(at)
    .bind(event.sealed_len() as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Consecutive `MessageSent` events of a batch, as columns, applied in one statement (or,
/// in a rebuild, copied in by [`crate::bulk_copy`]).
#[derive(Debug, Default)]
pub(crate) struct MessageRun {
    ids: Vec<uuid::Uuid>,
    projects: Vec<uuid::Uuid>,
    seqs: Vec<i64>,
    senders: Vec<uuid::Uuid>,
    recipients: Vec<Option<uuid::Uuid>>,
    reply_tos: Vec<Option<uuid::Uuid>>,
    topic_ixs: Vec<Option<String>>,
    ttls: Vec<Option<i32>>,
    sent_ats: Vec<DateTime<Utc>>,
    /// Each event as stored in the log (shared with the batch, not copied).
    envelopes: Vec<Bytes>,
    sealed_lens: Vec<i64>,
}

/// One message of a [`MessageRun`], as the columns of its row.
#[derive(Debug, Clone)]
pub(crate) struct RunMessage<'a> {
    pub id: &'a uuid::Uuid,
    pub project: &'a uuid::Uuid,
    pub seq: i64,
    pub sender: &'a uuid::Uuid,
    pub recipient: Option<&'a uuid::Uuid>,
    pub reply_to: Option<&'a uuid::Uuid>,
    pub topic_ix: Option<&'a str>,
    pub ttl_s: Option<i32>,
    pub sent_at: DateTime<Utc>,
    /// The event as stored in the log.
    pub envelope: &'a [u8],
    pub sealed_len: i64,
}

impl RunMessage<'_> {
    /// The stored event as text (see [`stored_text`]).
    pub fn envelope_text(&self) -> Cow<'_, str> {
        stored_text(self.envelope)
    }
}

/// Messages of a run and what follows from each: the inbox entry of a direct message's
/// recipient (a broadcast is read where it is, migration 0010) and its thread edge.
/// Messages from unknown senders, or already applied, are skipped; `inserted` holds the
/// rest. The statements below add how the run is counted.
macro_rules! apply_messages {
    () => {
        "
WITH batch AS (
    SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[], $5::uuid[],
                         $6::uuid[], $7::text[], $8::int4[], $9::timestamptz[], $10::text[],
                         $11::int8[])
        AS b(id, project_id, seq, sender, recipient, reply_to, topic_ix, ttl_s, sent_at, envelope,
             sealed_len)
),
inserted AS (
    INSERT INTO messages (id, project_id, seq, sender, recipient, reply_to, topic_ix, ttl_s, sent_at, envelope, expires_at)
    SELECT b.id, b.project_id, b.seq, b.sender, b.recipient, b.reply_to, b.topic_ix, b.ttl_s,
           b.sent_at, b.envelope,
           b.sent_at + make_interval(secs => COALESCE(b.ttl_s, p.default_ttl_s))
    FROM batch b JOIN agents a ON a.id = b.sender AND a.project_id = b.project_id
         JOIN projects p ON p.id = b.project_id
    -- In log order, so that of two messages with one id the first is kept, as when they
    -- arrive in different runs.
    ORDER BY b.seq
    ON CONFLICT DO NOTHING
    RETURNING id, project_id, seq, sender, recipient, reply_to, sent_at
),
direct AS (
    INSERT INTO inbox_entries (agent_id, seq, message_id)
    SELECT r.id, i.seq, i.id
    FROM inserted i JOIN agents r ON r.id = i.recipient AND r.project_id = i.project_id
),
edges AS (
    -- An erased reply leaves its edge: a message reusing its id keeps that one.
    INSERT INTO thread_edges (child, parent, project_id)
    SELECT id, reply_to, project_id FROM inserted WHERE reply_to IS NOT NULL
    ON CONFLICT DO NOTHING
)"
    };
}

/// Adds `counted` (messages and bytes by project and UTC day) to the projects' counters
/// and their quota days: CTEs to follow one named `counted`.
macro_rules! write_counted {
    () => {
        ",
counts AS (
    UPDATE projects p SET message_count = p.message_count + c.n, stored_bytes = p.stored_bytes + c.bytes
    FROM (SELECT project_id, SUM(n) AS n, SUM(bytes) AS bytes FROM counted GROUP BY project_id) c
    WHERE p.id = c.project_id
),
daily AS (
    INSERT INTO quota_daily (project_id, day, messages)
    SELECT project_id, day, n FROM counted
    ON CONFLICT (project_id, day) DO UPDATE SET messages = quota_daily.messages + EXCLUDED.messages
)"
    };
}

/// A run applied and counted at once: the projects' message counts and stored bytes, and
/// their quota days. Answers how many messages were applied.
const APPLY_MESSAGES: &str = concat!(
    apply_messages!(),
    ",
counted AS (
    SELECT i.project_id, (i.sent_at AT TIME ZONE 'UTC')::date AS day, COUNT(*) AS n,
           SUM(b.sealed_len)::int8 AS bytes
    FROM inserted i JOIN batch b ON b.seq = i.seq GROUP BY 1, 2
)",
    write_counted!(),
    "
SELECT COALESCE(SUM(n), 0)::int8 FROM counted"
);

/// A run applied, answering the sequences of the messages applied: the caller counts them
/// (see [`MessageCounts`]). Cheaper than counting here, which needs the run twice.
const APPLY_MESSAGES_UNCOUNTED: &str = concat!(
    apply_messages!(),
    "\nSELECT COALESCE(array_agg(seq), '{}') FROM inserted"
);

/// What runs of messages add to their projects' counters, gathered so that runs applied
/// side by side (a rebuild's) need not all update the same rows: see
/// [`MessageCounts::write`].
#[derive(Debug, Default)]
pub(crate) struct MessageCounts {
    by_day: HashMap<(uuid::Uuid, NaiveDate), (i64, i64)>,
}

impl MessageCounts {
    pub(crate) fn add(&mut self, project: uuid::Uuid, day: NaiveDate, messages: i64, bytes: i64) {
        let entry = self.by_day.entry((project, day)).or_default();
        entry.0 += messages;
        entry.1 += bytes;
    }

    /// Adds everything in `other`.
    pub(crate) fn merge(&mut self, other: MessageCounts) {
        for ((project, day), (messages, bytes)) in other.by_day {
            self.add(project, day, messages, bytes);
        }
    }

    /// Adds the counts to the projects and their quota days, and empties them.
    pub(crate) async fn write(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.by_day.is_empty() {
            return Ok(());
        }
        let counts = std::mem::take(&mut self.by_day);
        let (mut projects, mut days, mut messages, mut bytes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((project, day), (n, b)) in counts {
            projects.push(project);
            days.push(day);
            messages.push(n);
            bytes.push(b);
        }
        sqlx::query(concat!(
            "WITH counted AS (
    SELECT * FROM UNNEST($1::uuid[], $2::date[], $3::int8[], $4::int8[]) AS c(project_id, day, n, bytes)
)",
            write_counted!(),
            "
SELECT 1"
        ))
        .bind(&projects)
        .bind(&days)
        .bind(&messages)
        .bind(&bytes)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

impl MessageRun {
    /// Adds `event` if it is a message from an agent; otherwise hands it back.
    pub(crate) fn push<'a>(
        &mut self,
        seq: Seq,
        event: &'a Envelope,
        raw: &Bytes,
    ) -> Option<&'a Envelope> {
        let (EventBody::MessageSent(sent), Actor::Agent(sender)) = (&event.body, event.actor)
        else {
            return Some(event);
        };
        self.ids.push(*event.id.as_uuid());
        self.projects.push(*event.project.as_uuid());
        self.seqs.push(seq.0 as i64);
        self.senders.push(*sender.as_uuid());
        self.recipients.push(sent.to.map(|a| *a.as_uuid()));
        self.reply_tos.push(sent.reply_to.map(|m| *m.as_uuid()));
        self.topic_ixs
            .push(sent.topic_ix.as_ref().map(|ix| ix.as_str().to_owned()));
        self.ttls.push(sent.ttl_s.map(|t| t as i32));
        self.sent_ats
            .push(DateTime::<Utc>::from_timestamp_millis(event.at).unwrap_or_default());
        self.envelopes.push(raw.clone());
        self.sealed_lens.push(event.sealed_len() as i64);
        None
    }

    /// Applies the run, with its counts, and empties it.
    pub(crate) async fn flush(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let run = std::mem::take(self);
        let applied: i64 = sqlx::query_scalar_with(APPLY_MESSAGES, run.arguments()?)
            .fetch_one(&mut *conn)
            .await?;
        run.warn_skipped(applied);
        Ok(())
    }

    /// Applies the run and empties it, answering its counts instead of writing them.
    pub(crate) async fn flush_uncounted(
        &mut self,
        conn: &mut PgConnection,
    ) -> Result<MessageCounts, sqlx::Error> {
        let mut counts = MessageCounts::default();
        if self.ids.is_empty() {
            return Ok(counts);
        }
        let run = std::mem::take(self);
        let mut applied: Vec<i64> =
            sqlx::query_scalar_with(APPLY_MESSAGES_UNCOUNTED, run.arguments()?)
                .fetch_one(&mut *conn)
                .await?;
        // The run's sequences ascend, as the log's do.
        applied.sort_unstable();
        let mut applied_seqs = applied.iter().peekable();
        for (i, seq) in run.seqs.iter().enumerate() {
            if applied_seqs.next_if_eq(&seq).is_some() {
                let day = run.sent_ats[i].date_naive();
                counts.add(run.projects[i], day, 1, run.sealed_lens[i]);
            }
        }
        let applied = applied.len() as i64;
        run.warn_skipped(applied);
        Ok(counts)
    }

    /// How many messages the run holds.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The ids of the run's messages.
    pub(crate) fn ids(&self) -> &[uuid::Uuid] {
        &self.ids
    }

    /// The project of each of the run's messages.
    pub(crate) fn projects(&self) -> &[uuid::Uuid] {
        &self.projects
    }

    /// The run's messages, in log order.
    pub(crate) fn messages(&self) -> impl Iterator<Item = RunMessage<'_>> {
        (0..self.ids.len()).map(|i| RunMessage {
            id: &self.ids[i],
            project: &self.projects[i],
            seq: self.seqs[i],
            sender: &self.senders[i],
            recipient: self.recipients[i].as_ref(),
            reply_to: self.reply_tos[i].as_ref(),
            topic_ix: self.topic_ixs[i].as_deref(),
            ttl_s: self.ttls[i],
            sent_at: self.sent_ats[i],
            envelope: &self.envelopes[i],
            sealed_len: self.sealed_lens[i],
        })
    }

    /// The run's columns as the statements' parameters.
    fn arguments(&self) -> Result<PgArguments, sqlx::Error> {
        let mut arguments = PgArguments::default();
        let encode = sqlx::Error::Encode;
        arguments.add(&self.ids).map_err(encode)?;
        arguments.add(&self.projects).map_err(encode)?;
        arguments.add(&self.seqs).map_err(encode)?;
        arguments.add(&self.senders).map_err(encode)?;
        arguments.add(&self.recipients).map_err(encode)?;
        arguments.add(&self.reply_tos).map_err(encode)?;
        arguments.add(&self.topic_ixs).map_err(encode)?;
        arguments.add(&self.ttls).map_err(encode)?;
        arguments.add(&self.sent_ats).map_err(encode)?;
        let envelopes: Vec<Cow<'_, str>> = self.envelopes.iter().map(|e| stored_text(e)).collect();
        let envelopes: Vec<&str> = envelopes.iter().map(|e| e.as_ref()).collect();
        arguments.add(&envelopes).map_err(encode)?;
        arguments.add(&self.sealed_lens).map_err(encode)?;
        Ok(arguments)
    }

    fn warn_skipped(&self, applied: i64) {
        let skipped = self.ids.len() as i64 - applied;
        if skipped > 0 {
            warn!(
                skipped,
                "messages skipped: unknown sender or already applied"
            );
        }
    }
}

/// A stored event as text: it decoded as JSON, so it is UTF-8 but for what decoding
/// skipped, which is replaced rather than refused.
fn stored_text(stored: &[u8]) -> Cow<'_, str> {
    // `from_utf8_lossy` alone would do, but checks several times slower (measured on the
    // rebuild's hot path), so it only handles what fails.
    match std::str::from_utf8(stored) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(stored),
    }
}

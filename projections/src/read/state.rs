//! Queries of message state: what the write path needs to decide a reaction, read mark,
//! pin or deletion; the state that answers carry beside each message (reactions with
//! their sealed emoji, pinned, read by the asking agent, the deletion); who may see an
//! update (for the hub).

use std::collections::HashMap;

use nexysync_domain::crypto::BlindIndex;
use nexysync_domain::decide::{Lookup, TargetFacts};
use nexysync_domain::ids::{AgentId, EventId, ProjectId, Seq};
use sqlx::Row;

use super::{already_applied, stored, ReadModels, StoredJson};
use crate::ProjectionError;

/// What the write path needs to know about a message-state event, in one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateFacts {
    /// The event's own sequence, when this event id was already applied (a retry).
    pub already_applied: Option<(ProjectId, Seq)>,
    pub target: TargetFacts,
}

/// The state of one message as its reader sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageState {
    /// Live `reaction_added` events, oldest first (the emoji stays sealed).
    pub reactions: Vec<StoredJson>,
    pub pinned: bool,
    pub read_by_me: bool,
    /// The sender's `message_deleted`, when the message was deleted.
    pub deletion: Option<StoredJson>,
}

/// Who may see a message: its sender and its recipient (`None`: every agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audience {
    pub sender: AgentId,
    pub recipient: Option<AgentId>,
}

impl ReadModels {
    /// Facts for `caller`'s event `id` about `message`: whether the event was already
    /// applied, whether `caller` may read the message, and its state (with the caller's
    /// reaction of `emoji_ix`, when given).
    pub async fn state_facts(
        &self,
        project: ProjectId,
        caller: AgentId,
        id: EventId,
        message: EventId,
        emoji_ix: Option<&BlindIndex>,
    ) -> Result<StateFacts, ProjectionError> {
        let row = sqlx::query(
            "SELECT (SELECT project_id FROM message_updates WHERE id = $1) AS own_project,
                    (SELECT seq FROM message_updates WHERE id = $1) AS own_seq,
                    m.project_id, m.sender, m.pinned,
                    (m.sender = $3 OR m.recipient = $3 OR m.recipient IS NULL) AS readable,
                    m.deleted_seq IS NOT NULL AS deleted,
                    EXISTS (SELECT 1 FROM message_reads r
                            WHERE r.agent_id = $3 AND r.message_id = m.id) AS read,
                    EXISTS (SELECT 1 FROM message_reactions x
                            WHERE x.message_id = m.id AND x.agent_id = $3 AND x.emoji_ix = $4)
                        AS reacted
             FROM (SELECT 1) AS one
                  LEFT JOIN messages m ON m.id = $2 AND (m.expires_at IS NULL OR m.expires_at > now())",
        )
        .bind(id.as_uuid())
        .bind(message.as_uuid())
        .bind(caller.as_uuid())
        .bind(emoji_ix.map(BlindIndex::as_str))
        .fetch_one(self.pool())
        .await?;
        let found_in: Option<uuid::Uuid> = row.get("project_id");
        let readable: Option<bool> = row.get("readable");
        let lookup = match super::lookup(found_in, project) {
            // A message of this project the caller may not read is as unknown as a
            // missing one.
            Lookup::Found if readable != Some(true) => Lookup::Missing,
            other => other,
        };
        let target = if lookup == Lookup::Found {
            TargetFacts {
                lookup,
                sender: row
                    .get::<Option<uuid::Uuid>, _>("sender")
                    .map(AgentId::from_uuid),
                deleted: row.get::<Option<bool>, _>("deleted").unwrap_or(false),
                pinned: row.get::<Option<bool>, _>("pinned").unwrap_or(false),
                read_by_caller: row.get::<Option<bool>, _>("read").unwrap_or(false),
                caller_reacted: row.get::<Option<bool>, _>("reacted").unwrap_or(false),
            }
        } else {
            TargetFacts {
                lookup,
                ..TargetFacts::default()
            }
        };
        Ok(StateFacts {
            already_applied: already_applied(&row),
            target,
        })
    }

    /// The state `agent` sees of the messages of `project` at sequences `seqs`, by
    /// sequence. Messages without any state are absent.
    pub async fn message_states(
        &self,
        project: ProjectId,
        agent: AgentId,
        seqs: &[Seq],
    ) -> Result<HashMap<Seq, MessageState>, ProjectionError> {
        let mut states: HashMap<Seq, MessageState> = HashMap::new();
        if seqs.is_empty() {
            return Ok(states);
        }
        let seqs: Vec<i64> = seqs
            .iter()
            .map(|s| s.0.min(i64::MAX as u64) as i64)
            .collect();
        let rows = sqlx::query(
            "SELECT m.seq, m.pinned, m.deleted_seq, m.deletion::text AS deletion,
                    EXISTS (SELECT 1 FROM message_reads r
                            WHERE r.agent_id = $2 AND r.message_id = m.id) AS read_by_me
             FROM messages m
             WHERE m.seq = ANY($1) AND m.project_id = $3
               AND (m.pinned OR m.deleted_seq IS NOT NULL
                    OR EXISTS (SELECT 1 FROM message_reads r
                               WHERE r.agent_id = $2 AND r.message_id = m.id))",
        )
        .bind(&seqs)
        .bind(agent.as_uuid())
        .bind(project.as_uuid())
        .fetch_all(self.pool())
        .await?;
        for row in rows {
            let seq = Seq(row.get::<i64, _>("seq") as u64);
            let deletion = row
                .get::<Option<i64>, _>("deleted_seq")
                .zip(row.get::<Option<String>, _>("deletion"))
                .map(|(seq, envelope)| StoredJson {
                    seq: Seq(seq as u64),
                    envelope,
                });
            let state = states.entry(seq).or_default();
            state.pinned = row.get("pinned");
            state.read_by_me = row.get("read_by_me");
            state.deletion = deletion;
        }
        let reactions = sqlx::query(
            "SELECT m.seq AS message_seq, x.seq, x.envelope::text AS envelope
             FROM message_reactions x JOIN messages m ON m.id = x.message_id
             WHERE m.seq = ANY($1) AND m.project_id = $2
             ORDER BY x.seq",
        )
        .bind(&seqs)
        .bind(project.as_uuid())
        .fetch_all(self.pool())
        .await?;
        for row in reactions {
            let message_seq = Seq(row.get::<i64, _>("message_seq") as u64);
            states
                .entry(message_seq)
                .or_default()
                .reactions
                .push(stored(row));
        }
        Ok(states)
    }

    /// The agent's unread inbox after `since` (exclusive): what it has not marked read,
    /// oldest first, at most `limit`.
    pub async fn inbox_unread(
        &self,
        agent: AgentId,
        since: Seq,
        limit: u32,
    ) -> Result<Vec<StoredJson>, ProjectionError> {
        // Everything up to the agent's read-through mark is read.
        let through = crate::inbox_sql::read_through(self.pool(), agent.as_uuid()).await?;
        let since = (since.0.min(i64::MAX as u64) as i64).max(through);
        let rows = sqlx::query(inbox_query!(
            "(m.expires_at IS NULL OR m.expires_at > now())
               AND NOT EXISTS (SELECT 1 FROM message_reads r
                               WHERE r.agent_id = $1 AND r.message_id = m.id)"
        ))
        .bind(agent.as_uuid())
        .bind(since)
        .bind(i64::MAX)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(stored).collect())
    }

    /// The agent's inbox in `(after, upto]` without deleted messages, oldest first, at most
    /// `limit`: the backlog of a resumed stream, which pushes messages as the log holds
    /// them (a deleted one has no content left to push).
    pub async fn stream_backlog(
        &self,
        agent: AgentId,
        after: Seq,
        upto: Seq,
        limit: u32,
    ) -> Result<Vec<StoredJson>, ProjectionError> {
        let rows = sqlx::query(inbox_query!(
            "m.deleted_seq IS NULL AND (m.expires_at IS NULL OR m.expires_at > now())"
        ))
        .bind(agent.as_uuid())
        .bind(after.0.min(i64::MAX as u64) as i64)
        .bind(upto.0.min(i64::MAX as u64) as i64)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(stored).collect())
    }

    /// Who may see message `id` of `project`, if it is one.
    pub async fn audience(
        &self,
        project: ProjectId,
        id: EventId,
    ) -> Result<Option<Audience>, ProjectionError> {
        let row =
            sqlx::query("SELECT sender, recipient FROM messages WHERE id = $1 AND project_id = $2")
                .bind(id.as_uuid())
                .bind(project.as_uuid())
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|row| Audience {
            sender: AgentId::from_uuid(row.get("sender")),
            recipient: row
                .get::<Option<uuid::Uuid>, _>("recipient")
                .map(AgentId::from_uuid),
        }))
    }
}

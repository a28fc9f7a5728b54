//! Queries the API makes of the read models. Every query that returns content is scoped
//! to a project and to what the asking agent may read; events come back as the JSON
//! stored in the log, ready to be sent as they are.

use nexysync_domain::crypto::{PublicKey, TokenHash};
use nexysync_domain::decide::Lookup;
use nexysync_domain::event::RetentionPolicy;
use nexysync_domain::ids::{AgentId, AgentName, EventId, ProjectId, ProjectName, Seq};
use nexysync_domain::wire::ExpiredNode;
use sqlx::{PgPool, Row};

use crate::ProjectionError;

mod files;
mod kv;
mod meta;
mod refs;
mod state;
pub use files::{FileFacts, FileRow, PendingUpload};
pub use kv::{KvCurrent, KvRow};
pub use meta::PresenceRow;
pub use refs::RefFacts;
pub use state::{Audience, MessageState, StateFacts};

/// The most messages of a thread one read answers; `has_more` says when more follow.
pub const THREAD_PAGE: usize = 1_000;

/// A page of a thread as stored: its root, messages in log order, and whether more follow.
#[derive(Debug)]
pub struct ThreadRows {
    pub root: EventId,
    pub messages: Vec<StoredJson>,
    pub has_more: bool,
}

/// An event as stored: its sequence and the envelope's JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJson {
    pub seq: Seq,
    pub envelope: String,
}

/// The agent a token belongs to.
#[derive(Debug, Clone)]
pub struct TokenOwner {
    pub agent: AgentId,
    pub agent_name: AgentName,
    pub project: ProjectId,
    pub project_name: ProjectName,
    pub signing_key: PublicKey,
}

/// What the write path needs to know about a message, read in one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageFacts {
    /// The message's own sequence, when this event id was already applied (a retry).
    pub already_applied: Option<(ProjectId, Seq)>,
    /// The id is another project's message, or was a message erased by retention.
    pub id_taken: bool,
    pub recipient: Lookup,
    pub reply_to: Lookup,
}

/// An agent with its signed registration.
#[derive(Debug, Clone)]
pub struct AgentRecord {
    pub id: AgentId,
    pub name: AgentName,
    pub signing_key: PublicKey,
    pub registration: StoredJson,
    /// The agent's latest `agent_profile_updated`, as stored.
    pub profile: Option<StoredJson>,
}

/// Read access to the read models.
#[derive(Debug, Clone)]
pub struct ReadModels {
    pool: PgPool,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Database(format!("read model holds an invalid {what}: {e}"))
}

impl ReadModels {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The agent holding the token whose hash is `hash`.
    pub async fn token_owner(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<TokenOwner>, ProjectionError> {
        let row = sqlx::query(
            "SELECT a.id, a.name, a.project_id, p.name AS project_name, a.signing_key
             FROM agents a JOIN projects p ON p.id = a.project_id
             WHERE a.token_hash = $1",
        )
        .bind(hash.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(TokenOwner {
                agent: AgentId::from_uuid(row.get("id")),
                agent_name: AgentName::parse(row.get("name"))
                    .map_err(|e| corrupt("agent name", e))?,
                project: ProjectId::from_uuid(row.get("project_id")),
                project_name: ProjectName::parse(row.get("project_name"))
                    .map_err(|e| corrupt("project name", e))?,
                signing_key: PublicKey::from_base64(row.get("signing_key"))
                    .map_err(|e| corrupt("signing key", e))?,
            })
        })
        .transpose()
    }

    /// The project's owner key, if the project exists.
    pub async fn owner_key(
        &self,
        project: ProjectId,
    ) -> Result<Option<PublicKey>, ProjectionError> {
        let key: Option<String> =
            sqlx::query_scalar("SELECT owner_key FROM projects WHERE id = $1")
                .bind(project.as_uuid())
                .fetch_optional(&self.pool)
                .await?;
        key.map(|k| PublicKey::from_base64(&k).map_err(|e| corrupt("owner key", e)))
            .transpose()
    }

    /// The project's retention policy in force (none for an unknown project).
    pub async fn retention(&self, project: ProjectId) -> Result<RetentionPolicy, ProjectionError> {
        let row: Option<(Option<i32>, Option<i32>)> =
            sqlx::query_as("SELECT default_ttl_s, max_ttl_s FROM projects WHERE id = $1")
                .bind(project.as_uuid())
                .fetch_optional(&self.pool)
                .await?;
        let (default_ttl_s, max_ttl_s) = row.unwrap_or_default();
        let seconds = |ttl: Option<i32>| ttl.map(|t| t.max(0) as u32);
        Ok(RetentionPolicy {
            default_ttl_s: seconds(default_ttl_s),
            max_ttl_s: seconds(max_ttl_s),
        })
    }

    /// Whether message `id` was already applied, whether `to` and `reply_to` exist (and
    /// where): one query for the whole of a send's checks.
    pub async fn message_facts(
        &self,
        project: ProjectId,
        id: EventId,
        to: Option<AgentId>,
        reply_to: Option<EventId>,
    ) -> Result<MessageFacts, ProjectionError> {
        let row = sqlx::query(
            "SELECT (SELECT project_id FROM messages WHERE id = $1) AS own_project,
                    (SELECT seq FROM messages WHERE id = $1) AS own_seq,
                    EXISTS (SELECT 1 FROM expired_messages WHERE id = $1) AS erased,
                    (SELECT project_id FROM agents WHERE id = $2) AS recipient_project,
                    (SELECT project_id FROM messages m WHERE id = $3 AND (m.expires_at IS NULL OR m.expires_at > now())) AS parent_project",
        )
        .bind(id.as_uuid())
        .bind(to.map(|a| *a.as_uuid()))
        .bind(reply_to.map(|m| *m.as_uuid()))
        .fetch_one(&self.pool)
        .await?;
        let already_applied = already_applied(&row);
        Ok(MessageFacts {
            already_applied,
            id_taken: row.get::<bool, _>("erased")
                || already_applied.is_some_and(|(owner, _)| owner != project),
            recipient: match to {
                Some(_) => lookup(row.get("recipient_project"), project),
                None => Lookup::NotReferenced,
            },
            reply_to: match reply_to {
                Some(_) => lookup(row.get("parent_project"), project),
                None => Lookup::NotReferenced,
            },
        })
    }

    pub async fn agent_name_taken(
        &self,
        project: ProjectId,
        name: &AgentName,
    ) -> Result<bool, ProjectionError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM agents WHERE project_id = $1 AND name = $2)",
        )
        .bind(project.as_uuid())
        .bind(name.as_str())
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn token_hash_taken(&self, hash: &TokenHash) -> Result<bool, ProjectionError> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM agents WHERE token_hash = $1)")
                .bind(hash.as_str())
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn agent_id_taken(&self, agent: AgentId) -> Result<bool, ProjectionError> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM agents WHERE id = $1)")
                .bind(agent.as_uuid())
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Every agent of the project, in registration order.
    pub async fn agents(&self, project: ProjectId) -> Result<Vec<AgentRecord>, ProjectionError> {
        let rows = sqlx::query(
            "SELECT a.id, a.name, a.signing_key, a.registered_seq, a.registration::text AS registration,
                    p.seq AS profile_seq, p.envelope::text AS profile
             FROM agents a LEFT JOIN agent_profiles p ON p.agent_id = a.id AND p.project_id = a.project_id
             WHERE a.project_id = $1 ORDER BY a.registered_seq",
        )
        .bind(project.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(AgentRecord {
                    id: AgentId::from_uuid(row.get("id")),
                    name: AgentName::parse(row.get("name"))
                        .map_err(|e| corrupt("agent name", e))?,
                    signing_key: PublicKey::from_base64(row.get("signing_key"))
                        .map_err(|e| corrupt("signing key", e))?,
                    registration: StoredJson {
                        seq: Seq(row.get::<i64, _>("registered_seq") as u64),
                        envelope: row.get("registration"),
                    },
                    profile: row
                        .get::<Option<i64>, _>("profile_seq")
                        .zip(row.get::<Option<String>, _>("profile"))
                        .map(|(seq, envelope)| StoredJson {
                            seq: Seq(seq as u64),
                            envelope,
                        }),
                })
            })
            .collect()
    }

    /// The agent's inbox after `since` (exclusive), oldest first, at most `limit`.
    pub async fn inbox(
        &self,
        agent: AgentId,
        since: Seq,
        limit: u32,
    ) -> Result<Vec<StoredJson>, ProjectionError> {
        self.inbox_between(agent, since, Seq(i64::MAX as u64), limit)
            .await
    }

    /// The agent's inbox in `(after, upto]`, oldest first, at most `limit`.
    pub async fn inbox_between(
        &self,
        agent: AgentId,
        after: Seq,
        upto: Seq,
        limit: u32,
    ) -> Result<Vec<StoredJson>, ProjectionError> {
        let rows = sqlx::query(inbox_query!(
            "(m.expires_at IS NULL OR m.expires_at > now())"
        ))
        .bind(agent.as_uuid())
        .bind(after.0 as i64)
        .bind(upto.0.min(i64::MAX as u64) as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(stored).collect())
    }

    /// Message `id`, if `agent` of `project` may read it.
    pub async fn message_for(
        &self,
        project: ProjectId,
        agent: AgentId,
        id: EventId,
    ) -> Result<Option<StoredJson>, ProjectionError> {
        let row = sqlx::query(
            "SELECT seq, envelope::text AS envelope FROM messages m
             WHERE id = $1 AND project_id = $2 AND (m.expires_at IS NULL OR m.expires_at > now())
               AND (sender = $3 OR recipient = $3 OR recipient IS NULL)",
        )
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .bind(agent.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(stored))
    }

    /// The thread `id` belongs to: its root and the messages reachable from the root
    /// through `reply_to` that `agent` may read, in log order, after `after`: at most
    /// [`THREAD_PAGE`] of them, and whether more follow. `None` if `agent` may not read
    /// `id` itself.
    pub async fn thread_for(
        &self,
        project: ProjectId,
        agent: AgentId,
        id: EventId,
        after: Seq,
    ) -> Result<Option<ThreadRows>, ProjectionError> {
        if self.message_for(project, agent, id).await?.is_none() {
            return Ok(None);
        }
        // Walk up to the root (depth-capped: the DAG is acyclic since a reply names an
        // earlier message, the cap only bounds work), then down to every descendant.
        let root: uuid::Uuid = sqlx::query_scalar(
            "WITH RECURSIVE up(id, depth) AS (
                 SELECT $1::uuid, 0
                 UNION ALL
                 SELECT e.parent, up.depth + 1 FROM thread_edges e JOIN up ON e.child = up.id
                 WHERE up.depth < 10000 AND e.project_id = $2
             )
             SELECT id FROM up ORDER BY depth DESC LIMIT 1",
        )
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .fetch_one(&self.pool)
        .await?;
        let rows = sqlx::query(
            "WITH RECURSIVE down(id) AS (
                 SELECT $1::uuid
                 UNION
                 SELECT e.child FROM thread_edges e JOIN down ON e.parent = down.id
                 WHERE e.project_id = $2
             )
             SELECT m.seq, m.envelope::text AS envelope
             FROM messages m JOIN down ON m.id = down.id
             WHERE m.project_id = $2 AND (m.sender = $3 OR m.recipient = $3 OR m.recipient IS NULL)
               AND (m.expires_at IS NULL OR m.expires_at > now()) AND m.seq > $4
             ORDER BY m.seq LIMIT $5",
        )
        .bind(root)
        .bind(project.as_uuid())
        .bind(agent.as_uuid())
        .bind(after.0 as i64)
        .bind(THREAD_PAGE as i64 + 1)
        .fetch_all(&self.pool)
        .await?;
        let root = EventId::try_from(root).map_err(|e| corrupt("message id", e))?;
        let mut messages: Vec<StoredJson> = rows.into_iter().map(stored).collect();
        let has_more = messages.len() > THREAD_PAGE;
        messages.truncate(THREAD_PAGE);
        Ok(Some(ThreadRows {
            root,
            messages,
            has_more,
        }))
    }

    /// Where the thread of `root` held messages that expired (erased or not yet): one
    /// placeholder each that `agent` could have read, in log order, without content.
    pub async fn expired_in_thread(
        &self,
        project: ProjectId,
        agent: AgentId,
        root: EventId,
    ) -> Result<Vec<ExpiredNode>, ProjectionError> {
        let rows = sqlx::query(
            "WITH RECURSIVE down(id) AS (
                 SELECT $1::uuid
                 UNION
                 SELECT e.child FROM thread_edges e JOIN down ON e.parent = down.id
                 WHERE e.project_id = $2
             ),
             -- From the thread's own rows, by key: the project's expired messages are
             -- many more than a thread's.
             expired AS (
                 SELECT m.id, m.seq, m.reply_to, m.sender, m.recipient
                 FROM down JOIN messages m ON m.id = down.id
                 WHERE m.project_id = $2 AND m.expires_at <= now()
                 UNION ALL
                 SELECT x.id, x.seq, x.reply_to, x.sender, x.recipient
                 FROM down JOIN expired_messages x ON x.id = down.id
                 WHERE x.project_id = $2
             )
             SELECT x.id, x.seq, x.reply_to FROM expired x
             WHERE x.sender = $3 OR x.recipient = $3 OR x.recipient IS NULL
             ORDER BY x.seq LIMIT 1000",
        )
        .bind(root.as_uuid())
        .bind(project.as_uuid())
        .bind(agent.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let id = EventId::try_from(row.get::<uuid::Uuid, _>("id"))
                    .map_err(|e| corrupt("message id", e))?;
                let reply_to = row
                    .get::<Option<uuid::Uuid>, _>("reply_to")
                    .map(EventId::try_from)
                    .transpose()
                    .map_err(|e| corrupt("message id", e))?;
                Ok(ExpiredNode {
                    seq: Seq(row.get::<i64, _>("seq") as u64),
                    id,
                    reply_to,
                })
            })
            .collect()
    }
}

pub(crate) fn stored(row: sqlx::postgres::PgRow) -> StoredJson {
    StoredJson {
        seq: Seq(row.get::<i64, _>("seq") as u64),
        envelope: row.get("envelope"),
    }
}

/// The `own_project` and `own_seq` columns of a facts query: where the event id was
/// already applied, if it was.
pub(crate) fn already_applied(row: &sqlx::postgres::PgRow) -> Option<(ProjectId, Seq)> {
    let own_project: Option<uuid::Uuid> = row.get("own_project");
    let own_seq: Option<i64> = row.get("own_seq");
    own_project
        .zip(own_seq)
        .map(|(p, seq)| (ProjectId::from_uuid(p), Seq(seq as u64)))
}

pub(crate) fn lookup(found_in: Option<uuid::Uuid>, project: ProjectId) -> Lookup {
    match found_in {
        None => Lookup::Missing,
        Some(p) if p == *project.as_uuid() => Lookup::Found,
        Some(_) => Lookup::InAnotherProject,
    }
}

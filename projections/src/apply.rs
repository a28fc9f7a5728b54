//! Applying one event to the read models, inside the batch's transaction.
//!
//! Every statement is guarded so that an event the log holds but the read models cannot
//! place (an agent of an unknown project, a message from an unknown agent) is skipped
//! rather than poisoning the batch: the API validated everything it appended, so such an
//! event was written around it, and `audit verify` is where it gets reported.

use chrono::{DateTime, Utc};
use nexysync_domain::event::{Actor, Envelope, EventBody};
use nexysync_domain::ids::Seq;
use sqlx::PgConnection;
use tracing::warn;

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
                "INSERT INTO projects (id, name, owner_key, created_seq, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )
            .bind(event.project.as_uuid())
            .bind(created.name.as_str())
            .bind(created.owner_key.to_base64())
            .bind(seq)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        EventBody::AgentRegistered(registered) => {
            let inserted = sqlx::query(
                "INSERT INTO agents (id, project_id, name, signing_key, token_hash, registered_seq, registration)
                 SELECT $1, $2, $3, $4, $5, $6, $7::json
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
            let inserted = sqlx::query(
                "INSERT INTO messages (id, project_id, seq, sender, recipient, reply_to, topic_ix, ttl_s, sent_at, envelope)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10::json
                 WHERE EXISTS (SELECT 1 FROM agents WHERE id = $4 AND project_id = $2)
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
            match sent.to {
                Some(recipient) => {
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
                None => {
                    sqlx::query(
                        "INSERT INTO inbox_entries (agent_id, seq, message_id)
                         SELECT id, $2, $3 FROM agents WHERE project_id = $1 AND id <> $4",
                    )
                    .bind(event.project.as_uuid())
                    .bind(seq)
                    .bind(event.id.as_uuid())
                    .bind(sender.as_uuid())
                    .execute(&mut *conn)
                    .await?;
                }
            }
            if let Some(parent) = sent.reply_to {
                sqlx::query(
                    "INSERT INTO thread_edges (child, parent, project_id) VALUES ($1, $2, $3)",
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
        }
    }
    Ok(())
}

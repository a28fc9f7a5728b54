//! Applying message-state events (reactions, read marks, pins, deletions) to the read
//! models. Each is recorded once in `message_updates`, guarded like every other event:
//! only an agent of the project acting on a message of the project it may read; anything
//! else the log holds is skipped (and `audit verify` reports it).

use nexysync_domain::event::{Actor, Envelope, EventBody};
use sqlx::PgConnection;
use tracing::warn;

/// Records the event in `message_updates`, then applies its effect.
pub(crate) async fn apply_message_state(
    conn: &mut PgConnection,
    seq: i64,
    event: &Envelope,
    raw: &[u8],
) -> Result<(), sqlx::Error> {
    let kind = event.body.kind().as_str();
    let (Actor::Agent(agent), Some(message)) = (event.actor, event.body.target_message()) else {
        warn!(
            seq,
            kind, "message-state event without an agent actor skipped"
        );
        return Ok(());
    };
    let recorded = sqlx::query(
        "INSERT INTO message_updates (id, project_id, message_id, agent_id, kind, seq)
         SELECT $1, $2, $3, $4, $5, $6
         WHERE EXISTS (SELECT 1 FROM agents WHERE id = $4 AND project_id = $2)
           AND EXISTS (SELECT 1 FROM messages WHERE id = $3 AND project_id = $2
                       AND (sender = $4 OR recipient = $4 OR recipient IS NULL))
         ON CONFLICT DO NOTHING",
    )
    .bind(event.id.as_uuid())
    .bind(event.project.as_uuid())
    .bind(message.as_uuid())
    .bind(agent.as_uuid())
    .bind(kind)
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    if recorded.rows_affected() == 0 {
        warn!(
            seq,
            kind, "message-state event skipped: unknown agent or message, or already applied"
        );
        return Ok(());
    }
    let message = message.as_uuid();
    let agent = agent.as_uuid();
    match &event.body {
        EventBody::ReactionAdded(reaction) => {
            sqlx::query(
                "INSERT INTO message_reactions (message_id, agent_id, emoji_ix, seq, envelope)
                 SELECT $1, $2, $3, $4, $5
                 WHERE EXISTS (SELECT 1 FROM messages WHERE id = $1 AND deleted_seq IS NULL)
                 ON CONFLICT DO NOTHING",
            )
            .bind(message)
            .bind(agent)
            .bind(reaction.emoji_ix.as_str())
            .bind(seq)
            .bind(std::str::from_utf8(raw).unwrap_or("{}"))
            .execute(&mut *conn)
            .await?;
        }
        EventBody::ReactionRemoved(reaction) => {
            sqlx::query(
                "DELETE FROM message_reactions
                 WHERE message_id = $1 AND agent_id = $2 AND emoji_ix = $3",
            )
            .bind(message)
            .bind(agent)
            .bind(reaction.emoji_ix.as_str())
            .execute(&mut *conn)
            .await?;
        }
        EventBody::MessageRead(_) => {
            sqlx::query(
                "INSERT INTO message_reads (agent_id, message_id, seq) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(agent)
            .bind(message)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        EventBody::MessagePinned(_) | EventBody::MessageUnpinned(_) => {
            sqlx::query("UPDATE messages SET pinned = $2 WHERE id = $1 AND deleted_seq IS NULL")
                .bind(message)
                .bind(matches!(event.body, EventBody::MessagePinned(_)))
                .execute(&mut *conn)
                .await?;
        }
        EventBody::MessageDeleted(_) => {
            // The row stays as the thread's "deleted" node; every sealed field goes, and
            // with them the reactions, whose envelopes seal their emoji.
            let erased = sqlx::query(
                "UPDATE messages
                 SET envelope = (envelope::jsonb || '{\"sealed\": {}}'::jsonb)::text,
                     deleted_seq = $3, deletion = $4, pinned = false
                 WHERE id = $1 AND sender = $2 AND deleted_seq IS NULL",
            )
            .bind(message)
            .bind(agent)
            .bind(seq)
            .bind(std::str::from_utf8(raw).unwrap_or("{}"))
            .execute(&mut *conn)
            .await?;
            if erased.rows_affected() == 0 {
                warn!(
                    seq,
                    "message_deleted skipped: not by the sender, or deleted before"
                );
                return Ok(());
            }
            sqlx::query("DELETE FROM message_reactions WHERE message_id = $1")
                .bind(message)
                .execute(&mut *conn)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

/// After `agent`'s read mark at `seq`, moves its `inbox_read_through` (migration 0012) up
/// to just before its first unread message, or to `seq` when every message before the
/// mark is read. The live projector calls it; a rebuild leaves the cache empty.
pub(crate) async fn advance_read_through(
    conn: &mut PgConnection,
    seq: i64,
    agent: &uuid::Uuid,
) -> Result<(), sqlx::Error> {
    let through = crate::inbox_sql::read_through(&mut *conn, agent).await?;
    // Expired or deleted, an unread message still holds the mark back: what the cache
    // says then depends on the log alone, not on the clock.
    let first_unread: Option<i64> = sqlx::query_scalar(inbox_query!(
        "NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.agent_id = $1 AND r.message_id = m.id)"
    ))
    .bind(agent)
    .bind(through)
    .bind(seq)
    .bind(1i64)
    .fetch_optional(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO inbox_read_through (agent_id, seq) VALUES ($1, $2)
         ON CONFLICT (agent_id) DO UPDATE SET seq = GREATEST(inbox_read_through.seq, EXCLUDED.seq)",
    )
    .bind(agent)
    .bind(first_unread.map_or(seq, |unread| unread - 1))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

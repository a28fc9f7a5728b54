//! Applying a retention tombstone (`events_erased`, ADR 0012): everything the erased
//! events put in the read models goes, and each erased message leaves a placeholder node
//! in its thread (`expired_messages`: where it was, no content).
//!
//! The same end state is reached live (the rows exist and are deleted) and on a rebuild
//! (the erased events are no longer in the log: nothing to delete, the placeholder and
//! its thread edge come from the stripped envelope).

use nexysync_domain::event::{Actor, EventBody, EventsErased};
use nexysync_domain::ids::ProjectId;
use sqlx::PgConnection;

/// Erases the read-model rows of every event `erased` lists (tombstone at `seq`).
pub(crate) async fn apply_events_erased(
    conn: &mut PgConnection,
    seq: i64,
    project: ProjectId,
    erased: &EventsErased,
) -> Result<(), sqlx::Error> {
    for entry in &erased.erased {
        sqlx::query(
            "INSERT INTO pending_erasures (seq, project_id, tombstone_seq) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(entry.seq.0 as i64)
        .bind(project.as_uuid())
        .bind(seq)
        .execute(&mut *conn)
        .await?;
        let event = &entry.event;
        let (EventBody::MessageSent(sent), Actor::Agent(sender)) = (&event.body, event.actor)
        else {
            // A reaction, read mark, pin or deletion of an erased message: its rows go
            // with the message's, below.
            continue;
        };
        let message = event.id.as_uuid();
        // The message's ciphertext counted against the stored-bytes quota.
        let sealed_len = stored_sealed_len(conn, message, project).await?;
        for statement in [
            "DELETE FROM message_reactions WHERE message_id = $1",
            "DELETE FROM message_reads WHERE message_id = $1",
            "DELETE FROM message_updates WHERE message_id = $1",
        ] {
            sqlx::query(statement)
                .bind(message)
                .execute(&mut *conn)
                .await?;
        }
        delete_inbox_entry(conn, message, project).await?;
        let deleted = sqlx::query("DELETE FROM messages WHERE id = $1 AND project_id = $2")
            .bind(message)
            .bind(project.as_uuid())
            .execute(&mut *conn)
            .await?;
        if deleted.rows_affected() > 0 {
            sqlx::query(
                "UPDATE projects SET stored_bytes = GREATEST(stored_bytes - $2, 0),
                                     message_count = message_count - 1
                 WHERE id = $1",
            )
            .bind(project.as_uuid())
            .bind(sealed_len)
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query(
            "INSERT INTO expired_messages (id, project_id, seq, sender, recipient, reply_to, erased_seq)
             SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM projects WHERE id = $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(message)
        .bind(project.as_uuid())
        .bind(entry.seq.0 as i64)
        .bind(sender.as_uuid())
        .bind(sent.to.map(|a| *a.as_uuid()))
        .bind(sent.reply_to.map(|m| *m.as_uuid()))
        .bind(seq)
        .execute(&mut *conn)
        .await?;
        if let Some(parent) = sent.reply_to {
            sqlx::query(
                "INSERT INTO thread_edges (child, parent, project_id) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(message)
            .bind(parent.as_uuid())
            .bind(project.as_uuid())
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Deletes the inbox entry of the message `id` by its key (agent, seq): its recipient's,
/// at the message's own sequence (a broadcast has none, migration 0010; the inbox has no
/// index by message, migration 0009).
async fn delete_inbox_entry(
    conn: &mut PgConnection,
    id: &uuid::Uuid,
    project: ProjectId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM inbox_entries i USING messages m
         WHERE m.id = $1 AND m.project_id = $2 AND i.agent_id = m.recipient AND i.seq = m.seq",
    )
    .bind(id)
    .bind(project.as_uuid())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The ciphertext bytes the message and its live reactions count in `stored_bytes`.
async fn stored_sealed_len(
    conn: &mut PgConnection,
    message: &uuid::Uuid,
    project: ProjectId,
) -> Result<i64, sqlx::Error> {
    let envelopes: Vec<String> =
        sqlx::query_scalar("SELECT envelope::text FROM messages WHERE id = $1 AND project_id = $2")
            .bind(message)
            .bind(project.as_uuid())
            .fetch_all(&mut *conn)
            .await?;
    Ok(envelopes
        .iter()
        .filter_map(|text| serde_json::from_str::<nexysync_domain::event::Envelope>(text).ok())
        .map(|event| event.sealed_len() as i64)
        .sum())
}

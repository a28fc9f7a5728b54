//! The one definition of an agent's inbox in SQL, for the readers and the projector.

/// Agent `agent`'s read-through mark (migration 0012): every message of its inbox with a
/// sequence up to it is read. 0 when it has none.
pub(crate) async fn read_through<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    agent: &uuid::Uuid,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE((SELECT seq FROM inbox_read_through WHERE agent_id = $1), 0)",
    )
    .bind(agent)
    .fetch_one(executor)
    .await
}

/// A query of the messages in agent `$1`'s inbox with a sequence in `($2, $3]` that pass
/// `$filter` (a condition on the `messages` row `m`), oldest first, at most `$4`, as
/// `(seq, envelope)`. The inbox is the agent's inbox entries (direct messages to it) and
/// the broadcasts of its project by other agents since it registered, read in place
/// (migration 0010). Each half stops at the limit on its own index, so a long inbox is
/// never read whole: the broadcasts' through `messages_broadcasts`, which the project and
/// the lower bound reach only as constants (scalar subqueries; joined to `agents`, the
/// planner walked `messages (seq)`, an index since dropped, across every project instead).
macro_rules! inbox_query {
    ($filter:literal) => {
        concat!(
            "SELECT seq, envelope FROM (
                 (SELECT i.seq, m.envelope::text AS envelope
                  FROM inbox_entries i JOIN messages m ON m.id = i.message_id
                  WHERE i.agent_id = $1 AND i.seq > $2 AND i.seq <= $3 AND ",
            $filter,
            "
                  ORDER BY i.seq LIMIT $4)
                 UNION ALL
                 (SELECT m.seq, m.envelope::text AS envelope
                  FROM messages m
                  WHERE m.project_id = (SELECT project_id FROM agents WHERE id = $1)
                    AND m.recipient IS NULL AND m.sender <> $1
                    AND m.seq > GREATEST($2, (SELECT registered_seq FROM agents WHERE id = $1))
                    AND m.seq <= $3 AND ",
            $filter,
            "
                  ORDER BY m.seq LIMIT $4)
             ) inbox ORDER BY seq LIMIT $4"
        )
    };
}

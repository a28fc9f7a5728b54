//! The one definition of an agent's inbox in SQL, for the readers and the projector.

/// A query of the messages in agent `$1`'s inbox with a sequence in `($2, $3]` that pass
/// `$filter` (a condition on the `messages` row `m`), oldest first, at most `$4`, as
/// `(seq, envelope)`. The inbox is the agent's inbox entries (direct messages to it) and
/// the broadcasts of its project by other agents since it registered, read in place
/// (migration 0010). Each half stops at the limit on its own index, so a long inbox is
/// never read whole.
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
                  FROM agents a JOIN messages m ON m.project_id = a.project_id AND m.recipient IS NULL
                  WHERE a.id = $1 AND m.sender <> $1 AND m.seq > GREATEST($2, a.registered_seq)
                    AND m.seq <= $3 AND ",
            $filter,
            "
                  ORDER BY m.seq LIMIT $4)
             ) inbox ORDER BY seq LIMIT $4"
        )
    };
}

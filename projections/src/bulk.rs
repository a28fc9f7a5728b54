//! Loading read models that nobody reads yet (a rebuild's): their foreign keys and
//! secondary indexes are set aside while the log is applied and made again, in bulk,
//! before readers switch over. Maintaining them row by row costs more than the rows
//! (a rebuild of a million messages takes about 1.7 times as long with them in place).
//!
//! Unique indexes and primary keys stay, but for those in [`UNIQUE_BY_THE_LOG`]: the
//! projector's `ON CONFLICT` clauses and its look-ups by id need them. Nothing depends on
//! the foreign keys for its effect (no cascades), and every projector statement guards
//! against what they would refuse, so the read models come out the same; making them
//! again checks that.

use sqlx::PgPool;
use tracing::warn;

use crate::ProjectionError;

/// Unique constraints (table, definition) that no projector statement needs, since the
/// log makes them hold: a sequence is applied once, and a message's inbox entries are one
/// per agent. No `ON CONFLICT` names them and no look-up goes through them (a message's
/// `ON CONFLICT DO NOTHING` is about its id). Made again like the rest, which checks them.
const UNIQUE_BY_THE_LOG: &[(&str, &str)] = &[
    ("messages", "UNIQUE (seq)"),
    ("inbox_entries", "PRIMARY KEY (agent_id, seq)"),
];

/// What [`set_aside`] removed from a schema, as the statements that make it again.
#[derive(Debug, Default)]
pub(crate) struct SetAside {
    statements: Vec<String>,
}

/// Drops the foreign keys, the constraints of [`UNIQUE_BY_THE_LOG`] and the non-unique
/// indexes that back no constraint in `schema`.
pub(crate) async fn set_aside(pool: &PgPool, schema: &str) -> Result<SetAside, ProjectionError> {
    let (tables, definitions): (Vec<&str>, Vec<&str>) = UNIQUE_BY_THE_LOG.iter().copied().unzip();
    // Foreign keys last: a unique constraint made again first may be what one refers to.
    let constraints: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT format('%I.%I', n.nspname, t.relname), quote_ident(c.conname), pg_get_constraintdef(c.oid)
         FROM pg_constraint c
         JOIN pg_class t ON t.oid = c.conrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = $1
           AND (c.contype = 'f'
                OR (t.relname, pg_get_constraintdef(c.oid)) IN (SELECT * FROM UNNEST($2::text[], $3::text[])))
         ORDER BY c.contype = 'f', 1, 2",
    )
    .bind(schema)
    .bind(&tables)
    .bind(&definitions)
    .fetch_all(pool)
    .await?;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT format('%I.%I', n.nspname, i.relname), pg_get_indexdef(x.indexrelid)
         FROM pg_index x
         JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_namespace n ON n.oid = i.relnamespace
         WHERE n.nspname = $1 AND NOT x.indisunique
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
         ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await?;
    let unique = constraints
        .iter()
        .filter(|(_, _, d)| !d.starts_with("FOREIGN KEY"))
        .count();
    if unique != UNIQUE_BY_THE_LOG.len() {
        // A migration changed one of them: the list must follow it.
        warn!(
            found = unique,
            listed = UNIQUE_BY_THE_LOG.len(),
            "a unique constraint to set aside is missing"
        );
        debug_assert_eq!(
            unique,
            UNIQUE_BY_THE_LOG.len(),
            "UNIQUE_BY_THE_LOG is out of date"
        );
    }
    let mut set_aside = SetAside::default();
    for (table, name, definition) in constraints.into_iter().rev() {
        sqlx::query(&format!("ALTER TABLE {table} DROP CONSTRAINT {name}"))
            .execute(pool)
            .await?;
        set_aside.statements.insert(
            0,
            format!("ALTER TABLE {table} ADD CONSTRAINT {name} {definition}"),
        );
    }
    for (index, definition) in indexes {
        sqlx::query(&format!("DROP INDEX {index}"))
            .execute(pool)
            .await?;
        // Indexes first: the foreign keys' checks then find what they look for.
        set_aside.statements.insert(0, definition);
    }
    Ok(set_aside)
}

impl SetAside {
    /// Makes again everything [`set_aside`] dropped, checking the rows against it.
    pub(crate) async fn restore(self, pool: &PgPool) -> Result<(), ProjectionError> {
        for statement in self.statements {
            sqlx::query(&statement).execute(pool).await?;
        }
        Ok(())
    }
}

//! Loading read models that nobody reads yet (a rebuild's): their foreign keys and
//! secondary indexes are set aside while the log is applied and made again, in bulk,
//! before readers switch over. Maintaining them row by row costs more than the rows
//! (a rebuild of a million messages takes about 1.7 times as long with them in place).
//!
//! Unique indexes and primary keys stay: the projector's `ON CONFLICT` clauses and its
//! look-ups by id need them. Nothing depends on the foreign keys for its effect (no
//! cascades), and every projector statement guards against what they would refuse, so
//! the read models come out the same; making them again checks that.

use sqlx::PgPool;

use crate::ProjectionError;

/// What [`set_aside`] removed from a schema, as the statements that make it again.
#[derive(Debug, Default)]
pub(crate) struct SetAside {
    statements: Vec<String>,
}

/// Drops the foreign keys and the non-unique indexes that back no constraint in `schema`.
pub(crate) async fn set_aside(pool: &PgPool, schema: &str) -> Result<SetAside, ProjectionError> {
    let foreign_keys: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT format('%I.%I', n.nspname, t.relname), quote_ident(c.conname), pg_get_constraintdef(c.oid)
         FROM pg_constraint c
         JOIN pg_class t ON t.oid = c.conrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE c.contype = 'f' AND n.nspname = $1
         ORDER BY 1, 2",
    )
    .bind(schema)
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
    let mut set_aside = SetAside::default();
    for (table, name, definition) in foreign_keys {
        sqlx::query(&format!("ALTER TABLE {table} DROP CONSTRAINT {name}"))
            .execute(pool)
            .await?;
        set_aside.statements.push(format!(
            "ALTER TABLE {table} ADD CONSTRAINT {name} {definition}"
        ));
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

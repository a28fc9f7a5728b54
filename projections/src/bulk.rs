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
//!
//! Making them again is a few scans of each large table, so it goes on several
//! connections at once, in three steps whose locks never wait on one another's long part:
//! 1. every index, the unique constraints' included (`CREATE INDEX` takes a lock that
//!    other index builds of the same table share);
//! 2. the unique constraints attached to their indexes, and the foreign keys added
//!    `NOT VALID`: both instant;
//! 3. the foreign keys validated, one connection per table that holds them (validating
//!    takes a lock on the referenced table that index builds and other validations share).

use futures::{stream, StreamExt, TryStreamExt};
use sqlx::PgPool;
use tracing::warn;

use crate::ProjectionError;

/// Unique constraints (table, definition) that no projector statement needs, since the
/// log makes them hold: a sequence is applied once, and a direct message has one inbox
/// entry. No `ON CONFLICT` names them (a message's `ON CONFLICT DO NOTHING` is about its
/// id), and of the look-ups through them only erasure runs during a load, for messages
/// still in the log, which are few (the unread mark is the live projector's alone). Made
/// again like the rest, which checks them.
const UNIQUE_BY_THE_LOG: &[(&str, &str)] = &[
    ("messages", "UNIQUE (project_id, seq)"),
    ("inbox_entries", "PRIMARY KEY (agent_id, seq)"),
];

/// Index builds and validations run at once while restoring.
const AT_ONCE: usize = 2;

/// A statement of the restore, with the size of the table it scans (larger ones first,
/// so the last to finish is a short one).
#[derive(Debug)]
struct Scan {
    table: String,
    table_bytes: i64,
    statements: Vec<String>,
}

/// What [`set_aside`] removed from a schema, as the statements that make it again.
#[derive(Debug, Default)]
pub(crate) struct SetAside {
    /// Step 1: `CREATE [UNIQUE] INDEX`, one statement each.
    indexes: Vec<Scan>,
    /// Step 2: unique constraints attached to their indexes, then (since one may refer to
    /// those) foreign keys added `NOT VALID`.
    attachments: Vec<String>,
    foreign_keys: Vec<String>,
    /// Step 3: per table, the validation of its foreign keys.
    validations: Vec<Scan>,
}

/// Drops the foreign keys, the constraints of [`UNIQUE_BY_THE_LOG`] and the non-unique
/// indexes that back no constraint in `schema`.
pub(crate) async fn set_aside(pool: &PgPool, schema: &str) -> Result<SetAside, ProjectionError> {
    let (tables, definitions): (Vec<&str>, Vec<&str>) = UNIQUE_BY_THE_LOG.iter().copied().unzip();
    // Foreign keys first: one may refer to a unique constraint dropped after it.
    let constraints: Vec<(String, String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT format('%I.%I', n.nspname, t.relname), quote_ident(c.conname), c.contype::text,
                pg_get_constraintdef(c.oid), pg_get_indexdef(NULLIF(c.conindid, 0))
         FROM pg_constraint c
         JOIN pg_class t ON t.oid = c.conrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = $1
           AND (c.contype = 'f'
                OR (t.relname, pg_get_constraintdef(c.oid)) IN (SELECT * FROM UNNEST($2::text[], $3::text[])))
         ORDER BY c.contype <> 'f', 1, 2",
    )
    .bind(schema)
    .bind(&tables)
    .bind(&definitions)
    .fetch_all(pool)
    .await?;
    let indexes: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT format('%I.%I', n.nspname, t.relname), format('%I.%I', n.nspname, i.relname),
                pg_get_indexdef(x.indexrelid)
         FROM pg_index x
         JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_class t ON t.oid = x.indrelid
         JOIN pg_namespace n ON n.oid = i.relnamespace
         WHERE n.nspname = $1 AND NOT x.indisunique
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
         ORDER BY 1, 2",
    )
    .bind(schema)
    .fetch_all(pool)
    .await?;
    let unique = constraints.iter().filter(|c| c.2 != "f").count();
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
    let mut validations: Vec<(String, String)> = Vec::new();
    for (table, name, kind, definition, index) in constraints {
        sqlx::query(&format!("ALTER TABLE {table} DROP CONSTRAINT {name}"))
            .execute(pool)
            .await?;
        match index.filter(|_| kind != "f") {
            Some(index) => {
                let kind = if kind == "p" { "PRIMARY KEY" } else { "UNIQUE" };
                set_aside.indexes.push(Scan::of(&table, index));
                set_aside.attachments.push(format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {name} {kind} USING INDEX {name}"
                ));
            }
            None => {
                set_aside.foreign_keys.push(format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {name} {definition} NOT VALID"
                ));
                let validation = format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name}");
                validations.push((table, validation));
            }
        }
    }
    for (table, index, definition) in indexes {
        sqlx::query(&format!("DROP INDEX {index}"))
            .execute(pool)
            .await?;
        set_aside.indexes.push(Scan::of(&table, definition));
    }
    validations.sort();
    for (table, validation) in validations {
        match set_aside.validations.last_mut() {
            Some(last) if last.table == table => last.statements.push(validation),
            _ => set_aside.validations.push(Scan::of(&table, validation)),
        }
    }
    Ok(set_aside)
}

impl SetAside {
    /// Makes again everything [`set_aside`] dropped, checking the rows against it.
    pub(crate) async fn restore(mut self, pool: &PgPool) -> Result<(), ProjectionError> {
        for scans in [&mut self.indexes, &mut self.validations] {
            weigh(pool, scans).await?;
        }
        run_at_once(pool, self.indexes).await?;
        for statement in self.attachments.into_iter().chain(self.foreign_keys) {
            sqlx::query(&statement).execute(pool).await?;
        }
        run_at_once(pool, self.validations).await
    }
}

impl Scan {
    /// A scan of `table`, weighed later (its size is known once the log is loaded).
    fn of(table: &str, statement: String) -> Self {
        Self {
            table: table.to_owned(),
            table_bytes: 0,
            statements: vec![statement],
        }
    }
}

/// Sets each scan's table size and puts the largest first.
async fn weigh(pool: &PgPool, scans: &mut [Scan]) -> Result<(), ProjectionError> {
    for scan in scans.iter_mut() {
        scan.table_bytes = sqlx::query_scalar("SELECT pg_relation_size($1::regclass)")
            .bind(&scan.table)
            .fetch_one(pool)
            .await?;
    }
    scans.sort_by_key(|scan| std::cmp::Reverse(scan.table_bytes));
    Ok(())
}

/// Runs the scans [`AT_ONCE`] at a time, each scan's statements in order on one connection.
async fn run_at_once(pool: &PgPool, scans: Vec<Scan>) -> Result<(), ProjectionError> {
    stream::iter(scans)
        .map(|scan| async move {
            let mut connection = pool.acquire().await?;
            for statement in &scan.statements {
                sqlx::query(statement).execute(&mut *connection).await?;
            }
            Ok::<_, ProjectionError>(())
        })
        .buffer_unordered(AT_ONCE)
        .try_collect()
        .await
}

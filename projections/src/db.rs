//! Connecting to PostgreSQL: create the database when missing, keep the read models in a
//! schema of their own, and migrate them only when that is safe.
//!
//! The live read models are the schema [`LIVE_SCHEMA`]; every connection of a pool made
//! here resolves unqualified names there (`search_path`). A rebuild builds the next
//! version in [`NEXT_SCHEMA`] beside it and renames the two in one transaction (see
//! `rebuild`), which is how readers switch atomically.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tracing::info;

use crate::ProjectionError;

/// The read models' migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The schema the API reads and the live projector writes.
pub const LIVE_SCHEMA: &str = "read_models";
/// Where a rebuild builds the next version of the read models, beside the live one.
pub const NEXT_SCHEMA: &str = "read_models_next";
/// The live schema's name for the moment between a switch and its drop.
pub(crate) const RETIRED_SCHEMA: &str = "read_models_retired";

/// How the read models in a schema compare with the migrations of this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaVersion {
    /// No read models there yet.
    Missing,
    /// Exactly this build's migrations: safe to serve.
    Current { version: i64 },
    /// Fewer migrations than this build has, or different ones: rebuild before serving.
    Outdated { version: i64, expected: i64 },
    /// Migrations this build does not know: written by a newer build.
    Newer { version: i64, expected: i64 },
}

/// The read-model version this build expects: its latest migration.
pub fn expected_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Connects to `url` with unqualified names resolving in `schema`, creating the database
/// if it does not exist. Touches nothing else.
pub async fn connect(
    url: &str,
    max_connections: u32,
    schema: &str,
) -> Result<PgPool, ProjectionError> {
    let options = PgConnectOptions::from_str(url).map_err(|e| {
        ProjectionError::Config(format!("DATABASE_URL is not a valid Postgres URL: {e}"))
    })?;
    create_database_if_missing(&options).await?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options.options([("search_path", schema)]))
        .await
        .map_err(|e| ProjectionError::Database(format!("failed to connect to Postgres: {e}")))
}

/// Connects to `url` for serving: the live read models, created and migrated when the
/// database has none yet. Read models of another version are never migrated in place:
/// older ones answer [`ProjectionError::Outdated`] (rebuild them), newer ones
/// [`ProjectionError::NewerReadModels`].
pub async fn connect_and_migrate(
    url: &str,
    max_connections: u32,
) -> Result<PgPool, ProjectionError> {
    let pool = connect(url, max_connections, LIVE_SCHEMA).await?;
    match version_of(&pool, LIVE_SCHEMA).await? {
        SchemaVersion::Current { .. } => {}
        SchemaVersion::Missing => create_schema(&pool, LIVE_SCHEMA).await?,
        SchemaVersion::Outdated { version, expected } => {
            return Err(ProjectionError::Outdated { version, expected })
        }
        SchemaVersion::Newer { version, expected } => {
            return Err(ProjectionError::NewerReadModels { version, expected })
        }
    }
    Ok(pool)
}

/// Creates `schema` and applies every migration in it. `pool` must resolve names in
/// `schema` (see [`connect`]).
pub(crate) async fn create_schema(pool: &PgPool, schema: &str) -> Result<(), ProjectionError> {
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(pool)
        .await?;
    MIGRATOR.run(pool).await.map_err(|e| {
        ProjectionError::Database(format!(
            "failed to migrate the read models in {schema}: {e}"
        ))
    })?;
    info!(schema, version = expected_version(), "read models created");
    Ok(())
}

/// How the read models in `schema` compare with this build's migrations.
pub async fn version_of(pool: &PgPool, schema: &str) -> Result<SchemaVersion, ProjectionError> {
    let mut conn = pool.acquire().await?;
    version_on(&mut conn, schema).await
}

async fn version_on(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<SchemaVersion, ProjectionError> {
    let table = format!("{schema}._sqlx_migrations");
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&table)
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(SchemaVersion::Missing);
    }
    let applied: Vec<(i64, Vec<u8>)> = sqlx::query_as(&format!(
        "SELECT version, checksum FROM {table} WHERE success ORDER BY version"
    ))
    .fetch_all(&mut *conn)
    .await?;
    Ok(compare(&applied))
}

/// Compares applied migrations `(version, checksum)` with this build's.
fn compare(applied: &[(i64, Vec<u8>)]) -> SchemaVersion {
    let expected = expected_version();
    let version = applied.iter().map(|(v, _)| *v).max().unwrap_or(0);
    let known = |v: i64| MIGRATOR.iter().any(|m| m.version == v);
    if applied.iter().any(|(v, _)| !known(*v)) {
        return SchemaVersion::Newer { version, expected };
    }
    let same = MIGRATOR.iter().all(|m| {
        applied
            .iter()
            .any(|(v, checksum)| *v == m.version && checksum[..] == m.checksum[..])
    });
    if same {
        SchemaVersion::Current { version }
    } else {
        SchemaVersion::Outdated { version, expected }
    }
}

async fn create_database_if_missing(options: &PgConnectOptions) -> Result<(), ProjectionError> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let maintenance = options.clone().database("postgres");
    let mut conn = maintenance
        .connect()
        .await
        .map_err(|e| ProjectionError::Database(format!("failed to connect to Postgres: {e}")))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| {
                ProjectionError::Database(format!("failed to look up database {name}: {e}"))
            })?;
    if !exists {
        let quoted = name.replace('"', "\"\"");
        match sqlx::query(&format!("CREATE DATABASE \"{quoted}\""))
            .execute(&mut conn)
            .await
        {
            Ok(_) => info!(database = %name, "created database"),
            // Another process created it between our check and our create.
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P04") => {}
            Err(e) => {
                return Err(ProjectionError::Database(format!(
                    "failed to create database {name}: {e}"
                )))
            }
        }
    }
    conn.close().await.ok();
    Ok(())
}

/// A transaction whose commit does not wait for the disk: for read models, whose rows and
/// checkpoint commit together and come again from the log after a crash (ADRs 0010, 0014).
pub(crate) async fn begin_unhurried(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit TO OFF")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_applied() -> Vec<(i64, Vec<u8>)> {
        MIGRATOR
            .iter()
            .map(|m| (m.version, m.checksum.to_vec()))
            .collect()
    }

    #[test]
    fn read_models_with_every_migration_of_this_build_are_current() {
        let expected = expected_version();
        assert_eq!(
            compare(&all_applied()),
            SchemaVersion::Current { version: expected }
        );
    }

    #[test]
    fn read_models_missing_the_latest_migration_are_outdated() {
        let mut applied = all_applied();
        applied.pop();
        assert!(matches!(compare(&applied), SchemaVersion::Outdated { .. }));
    }

    #[test]
    fn a_migration_changed_since_it_was_applied_makes_the_read_models_outdated() {
        let mut applied = all_applied();
        applied[0].1[0] ^= 1;
        assert!(matches!(compare(&applied), SchemaVersion::Outdated { .. }));
    }

    #[test]
    fn read_models_from_a_newer_build_are_refused() {
        let mut applied = all_applied();
        applied.push((expected_version() + 1, vec![0; 48]));
        assert!(matches!(compare(&applied), SchemaVersion::Newer { .. }));
    }
}

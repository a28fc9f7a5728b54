//! Connecting to PostgreSQL: create the database when missing, then migrate.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use tracing::info;

use crate::ProjectionError;

/// The read models' migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connects to `url`, creating its database if it does not exist, and applies every
/// migration. The database named in `url` is the only one touched.
pub async fn connect_and_migrate(
    url: &str,
    max_connections: u32,
) -> Result<PgPool, ProjectionError> {
    let options = PgConnectOptions::from_str(url).map_err(|e| {
        ProjectionError::Config(format!("DATABASE_URL is not a valid Postgres URL: {e}"))
    })?;
    create_database_if_missing(&options).await?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .map_err(|e| ProjectionError::Database(format!("failed to connect to Postgres: {e}")))?;
    MIGRATOR.run(&pool).await.map_err(|e| {
        ProjectionError::Database(format!("failed to migrate the read models: {e}"))
    })?;
    Ok(pool)
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

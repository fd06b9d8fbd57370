//! Versioned schema migrations from `sql/`, embedded in the binary.
//!
//! All of it runs in one transaction holding an advisory lock, so two instances starting at
//! once apply each migration exactly once and a failed migration leaves nothing half-done.
//! `schema_version` records what was applied; running again is a no-op.

use tokio_postgres::Client;

use crate::config::UtcOffset;

/// Every migration in order; the version is the file's number.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "initial schema",
    sql: include_str!("../../sql/0001_initial.sql"),
}];

struct Migration {
    version: i32,
    description: &'static str,
    sql: &'static str,
}

/// The schema holding every table; connections put it first on their `search_path`.
pub const SCHEMA: &str = "oxitraffic";

/// Arbitrary but fixed: "oxitraff" in ASCII, so it will not collide with other applications'
/// advisory locks in a shared database.
const MIGRATION_LOCK: i64 = 0x6f78_6974_7261_6666;

#[derive(Debug)]
pub enum MigrationError {
    Postgres(tokio_postgres::Error),
    SchemaTooNew { database: i32, binary: i32 },
}

impl From<tokio_postgres::Error> for MigrationError {
    fn from(error: tokio_postgres::Error) -> MigrationError {
        MigrationError::Postgres(error)
    }
}

impl std::error::Error for MigrationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MigrationError::Postgres(error) => Some(error),
            MigrationError::SchemaTooNew { .. } => None,
        }
    }
}

impl std::fmt::Display for MigrationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrationError::Postgres(_) => f.write_str("cannot set up the database"),

            MigrationError::SchemaTooNew { database, binary } => write!(
                f,
                "the database schema is at version {database} but this binary knows only up to {binary}; \
                 upgrade oxitraffic"
            ),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub applied: Vec<i32>,
    pub counters_rebuilt: bool,
}

/// Brings the schema up to date and makes the per-day counters use `offset`.
pub async fn migrate(client: &mut Client, offset: UtcOffset) -> Result<Outcome, MigrationError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {SCHEMA};
         CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version (
             version integer PRIMARY KEY,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );
         SET LOCAL search_path TO {SCHEMA};"
    ))
    .await?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await?
        .get(0);
    let newest = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > newest {
        // An older binary must not write into a schema it does not know.
        return Err(MigrationError::SchemaTooNew {
            database: current,
            binary: newest,
        });
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(migration.sql).await?;
        tx.execute(
            "INSERT INTO schema_version (version, description) VALUES ($1, $2)",
            &[&migration.version, &migration.description],
        )
        .await?;
        tracing::info!(
            version = migration.version,
            description = migration.description,
            "applied migration"
        );
        applied.push(migration.version);
    }

    let stored: i32 = tx
        .query_one("SELECT utc_offset_minutes FROM settings", &[])
        .await?
        .get(0);
    let wanted = offset.total_minutes();
    let counters_rebuilt = stored != wanted;
    if counters_rebuilt {
        tx.execute("UPDATE settings SET utc_offset_minutes = $1", &[&wanted])
            .await?;
        tx.execute("SELECT rebuild_visit_counters()", &[]).await?;
        tracing::info!(offset = %offset, "rebuilt the per-day counters for the new UTC offset");
    }
    tx.commit().await?;
    Ok(Outcome {
        applied,
        counters_rebuilt,
    })
}

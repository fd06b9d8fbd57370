//! Versioned schema migrations from `sql/`, embedded in the binary.
//!
//! All of it runs in one transaction holding an advisory lock, so several instances starting
//! at once apply each migration exactly once and a failed migration leaves nothing half-done.
//! `schema_version` records what was applied; running again is a no-op. The schema is the
//! configured `db.schema`: the SQL files never name it, they run with `search_path` set to it.

use tokio_postgres::Client;

use crate::zone::Zone;

/// Every migration in order; the version is the file's number.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "initial schema",
        sql: include_str!("../../sql/0001_initial.sql"),
    },
    Migration {
        version: 2,
        description: "permanent roll-ups, views, visitors, campaigns, time zones",
        sql: include_str!("../../sql/0002_rollups.sql"),
    },
    Migration {
        version: 3,
        description: "restart snapshots and live counts of several instances",
        sql: include_str!("../../sql/0003_instances.sql"),
    },
    Migration {
        version: 4,
        description: "several instances writing at once: rows locked in key order, a version per connection",
        sql: include_str!("../../sql/0004_concurrent_writers.sql"),
    },
];

struct Migration {
    version: i32,
    description: &'static str,
    sql: &'static str,
}

/// The newest schema version this binary knows.
pub fn newest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Arbitrary but fixed: "oxitraff" in ASCII, so it will not collide with other applications'
/// advisory locks in a shared database. Instances using other schemas of the same database
/// wait for each other only while migrating, which is harmless.
const MIGRATION_LOCK: i64 = 0x6f78_6974_7261_6666;

#[derive(Debug)]
pub enum MigrationError {
    Postgres(tokio_postgres::Error),
    SchemaTooNew { database: i32, binary: i32 },
    UnknownZone { zone: String },
}

impl MigrationError {
    /// Whether retrying the connection could help; otherwise the operator must act.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, MigrationError::Postgres(_))
    }
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
            _ => None,
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
            MigrationError::UnknownZone { zone } => write!(
                f,
                "setting `time_zone` (`{zone}`) is not a time zone PostgreSQL knows; \
                 see SELECT name FROM pg_timezone_names"
            ),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub applied: Vec<i32>,
    /// The zone days are counted in changed (new days only; nothing is rebuilt).
    pub zone_changed: bool,
}

/// Brings `schema` up to date and records the zone new roll-up days are counted in.
pub async fn migrate(
    client: &mut Client,
    schema: &str,
    zone: &Zone,
) -> Result<Outcome, MigrationError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    // check_function_bodies off: version 1 named its schema inside a function body, which
    // must not stop it from being created under another name (version 2 replaces it).
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_version (
             version integer PRIMARY KEY,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );
         SET LOCAL search_path TO {schema}, pg_temp;
         SET LOCAL check_function_bodies TO off;"
    ))
    .await?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await?
        .get(0);
    if current > newest_version() {
        // An older binary must not write into a schema it does not know.
        return Err(MigrationError::SchemaTooNew {
            database: current,
            binary: newest_version(),
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
            schema,
            "applied migration"
        );
        applied.push(migration.version);
    }

    if let Some(name) = zone.name() {
        let known = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)",
                &[&name],
            )
            .await?
            .get::<_, bool>(0);
        if !known {
            return Err(MigrationError::UnknownZone {
                zone: name.to_string(),
            });
        }
    }
    let offset = zone.fixed_minutes();
    let zone_changed = tx
        .execute(
            "UPDATE settings SET time_zone = $1, utc_offset_minutes = $2
             WHERE time_zone IS DISTINCT FROM $1 OR utc_offset_minutes <> $2",
            &[&zone.name(), &offset],
        )
        .await?
        > 0;
    if zone_changed && applied.is_empty() {
        tracing::warn!(%zone, "days are now counted in a new zone; earlier days keep the zone they were counted in");
    }
    tx.commit().await?;
    Ok(Outcome {
        applied,
        zone_changed,
    })
}

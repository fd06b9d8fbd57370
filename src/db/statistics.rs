//! Planner statistics of the tables the tracker's long-lived prepared statements read.
//!
//! Why this exists (round 1's ingest slowdown): a statement prepared on a connection that
//! lives as long as the process gets a generic plan on its sixth run, planned from the
//! statistics of that moment, and keeps it until the table's statistics change. On a fresh
//! database that moment comes a second after start, when `visits` holds a few hundred rows and
//! was never analysed: a hash join over a full scan looks cheapest, and every later batch then
//! reads the whole table, slower as it grows. Autovacuum corrects this only when it first
//! visits the database, a minute or more later. So the tracker analyses its own tables
//! whenever one has doubled (or was never analysed) since: a few cheap ANALYZEs while a
//! database is young, none once it is large, and every cached plan is made again from
//! statistics that match the table.

use tokio_postgres::{Client, Error, Statement};

use super::Conn;

/// Tables whose plans matter; ANALYZE takes a name, not a parameter, so they are listed here.
const TABLES: &[&str] = &[
    "paths",
    "visits",
    "visit_tokens",
    "site_days",
    "path_days",
    "site_sources",
    "path_sources",
    "day_keys",
];
/// Below this many rows a table's plans hardly matter.
const MIN_ROWS: i64 = 1000;

pub(super) struct Statements {
    stale: Statement,
}

impl Statements {
    pub(super) async fn prepare(client: &Client) -> Result<Statements, Error> {
        Ok(Statements {
            stale: client
                .prepare(
                    "SELECT relname::text FROM pg_stat_user_tables
                     WHERE schemaname = current_schema() AND relname = ANY ($1)
                       AND n_live_tup >= $2
                       AND (coalesce(last_analyze, last_autoanalyze) IS NULL
                            OR n_mod_since_analyze > n_live_tup)",
                )
                .await?,
        })
    }
}

impl Conn {
    /// Analyses the tables that were never analysed or have changed by more than their size
    /// since; returns their names.
    pub async fn refresh_statistics(&self) -> Result<Vec<String>, Error> {
        let stale: Vec<String> = self
            .client
            .query(&self.statistics.stale, &[&TABLES, &MIN_ROWS])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for table in &stale {
            // Only names from TABLES come back, so the statement is built from constants.
            if let Some(name) = TABLES.iter().find(|known| *known == table) {
                self.client
                    .batch_execute(&format!("ANALYZE {name}"))
                    .await?;
            }
        }
        Ok(stale)
    }
}

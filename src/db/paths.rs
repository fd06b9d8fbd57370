//! The `paths` table: the tracked site's pages that passed the path check, with their
//! all-time visit totals (kept by the visits trigger, never decremented).

use tokio_postgres::{Client, Error, Statement};

use super::Conn;

pub(super) struct Statements {
    find: Statement,
    insert: Statement,
    after_id: Statement,
    after_name: Statement,
    names: Statement,
}

impl Statements {
    pub(super) async fn prepare(client: &Client) -> Result<Statements, Error> {
        Ok(Statements {
            find: client
                .prepare("SELECT id, visits FROM paths WHERE path = $1")
                .await?,
            // Another instance may have registered the path a moment ago: then this finds it.
            insert: client
                .prepare(
                    "INSERT INTO paths (path) VALUES ($1)
                     ON CONFLICT (path) DO UPDATE SET path = excluded.path
                     RETURNING id",
                )
                .await?,
            after_id: client
                .prepare("SELECT id, path FROM paths WHERE id > $1 ORDER BY id LIMIT $2")
                .await?,
            after_name: client
                .prepare(
                    "SELECT id, path, visits FROM paths WHERE path > $1 ORDER BY path LIMIT $2",
                )
                .await?,
            names: client
                .prepare("SELECT id, path FROM paths WHERE id = ANY ($1)")
                .await?,
        })
    }
}

/// A registered path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub id: i32,
    /// Visits counted in all, since the path was first seen.
    pub visits: i64,
}

/// A registered path with its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub id: i32,
    pub path: String,
    /// Visits counted in all.
    pub visits: i64,
}

impl Conn {
    pub async fn find_path(&self, path: &str) -> Result<Option<Found>, Error> {
        let row = self.client.query_opt(&self.paths.find, &[&path]).await?;
        Ok(row.map(|row| Found {
            id: row.get(0),
            visits: row.get(1),
        }))
    }

    /// Registers a path (or finds it, if another instance was first) and returns its id.
    pub async fn insert_path(&self, path: &str) -> Result<i32, Error> {
        Ok(self
            .client
            .query_one(&self.paths.insert, &[&path])
            .await?
            .get(0))
    }

    /// Up to `limit` paths with ids above `after`, by id: `(id, path)`.
    pub async fn paths_after_id(
        &self,
        after: i32,
        limit: i64,
    ) -> Result<Vec<(i32, String)>, Error> {
        let rows = self
            .client
            .query(&self.paths.after_id, &[&after, &limit])
            .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    /// Up to `limit` paths that sort after `after` (by their text), in that order.
    pub async fn paths_after_name(&self, after: &str, limit: i64) -> Result<Vec<Named>, Error> {
        let rows = self
            .client
            .query(&self.paths.after_name, &[&after, &limit])
            .await?;
        Ok(rows
            .iter()
            .map(|row| Named {
                id: row.get(0),
                path: row.get(1),
                visits: row.get(2),
            })
            .collect())
    }

    /// The text of each path id given (in no particular order; unknown ids are left out).
    pub async fn path_names(&self, ids: &[i32]) -> Result<Vec<(i32, String)>, Error> {
        let rows = self.client.query(&self.paths.names, &[&ids]).await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }
}

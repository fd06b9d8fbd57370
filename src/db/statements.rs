//! Every SQL statement the tracker runs, prepared once per connection.

use tokio_postgres::{Client, Error, Statement};

pub struct Statements {
    pub ping: Statement,
    /// All registered paths, loaded into the in-memory registry.
    pub all_paths: Statement,
    /// Registers a path (or finds it, if another instance was first) and returns its id.
    pub insert_path: Statement,
    /// A batch of visits; rows already stored (a retry) are skipped and not returned.
    pub insert_visits: Statement,
    /// Ids of visits identified by token and registration time.
    pub find_visits: Statement,
    /// A batch of spent times.
    pub update_spent_times: Statement,
}

impl Statements {
    pub async fn prepare(client: &Client) -> Result<Statements, Error> {
        Ok(Statements {
            ping: client.prepare("SELECT 1").await?,
            all_paths: client.prepare("SELECT id, path FROM paths").await?,
            insert_path: client
                .prepare(
                    "INSERT INTO paths (path) VALUES ($1)
                     ON CONFLICT (path) DO UPDATE SET path = excluded.path
                     RETURNING id",
                )
                .await?,
            insert_visits: client
                .prepare(
                    "INSERT INTO visits (token, path_id, registered_at, referrer)
                     SELECT * FROM unnest($1::int8[], $2::int4[], $3::timestamptz[], $4::text[])
                     ON CONFLICT (token, registered_at) DO NOTHING
                     RETURNING token, id",
                )
                .await?,
            find_visits: client
                .prepare(
                    "SELECT v.token, v.id FROM visits v
                     JOIN unnest($1::int8[], $2::timestamptz[]) AS k (token, registered_at)
                       ON v.token = k.token AND v.registered_at = k.registered_at",
                )
                .await?,
            update_spent_times: client
                .prepare(
                    "UPDATE visits v SET spent_time_seconds = u.seconds
                     FROM unnest($1::int8[], $2::int4[]) AS u (id, seconds)
                     WHERE v.id = u.id AND v.spent_time_seconds IS DISTINCT FROM u.seconds",
                )
                .await?,
        })
    }
}

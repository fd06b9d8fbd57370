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
    /// Every path with its total visits, most visited first.
    pub paths_by_visits: Statement,
    /// One path's id and total visits.
    pub path_by_name: Statement,
    /// Total visits and number of paths.
    pub site_totals: Statement,
    /// Visits per local day of a scope (a path id, or 0 for the site) in a day range.
    pub daily_visits: Statement,
    /// The first day a scope was visited.
    pub first_day: Statement,
    /// The most frequent referrers of a scope in a day range, with the total of all.
    pub top_referrers: Statement,
    /// The time-on-page histogram of a scope in a day range.
    pub spent_time_histogram: Statement,
}

/// Days are exchanged as numbers counted from 1970-01-01, so no date type is needed here.
const DAY_RANGE: &str =
    "scope = $1 AND day BETWEEN DATE '1970-01-01' + $2::int4 AND DATE '1970-01-01' + $3::int4";

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
            paths_by_visits: client
                .prepare("SELECT path, visits FROM paths ORDER BY visits DESC, path")
                .await?,
            path_by_name: client
                .prepare("SELECT id, visits FROM paths WHERE path = $1")
                .await?,
            site_totals: client
                .prepare("SELECT coalesce(sum(visits), 0)::int8, count(*) FROM paths")
                .await?,
            daily_visits: client
                .prepare(&format!(
                    "SELECT (day - DATE '1970-01-01')::int8, visits FROM daily_visits
                     WHERE {DAY_RANGE} AND visits <> 0 ORDER BY day"
                ))
                .await?,
            first_day: client
                .prepare(
                    "SELECT (min(day) - DATE '1970-01-01')::int8 FROM daily_visits
                     WHERE scope = $1 AND visits <> 0",
                )
                .await?,
            top_referrers: client
                .prepare(&format!(
                    "SELECT referrer, sum(visits)::int8 AS n, sum(sum(visits)) OVER ()::int8
                     FROM daily_referrers WHERE {DAY_RANGE}
                     GROUP BY referrer HAVING sum(visits) > 0
                     ORDER BY n DESC, referrer LIMIT $4"
                ))
                .await?,
            spent_time_histogram: client
                .prepare(&format!(
                    "SELECT bucket, sum(visits)::int8 FROM daily_spent_time WHERE {DAY_RANGE}
                     GROUP BY bucket HAVING sum(visits) > 0 ORDER BY bucket"
                ))
                .await?,
        })
    }
}

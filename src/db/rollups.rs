//! The roll-ups: per-day views, visits, visitors and time-on-page histograms of the site and of
//! each path, and the bounded per-day referrers and campaigns. The database keeps the visit
//! side itself (triggers on `visits`); the tracker adds views and visitors with
//! [`Conn::flush_views`]. Everything the dashboard and the insights API show comes from here,
//! never from raw visits, so a year costs a few hundred rows per scope.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Error, Row, Statement};

use super::Conn;
use crate::time::Day;
use crate::zone::LocalDay;

/// Time-on-page buckets: the `spent_N` columns; bounds from `spent_time_bucket_bounds()`.
pub const BUCKETS: usize = 14;

/// Whose numbers: the whole site, or one path (by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Site,
    Path(i32),
}

/// Sums over a range of days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub views: i64,
    pub visits: i64,
    pub visitors: i64,
    /// Visits per time-on-page bucket.
    pub spent: [i64; BUCKETS],
}

impl Totals {
    /// From the columns `views, visits, visitors, spent_0 … spent_13` starting at `first`.
    fn from_row(row: &Row, first: usize) -> Totals {
        let mut spent = [0; BUCKETS];
        for (bucket, count) in spent.iter_mut().enumerate() {
            *count = row.get(first + 3 + bucket);
        }
        Totals {
            views: row.get(first),
            visits: row.get(first + 1),
            visitors: row.get(first + 2),
            spent,
        }
    }
}

/// One day of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayCounts {
    pub day: Day,
    pub views: i64,
    pub visits: i64,
    pub visitors: i64,
}

/// A referring page and its visits, under its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReferrer {
    /// `None` for the visits counted past the per-day bound on distinct referrers.
    pub host: Option<String>,
    pub host_visits: i64,
    /// `None` when the host has no referrer left to list (the bounded remainder).
    pub referrer: Option<(String, i64)>,
}

/// Views and visitors tallied in memory, to add to the roll-ups.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ViewTally {
    /// `(path id, day, views, page visitors)`.
    pub paths: Vec<(i32, Day, i64, i64)>,
    /// `(day, views, site visitors)`.
    pub site: Vec<(Day, i64, i64)>,
}

impl ViewTally {
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.site.is_empty()
    }
}

pub(super) struct Statements {
    totals: [Statement; 2],
    daily: [Statement; 2],
    referrers: [Statement; 2],
    campaigns: [Statement; 2],
    pages: Statement,
    pages_spent: Statement,
    paths_spent: Statement,
    flush_views: Statement,
    version: Statement,
    today: Statement,
    bounds: Statement,
}

/// `DATE '1970-01-01' + $n`: days travel as numbers, so no date type is needed on this side.
fn day(param: usize) -> String {
    format!("DATE '1970-01-01' + ${param}::int4")
}

/// `coalesce(sum(spent_0), 0)::int8, …`.
fn spent_sums() -> String {
    (0..BUCKETS)
        .map(|bucket| format!("coalesce(sum(spent_{bucket}), 0)::int8"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Statements {
    pub(super) async fn prepare(client: &Client) -> Result<Statements, Error> {
        let range = format!("day BETWEEN {} AND {}", day(1), day(2));
        let sums = format!(
            "coalesce(sum(views), 0)::int8, coalesce(sum(visits), 0)::int8, \
             coalesce(sum(visitors), 0)::int8, {}",
            spent_sums()
        );
        // Site statements first, then path ones (with the path id as the last parameter).
        let both = |site: String, path: String| async move {
            Ok::<_, Error>([client.prepare(&site).await?, client.prepare(&path).await?])
        };
        let referrers = |table: &str, scope: &str| {
            // '' is the bounded remainder: its own host, never a listed referrer.
            format!(
                "WITH keys AS (
                     SELECT key, sum(visits)::int8 AS visits FROM {table}
                     WHERE kind = 1 AND {range}{scope} GROUP BY key
                 ), by_host AS (
                     SELECT key, visits, CASE WHEN key = '' THEN '' ELSE split_part(key, '/', 3) END AS host
                     FROM keys
                 ), hosts AS (
                     SELECT host, sum(visits)::int8 AS visits FROM by_host
                     GROUP BY host ORDER BY visits DESC, host LIMIT $3
                 ), ranked AS (
                     SELECT host, key, visits,
                            row_number() OVER (PARTITION BY host ORDER BY visits DESC, key) AS rank
                     FROM by_host WHERE key <> ''
                 )
                 SELECT h.host, h.visits, r.key, r.visits
                 FROM hosts h LEFT JOIN ranked r ON r.host = h.host AND r.rank <= $4
                 ORDER BY h.visits DESC, h.host, r.visits DESC, r.key"
            )
        };
        let campaigns = |table: &str, scope: &str| {
            format!(
                "SELECT key, sum(visits)::int8 AS visits FROM {table}
                 WHERE kind = 2 AND {range}{scope}
                 GROUP BY key ORDER BY visits DESC, key LIMIT $3"
            )
        };
        Ok(Statements {
            totals: both(
                format!("SELECT {sums} FROM site_days WHERE {range}"),
                format!("SELECT {sums} FROM path_days WHERE path_id = $3 AND {range}"),
            )
            .await?,
            daily: both(
                format!(
                    "SELECT (day - DATE '1970-01-01')::int4, views, visits, visitors
                     FROM site_days WHERE {range} ORDER BY day"
                ),
                format!(
                    "SELECT (day - DATE '1970-01-01')::int4, views::int8, visits::int8, visitors::int8
                     FROM path_days WHERE path_id = $3 AND {range} ORDER BY day"
                ),
            )
            .await?,
            referrers: both(
                referrers("site_sources", ""),
                referrers("path_sources", " AND path_id = $5"),
            )
            .await?,
            campaigns: both(
                campaigns("site_sources", ""),
                campaigns("path_sources", " AND path_id = $4"),
            )
            .await?,
            // Counts only: a year of a large site is millions of rows, and every aggregate
            // column costs time on each of them; histograms are summed where needed.
            pages: client
                .prepare(&format!(
                    "SELECT path_id, sum(views)::int8, sum(visits)::int8, sum(visitors)::int8
                     FROM path_days WHERE {range} GROUP BY path_id"
                ))
                .await?,
            pages_spent: client
                .prepare(&format!(
                    "SELECT path_id, {} FROM path_days WHERE {range} GROUP BY path_id",
                    spent_sums()
                ))
                .await?,
            paths_spent: client
                .prepare(&format!(
                    "SELECT path_id, {} FROM path_days
                     WHERE path_id = ANY ($3) AND {range} GROUP BY path_id",
                    spent_sums()
                ))
                .await?,
            // In one function, table after table in the order the visits triggers take
            // them, so concurrent writers (several instances) cannot deadlock.
            flush_views: client
                .prepare(
                    "SELECT flush_views($1::int4[], $2::int4[], $3::int8[], $4::int8[],
                                        $5::int4[], $6::int8[], $7::int8[])",
                )
                .await?,
            version: client
                // One row per connection that wrote (see sql/0004): their sum changes
                // whenever any of them does.
                .prepare("SELECT sum(version)::int8 FROM rollup_state")
                .await?,
            today: client
                .prepare(
                    "SELECT (d - DATE '1970-01-01')::int4,
                            floor(extract(epoch FROM day_start(d, time_zone, utc_offset_minutes)))::int8,
                            floor(extract(epoch FROM day_start(d + 1, time_zone, utc_offset_minutes)))::int8
                     FROM settings CROSS JOIN LATERAL
                          (SELECT local_day(now(), time_zone, utc_offset_minutes) AS d) today",
                )
                .await?,
            bounds: client.prepare("SELECT spent_time_bucket_bounds()").await?,
        })
    }
}

fn index(scope: Scope) -> usize {
    match scope {
        Scope::Site => 0,
        Scope::Path(_) => 1,
    }
}

impl Conn {
    /// Sums over the days `first..=last`.
    pub async fn totals(&self, scope: Scope, first: Day, last: Day) -> Result<Totals, Error> {
        let statement = &self.rollups.totals[index(scope)];
        let (first, last) = (first.days(), last.days());
        let row = match scope {
            Scope::Site => self.client.query_one(statement, &[&first, &last]).await?,
            Scope::Path(id) => {
                self.client
                    .query_one(statement, &[&first, &last, &id])
                    .await?
            }
        };
        Ok(Totals::from_row(&row, 0))
    }

    /// Days of `first..=last` that have counts, in order (days without any are left out).
    pub async fn daily(
        &self,
        scope: Scope,
        first: Day,
        last: Day,
    ) -> Result<Vec<DayCounts>, Error> {
        let statement = &self.rollups.daily[index(scope)];
        let (first, last) = (first.days(), last.days());
        let rows = match scope {
            Scope::Site => self.client.query(statement, &[&first, &last]).await?,
            Scope::Path(id) => self.client.query(statement, &[&first, &last, &id]).await?,
        };
        Ok(rows
            .iter()
            .map(|row| DayCounts {
                day: Day::from_days(row.get(0)),
                views: row.get(1),
                visits: row.get(2),
                visitors: row.get(3),
            })
            .collect())
    }

    /// The `hosts` most frequent referring hosts of the range, each with up to `per_host` of
    /// its referring pages, most visits first: one row per referrer (host rows repeat).
    pub async fn referrers(
        &self,
        scope: Scope,
        first: Day,
        last: Day,
        hosts: i64,
        per_host: i64,
    ) -> Result<Vec<HostReferrer>, Error> {
        let statement = &self.rollups.referrers[index(scope)];
        let (first, last) = (first.days(), last.days());
        let rows = match scope {
            Scope::Site => {
                self.client
                    .query(statement, &[&first, &last, &hosts, &per_host])
                    .await?
            }
            Scope::Path(id) => {
                self.client
                    .query(statement, &[&first, &last, &hosts, &per_host, &id])
                    .await?
            }
        };
        Ok(rows
            .iter()
            .map(|row| {
                let host: String = row.get(0);
                let referrer: Option<String> = row.get(2);
                HostReferrer {
                    host: (!host.is_empty()).then_some(host),
                    host_visits: row.get(1),
                    referrer: referrer.map(|referrer| (referrer, row.get(3))),
                }
            })
            .collect())
    }

    /// The `limit` most frequent campaigns of the range: `([source, medium, campaign], visits)`,
    /// a missing part `None`; all three `None` is the bounded remainder.
    pub async fn campaigns(
        &self,
        scope: Scope,
        first: Day,
        last: Day,
        limit: i64,
    ) -> Result<Vec<([Option<String>; 3], i64)>, Error> {
        let statement = &self.rollups.campaigns[index(scope)];
        let (first, last) = (first.days(), last.days());
        let rows = match scope {
            Scope::Site => {
                self.client
                    .query(statement, &[&first, &last, &limit])
                    .await?
            }
            Scope::Path(id) => {
                self.client
                    .query(statement, &[&first, &last, &limit, &id])
                    .await?
            }
        };
        Ok(rows
            .iter()
            .map(|row| {
                let key: &str = row.get(0);
                let mut parts = key
                    .split('\u{1f}')
                    .map(|part| (!part.is_empty()).then(|| part.to_string()));
                let mut next = || parts.next().flatten();
                ([next(), next(), next()], row.get(1))
            })
            .collect())
    }

    /// Every path with counts in `first..=last` and its views, visits and visitors, handed to
    /// `each` one at a time (a large site has a hundred thousand of them: no list of rows is
    /// ever built).
    pub async fn pages(
        &self,
        first: Day,
        last: Day,
        mut each: impl FnMut(i32, i64, i64, i64),
    ) -> Result<(), Error> {
        let rows = self
            .client
            .query_raw(&self.rollups.pages, [first.days(), last.days()])
            .await?;
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = super::next_row(rows.as_mut()).await {
            let row = row?;
            each(row.get(0), row.get(1), row.get(2), row.get(3));
        }
        Ok(())
    }

    /// The time-on-page histogram of every path in `first..=last` (all of them), or of the
    /// paths `only`, handed to `each` one at a time.
    pub async fn pages_spent(
        &self,
        first: Day,
        last: Day,
        only: Option<&[i32]>,
        mut each: impl FnMut(i32, [i64; BUCKETS]),
    ) -> Result<(), Error> {
        let (first, last) = (first.days(), last.days());
        let rows = match only {
            None => {
                self.client
                    .query_raw(
                        &self.rollups.pages_spent,
                        [&first as &(dyn ToSql + Sync), &last],
                    )
                    .await?
            }
            Some(ids) => {
                self.client
                    .query_raw(
                        &self.rollups.paths_spent,
                        [&first as &(dyn ToSql + Sync), &last, &ids],
                    )
                    .await?
            }
        };
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = super::next_row(rows.as_mut()).await {
            let row = row?;
            let mut spent = [0; BUCKETS];
            for (bucket, count) in spent.iter_mut().enumerate() {
                *count = row.get(1 + bucket);
            }
            each(row.get(0), spent);
        }
        Ok(())
    }

    /// Adds tallied views and visitors to the roll-ups, in one statement.
    pub async fn flush_views(&self, tally: &ViewTally) -> Result<(), Error> {
        let column = |f: fn(&(i32, Day, i64, i64)) -> i64| -> Vec<i64> {
            tally.paths.iter().map(f).collect()
        };
        let path_ids: Vec<i32> = tally.paths.iter().map(|p| p.0).collect();
        let path_days: Vec<i32> = tally.paths.iter().map(|p| p.1.days()).collect();
        let (path_views, path_visitors) = (column(|p| p.2), column(|p| p.3));
        let site_days: Vec<i32> = tally.site.iter().map(|s| s.0.days()).collect();
        let site_views: Vec<i64> = tally.site.iter().map(|s| s.1).collect();
        let site_visitors: Vec<i64> = tally.site.iter().map(|s| s.2).collect();
        self.client
            .execute(
                &self.rollups.flush_views,
                &[
                    &path_ids,
                    &path_days,
                    &path_views,
                    &path_visitors,
                    &site_days,
                    &site_views,
                    &site_visitors,
                ],
            )
            .await
            .map(drop)
    }

    /// Bumped by every roll-up change; unchanged means a cached aggregate is still exact.
    pub async fn rollup_version(&self) -> Result<i64, Error> {
        Ok(self
            .client
            .query_one(&self.rollups.version, &[])
            .await?
            .get(0))
    }

    /// The current local day in the zone the database counts days in.
    pub async fn local_today(&self) -> Result<LocalDay, Error> {
        let row = self.client.query_one(&self.rollups.today, &[]).await?;
        Ok(LocalDay {
            day: Day::from_days(row.get(0)),
            start: row.get(1),
            end: row.get(2),
        })
    }

    /// Lower bounds in seconds of the time-on-page buckets.
    pub async fn spent_time_bounds(&self) -> Result<Vec<i32>, Error> {
        Ok(self
            .client
            .query_one(&self.rollups.bounds, &[])
            .await?
            .get(0))
    }
}

//! Raw visits: written in batches by the visit writer, read back in keyset-paginated chunks
//! for `/api/history` and `/api/export`, and pruned by the retention job. Idempotency tokens
//! (`visit_tokens`) live beside them for a day.
//!
//! Every read is a short statement of its own that returns at most one chunk: a stream paced
//! by a slow client holds no transaction, no snapshot and no connection between chunks.

use std::collections::HashMap;
use std::time::SystemTime;

use tokio_postgres::{Client, Error, Statement};

use super::Conn;
use crate::time::Day;

pub(super) struct Statements {
    insert: Statement,
    set_spent: Statement,
    history: Statement,
    export_all: Statement,
    export_path: Statement,
    day_bounds: Statement,
    prune_visits: Statement,
    prune_tokens: Statement,
    try_lock: Statement,
    unlock: Statement,
}

/// Columns of a raw visit as the API shows it: Unix seconds, the offset in force at that
/// instant in the configured zone, referrer, spent time.
const VISIT_COLUMNS: &str =
    "v.id, v.registered_at, floor(extract(epoch FROM v.registered_at))::int8,
     local_offset_seconds(v.registered_at, s.time_zone, s.utc_offset_minutes),
     v.referrer, v.spent_time_seconds";

impl Statements {
    pub(super) async fn prepare(client: &Client) -> Result<Statements, Error> {
        Ok(Statements {
            // The token claims the write: a retry of a batch whose answer was lost finds its
            // visits in `visit_tokens` and gets their ids back instead of inserting them again.
            // (The last SELECT sees the table as it was before this statement, so it returns
            // exactly the visits stored earlier.)
            insert: client
                .prepare(
                    "WITH input AS (
                         SELECT * FROM unnest($1::int8[], $2::int4[], $3::timestamptz[], $4::text[],
                                              $5::text[], $6::text[], $7::text[])
                           AS i (token, path_id, registered_at, referrer, utm_source, utm_medium, utm_campaign)
                     ), claimed AS (
                         INSERT INTO visit_tokens (registered_at, token, visit_id)
                         SELECT registered_at, token, nextval('visits_id_seq') FROM input
                         ON CONFLICT DO NOTHING
                         RETURNING registered_at, token, visit_id
                     ), stored AS (
                         INSERT INTO visits (id, path_id, registered_at, referrer, utm_source, utm_medium, utm_campaign)
                         OVERRIDING SYSTEM VALUE
                         SELECT c.visit_id, i.path_id, i.registered_at, i.referrer, i.utm_source, i.utm_medium, i.utm_campaign
                         FROM claimed c JOIN input i USING (registered_at, token)
                     )
                     SELECT token, visit_id FROM claimed
                     UNION ALL
                     SELECT t.token, t.visit_id FROM visit_tokens t JOIN input i USING (registered_at, token)",
                )
                .await?,
            set_spent: client
                .prepare(
                    "UPDATE visits v SET spent_time_seconds = u.seconds
                     FROM unnest($1::int8[], $2::int4[]) AS u (id, seconds)
                     WHERE v.id = u.id AND v.spent_time_seconds IS DISTINCT FROM u.seconds",
                )
                .await?,
            history: client
                .prepare(&format!(
                    "SELECT {VISIT_COLUMNS} FROM visits v CROSS JOIN settings s
                     WHERE v.path_id = $1 AND (v.registered_at, v.id) > ($2, $3)
                     ORDER BY v.registered_at, v.id LIMIT $4"
                ))
                .await?,
            export_all: client
                .prepare(&format!(
                    "SELECT {VISIT_COLUMNS}, p.path, v.utm_source, v.utm_medium, v.utm_campaign
                     FROM visits v JOIN paths p ON p.id = v.path_id CROSS JOIN settings s
                     WHERE (v.registered_at, v.id) > ($1, $2) AND v.registered_at < $3
                     ORDER BY v.registered_at, v.id LIMIT $4"
                ))
                .await?,
            export_path: client
                .prepare(&format!(
                    "SELECT {VISIT_COLUMNS}, p.path, v.utm_source, v.utm_medium, v.utm_campaign
                     FROM visits v JOIN paths p ON p.id = v.path_id CROSS JOIN settings s
                     WHERE v.path_id = $5 AND (v.registered_at, v.id) > ($1, $2) AND v.registered_at < $3
                     ORDER BY v.registered_at, v.id LIMIT $4"
                ))
                .await?,
            day_bounds: client
                .prepare(
                    "SELECT day_start(DATE '1970-01-01' + $1::int4, time_zone, utc_offset_minutes),
                            day_start(DATE '1970-01-01' + $2::int4 + 1, time_zone, utc_offset_minutes)
                     FROM settings",
                )
                .await?,
            prune_visits: client
                .prepare(
                    "DELETE FROM visits WHERE id IN (
                         SELECT id FROM visits WHERE registered_at < $1 ORDER BY registered_at LIMIT $2)",
                )
                .await?,
            prune_tokens: client
                .prepare(
                    "DELETE FROM visit_tokens WHERE (registered_at, token) IN (
                         SELECT registered_at, token FROM visit_tokens WHERE registered_at < $1
                         ORDER BY registered_at LIMIT $2)",
                )
                .await?,
            // One pruner per schema at a time, whichever instance gets there first.
            try_lock: client
                .prepare("SELECT pg_try_advisory_lock(28536, hashtext(current_schema()))")
                .await?,
            unlock: client
                .prepare("SELECT pg_advisory_unlock(28536, hashtext(current_schema()))")
                .await?,
        })
    }
}

/// A visit to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVisit {
    /// The visitor token; with `registered_at` it makes the write idempotent.
    pub token: i64,
    pub path_id: i32,
    pub registered_at: SystemTime,
    pub referrer: Option<String>,
    pub campaign: Campaign,
}

/// The `utm_*` parameters of the visited page's URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Campaign {
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
}

/// A stored visit as the history and the export show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawVisit {
    pub unix_secs: i64,
    /// UTC offset at that instant in the configured zone.
    pub offset_secs: i32,
    pub referrer: Option<String>,
    pub spent_time_seconds: Option<i32>,
}

/// A visit of an export: the path and campaign too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedVisit {
    pub path: String,
    pub visit: RawVisit,
    pub campaign: Campaign,
}

/// Where a keyset-paginated read continues: after this visit.
#[derive(Debug, Clone, Copy)]
pub struct Cursor {
    registered_at: SystemTime,
    id: i64,
}

impl Cursor {
    /// Before every visit registered at `instant` or later.
    pub fn before(instant: SystemTime) -> Cursor {
        Cursor {
            registered_at: instant,
            id: i64::MIN,
        }
    }

    /// Before every visit (about 2,000 years before 1970, well inside PostgreSQL's range).
    pub fn start() -> Cursor {
        Cursor::before(SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(1 << 36))
    }
}

/// The instants a range of local days covers: `[start, end)`.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub start: SystemTime,
    pub end: SystemTime,
}

fn raw_visit(row: &tokio_postgres::Row) -> (Cursor, RawVisit) {
    (
        Cursor {
            id: row.get(0),
            registered_at: row.get(1),
        },
        RawVisit {
            unix_secs: row.get(2),
            offset_secs: row.get(3),
            referrer: row.get(4),
            spent_time_seconds: row.get(5),
        },
    )
}

impl Conn {
    /// Stores visits and returns their ids in input order, including the ids of visits an
    /// earlier attempt already stored (`None`: stored once, since deleted by hand).
    pub async fn insert_visits(&self, visits: &[&NewVisit]) -> Result<Vec<Option<i64>>, Error> {
        let tokens: Vec<i64> = visits.iter().map(|v| v.token).collect();
        let path_ids: Vec<i32> = visits.iter().map(|v| v.path_id).collect();
        let times: Vec<SystemTime> = visits.iter().map(|v| v.registered_at).collect();
        let referrers: Vec<Option<&str>> = visits.iter().map(|v| v.referrer.as_deref()).collect();
        let part = |get: fn(&Campaign) -> &Option<String>| -> Vec<Option<&str>> {
            visits.iter().map(|v| get(&v.campaign).as_deref()).collect()
        };
        let (sources, media, campaigns) = (
            part(|c| &c.source),
            part(|c| &c.medium),
            part(|c| &c.campaign),
        );
        let rows = self
            .client
            .query(
                &self.visits.insert,
                &[
                    &tokens, &path_ids, &times, &referrers, &sources, &media, &campaigns,
                ],
            )
            .await?;
        // A token is unique among pending visits, so it identifies its row within a batch.
        let ids: HashMap<i64, i64> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        Ok(tokens.iter().map(|token| ids.get(token).copied()).collect())
    }

    /// Stores spent times, `(visit id, seconds)`; the last value for a visit wins.
    pub async fn set_spent_times(&self, ids: &[i64], seconds: &[i32]) -> Result<u64, Error> {
        self.client
            .execute(&self.visits.set_spent, &[&ids, &seconds])
            .await
    }

    /// The next chunk of one path's visits in time order.
    pub async fn history_chunk(
        &self,
        path_id: i32,
        after: Cursor,
        limit: i64,
    ) -> Result<Vec<(Cursor, RawVisit)>, Error> {
        let rows = self
            .client
            .query(
                &self.visits.history,
                &[&path_id, &after.registered_at, &after.id, &limit],
            )
            .await?;
        Ok(rows.iter().map(raw_visit).collect())
    }

    /// The instants covered by the local days `first..=last`, in the configured zone.
    pub async fn day_span(&self, first: Day, last: Day) -> Result<Span, Error> {
        let row = self
            .client
            .query_one(&self.visits.day_bounds, &[&first.days(), &last.days()])
            .await?;
        Ok(Span {
            start: row.get(0),
            end: row.get(1),
        })
    }

    /// The next chunk of visits registered before `end` (of one path, or of all), in time
    /// order; start with [`Cursor::before`] the span's start.
    pub async fn export_chunk(
        &self,
        end: SystemTime,
        path_id: Option<i32>,
        after: Cursor,
        limit: i64,
    ) -> Result<Vec<(Cursor, ExportedVisit)>, Error> {
        let rows = match path_id {
            None => {
                self.client
                    .query(
                        &self.visits.export_all,
                        &[&after.registered_at, &after.id, &end, &limit],
                    )
                    .await?
            }
            Some(path_id) => {
                self.client
                    .query(
                        &self.visits.export_path,
                        &[&after.registered_at, &after.id, &end, &limit, &path_id],
                    )
                    .await?
            }
        };
        Ok(rows
            .iter()
            .map(|row| {
                let (cursor, visit) = raw_visit(row);
                (
                    cursor,
                    ExportedVisit {
                        path: row.get(6),
                        visit,
                        campaign: Campaign {
                            source: row.get(7),
                            medium: row.get(8),
                            campaign: row.get(9),
                        },
                    },
                )
            })
            .collect())
    }

    /// Deletes up to `limit` of the oldest visits registered before `cutoff`; the roll-ups
    /// keep them. Returns how many went.
    pub async fn prune_visits(&self, cutoff: SystemTime, limit: i64) -> Result<u64, Error> {
        self.client
            .execute(&self.visits.prune_visits, &[&cutoff, &limit])
            .await
    }

    /// Takes the pruning lock of this schema for this connection, if nobody holds it.
    pub async fn try_lock_pruning(&self) -> Result<bool, Error> {
        Ok(self
            .client
            .query_one(&self.visits.try_lock, &[])
            .await?
            .get(0))
    }

    pub async fn unlock_pruning(&self) -> Result<(), Error> {
        self.client
            .query_one(&self.visits.unlock, &[])
            .await
            .map(drop)
    }

    /// Deletes up to `limit` idempotency tokens of visits registered before `cutoff`.
    pub async fn prune_tokens(&self, cutoff: SystemTime, limit: i64) -> Result<u64, Error> {
        self.client
            .execute(&self.visits.prune_tokens, &[&cutoff, &limit])
            .await
    }
}

//! The pages table: every path's figures over a range, sortable by any column and paged, for
//! sites with a hundred thousand paths.
//!
//! Ranking needs every path's sums over the range, which is one aggregate over `path_days`
//! (a year of a large site is millions of rows: about a second of PostgreSQL time). So the
//! aggregate is built once into a compact table (20 bytes per path) and kept for the range
//! last asked; each request checks it against the roll-ups' version (one tiny query) and
//! only slices it. While visits arrive the version changes constantly: a table is then
//! rebuilt when asked for, except that a table whose build was slow may serve for up to
//! [`STALE_FACTOR`] times its build time before a rebuild (so a busy large site spends at
//! most a tenth of a core's time on rebuilding it). A small site's table builds in
//! milliseconds and is always exact.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::{Histogram, Range};
use crate::db::rollups::Totals;
use crate::db::{Db, Unavailable};

/// How many build times a slow-built table may serve after the data changed.
pub const STALE_FACTOR: u32 = 10;
/// Builds faster than this are always redone when the data changed.
const ALWAYS_FRESH_BELOW: Duration = Duration::from_millis(50);

/// Columns the table sorts by, largest first (paths alphabetically).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Visits,
    Views,
    Visitors,
    Engagement,
    Spent,
    Path,
}

impl Sort {
    pub const ALL: [Sort; 6] = [
        Sort::Visits,
        Sort::Views,
        Sort::Visitors,
        Sort::Engagement,
        Sort::Spent,
        Sort::Path,
    ];

    pub fn parse(text: &str) -> Option<Sort> {
        Sort::ALL.into_iter().find(|sort| sort.key() == text)
    }

    pub fn key(self) -> &'static str {
        match self {
            Sort::Visits => "visits",
            Sort::Views => "views",
            Sort::Visitors => "visitors",
            Sort::Engagement => "engagement",
            Sort::Spent => "spent",
            Sort::Path => "path",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One path's figures, compact: a hundred thousand of them fit in 2 MB.
#[derive(Debug, Clone, Copy)]
struct Entry {
    path_id: i32,
    views: u32,
    visits: u32,
    visitors: u32,
    /// Seconds; NaN when no time was reported.
    median: f32,
}

impl Entry {
    fn new(path_id: i32, totals: &Totals) -> Entry {
        let clamp = |n: i64| n.clamp(0, i64::from(u32::MAX)) as u32;
        let median = Histogram {
            counts: totals.spent,
        }
        .median()
        .map_or(f32::NAN, |estimate| estimate.seconds as f32);
        Entry {
            path_id,
            views: clamp(totals.views),
            visits: clamp(totals.visits),
            visitors: clamp(totals.visitors),
            median,
        }
    }

    fn engagement(&self) -> Option<f64> {
        super::engagement(i64::from(self.visits), i64::from(self.views))
    }
}

/// A row of the pages table, ready to show.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRow {
    pub path: String,
    pub views: i64,
    pub visits: i64,
    pub visitors: i64,
    pub engagement: Option<f64>,
    /// Seconds; at least an hour means "an hour or more" (the open histogram bucket).
    pub median_spent: Option<f64>,
}

/// One page of the table, and how many rows the whole table has.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub rows: Vec<PageRow>,
    pub total: usize,
}

struct Table {
    range: Range,
    version: i64,
    built: Instant,
    build_time: Duration,
    entries: Box<[Entry]>,
    /// Entry indexes in each sort order, computed the first time that order is asked for.
    orders: [OnceLock<Box<[u32]>>; Sort::ALL.len()],
}

impl Table {
    fn usable_for(&self, range: Range, version: i64) -> bool {
        if self.range != range {
            return false;
        }
        if self.version == version {
            return true;
        }
        self.build_time >= ALWAYS_FRESH_BELOW
            && self.built.elapsed() < self.build_time * STALE_FACTOR
    }
}

/// Largest first; ties (and values unknown, which go last) by path id, so pages never
/// overlap or skip.
fn compare(a: &Entry, b: &Entry, sort: Sort) -> std::cmp::Ordering {
    let by_value = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    };
    let median = |e: &Entry| (!e.median.is_nan()).then_some(f64::from(e.median));
    let primary = match sort {
        Sort::Visits => b.visits.cmp(&a.visits),
        Sort::Views => b.views.cmp(&a.views),
        Sort::Visitors => b.visitors.cmp(&a.visitors),
        Sort::Engagement => by_value(a.engagement(), b.engagement()),
        Sort::Spent => by_value(median(a), median(b)),
        Sort::Path => std::cmp::Ordering::Equal,
    };
    primary.then(a.path_id.cmp(&b.path_id))
}

/// The table of the range last asked for (one at a time: a table is up to a few MB).
#[derive(Default)]
pub struct PagesCache {
    table: Mutex<Option<Arc<Table>>>,
}

impl PagesCache {
    pub fn new() -> PagesCache {
        PagesCache::default()
    }

    /// Rows `offset..offset + limit` of the table of `range` sorted by `sort`.
    pub async fn page(
        &self,
        db: &Db,
        range: Range,
        sort: Sort,
        offset: usize,
        limit: usize,
    ) -> Result<Page, Unavailable> {
        let table = self.table(db, range).await?;
        let order = match table.orders[sort.index()].get() {
            Some(order) => order,
            None => {
                let order = if sort == Sort::Path {
                    by_path(db, &table.entries).await?
                } else {
                    let mut order: Vec<u32> = (0..table.entries.len() as u32).collect();
                    order.sort_unstable_by(|&a, &b| {
                        compare(&table.entries[a as usize], &table.entries[b as usize], sort)
                    });
                    order.into_boxed_slice()
                };
                table.orders[sort.index()].get_or_init(|| order)
            }
        };
        let chosen: Vec<&Entry> = order
            .iter()
            .skip(offset)
            .take(limit)
            .map(|&i| &table.entries[i as usize])
            .collect();
        let ids: Vec<i32> = chosen.iter().map(|e| e.path_id).collect();
        let mut names = db.reads()?.path_names(&ids).await?;
        names.sort_unstable_by_key(|(id, _)| *id);
        let rows = chosen
            .into_iter()
            .filter_map(|entry| {
                let at = names
                    .binary_search_by_key(&entry.path_id, |(id, _)| *id)
                    .ok()?;
                Some(PageRow {
                    path: std::mem::take(&mut names[at].1),
                    views: i64::from(entry.views),
                    visits: i64::from(entry.visits),
                    visitors: i64::from(entry.visitors),
                    engagement: entry.engagement(),
                    median_spent: (!entry.median.is_nan()).then_some(f64::from(entry.median)),
                })
            })
            .collect();
        Ok(Page {
            rows,
            total: table.entries.len(),
        })
    }

    async fn table(&self, db: &Db, range: Range) -> Result<Arc<Table>, Unavailable> {
        let conn = db.reads()?;
        let version = conn.rollup_version().await?;
        // Held while building: concurrent requests wait for the one build instead of
        // starting their own.
        let mut current = self.table.lock().await;
        if let Some(table) = current.as_ref().filter(|t| t.usable_for(range, version)) {
            return Ok(table.clone());
        }
        // The old table goes before the new one is built, so two never coexist in memory.
        *current = None;
        let started = Instant::now();
        let mut entries = Vec::new();
        conn.pages(range.first, range.last, |path_id, totals| {
            entries.push(Entry::new(path_id, &totals));
        })
        .await?;
        let table = Arc::new(Table {
            range,
            version,
            built: Instant::now(),
            build_time: started.elapsed(),
            entries: entries.into_boxed_slice(),
            orders: Default::default(),
        });
        tracing::debug!(
            paths = table.entries.len(),
            build_ms = table.build_time.as_millis() as u64,
            "built the pages table"
        );
        *current = Some(table.clone());
        Ok(table)
    }
}

/// Entry indexes in the alphabetical order of their paths (asked of the database, which
/// has the paths' text and an index on it), in chunks of 10,000 paths.
async fn by_path(db: &Db, entries: &[Entry]) -> Result<Box<[u32]>, Unavailable> {
    let mut position: std::collections::HashMap<i32, u32> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path_id, i as u32))
        .collect();
    let conn = db.reads()?;
    let mut order = Vec::with_capacity(entries.len());
    let mut after = String::new();
    loop {
        let chunk = conn.paths_after_name(&after, 10_000).await?;
        let Some(last) = chunk.last() else { break };
        after.clone_from(&last.path);
        order.extend(chunk.iter().filter_map(|named| position.remove(&named.id)));
    }
    Ok(order.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path_id: i32, views: u32, visits: u32, median: f32) -> Entry {
        Entry {
            path_id,
            views,
            visits,
            visitors: views / 2,
            median,
        }
    }

    #[test]
    fn every_sort_is_largest_first_with_unknowns_last() {
        let entries = [
            entry(1, 10, 5, 30.0),
            entry(2, 0, 3, f32::NAN),
            entry(3, 10, 9, 10.0),
            entry(4, 20, 5, 90.0),
        ];
        let sorted = |sort| {
            let mut order: Vec<&Entry> = entries.iter().collect();
            order.sort_by(|a, b| compare(a, b, sort));
            order.iter().map(|e| e.path_id).collect::<Vec<_>>()
        };
        assert_eq!(sorted(Sort::Visits), vec![3, 1, 4, 2]);
        assert_eq!(sorted(Sort::Views), vec![4, 1, 3, 2]);
        assert_eq!(sorted(Sort::Engagement), vec![3, 1, 4, 2], "no views: last");
        assert_eq!(sorted(Sort::Spent), vec![4, 1, 3, 2], "no time: last");
    }

    #[test]
    fn a_table_is_reused_while_exact_and_stale_only_when_slow_to_build() {
        let range = Range::ending(crate::time::Day::from_days(20_000), 30);
        let table = |build_ms| Table {
            range,
            version: 7,
            built: Instant::now(),
            build_time: Duration::from_millis(build_ms),
            entries: Box::new([]),
            orders: Default::default(),
        };
        assert!(table(1).usable_for(range, 7));
        assert!(!table(1).usable_for(range, 8), "cheap: rebuilt at once");
        assert!(table(800).usable_for(range, 8), "slow: serves a while");
        assert!(!table(800).usable_for(Range::ending(range.last, 7), 7));
    }
}

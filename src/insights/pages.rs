//! The pages table: every path's figures over a range, sortable by any column and paged, for
//! sites with a hundred thousand paths.
//!
//! Ranking needs every path's sums over the range, which is one aggregate over `path_days`
//! (a year of a large site is millions of rows: a second or more of PostgreSQL time). So the
//! aggregate is built once into a compact table (20 bytes per path) and kept for the range
//! last asked; each request checks it against the roll-ups' version (one tiny query) and
//! only slices it. Medians of the time on page need each path's histogram, fourteen more
//! sums per row: they are computed for the rows a page shows and remembered, and for every
//! path only when the table is sorted by them.
//!
//! While visits arrive the version changes constantly. A table that builds in milliseconds
//! (a small site) is then rebuilt at once and always exact; a table whose build was slow
//! keeps serving for up to [`STALE_FACTOR`] times its build time, and after that it is
//! rebuilt in the background while it still serves, so nobody waits and a busy large site
//! spends at most a tenth of a core on rebuilding it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::{Histogram, Range};
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
}

/// One path's figures, compact: a hundred thousand of them fit in 2 MB.
#[derive(Debug)]
struct Entry {
    path_id: i32,
    views: u32,
    visits: u32,
    visitors: u32,
    /// The median's bits as an `f32` of seconds, NaN when no time was reported, or
    /// [`NOT_COMPUTED`].
    median: AtomicU32,
}

/// A median nobody asked for yet (not a bit pattern `f32` arithmetic produces).
const NOT_COMPUTED: u32 = u32::MAX;

impl Entry {
    fn new(path_id: i32, views: i64, visits: i64, visitors: i64) -> Entry {
        let clamp = |n: i64| n.clamp(0, i64::from(u32::MAX)) as u32;
        Entry {
            path_id,
            views: clamp(views),
            visits: clamp(visits),
            visitors: clamp(visitors),
            median: AtomicU32::new(NOT_COMPUTED),
        }
    }

    fn engagement(&self) -> Option<f64> {
        super::engagement(i64::from(self.visits), i64::from(self.views))
    }

    /// The median, once computed: `Some(None)` when no time was reported.
    fn median(&self) -> Option<Option<f64>> {
        // Relaxed: each value is self-contained; racing writers store the same value.
        match self.median.load(Ordering::Relaxed) {
            NOT_COMPUTED => None,
            bits => {
                let seconds = f32::from_bits(bits);
                Some((!seconds.is_nan()).then_some(f64::from(seconds)))
            }
        }
    }

    fn set_median(&self, histogram: [i64; crate::db::rollups::BUCKETS]) {
        let seconds = Histogram { counts: histogram }
            .median()
            .map_or(f32::NAN, |estimate| estimate.seconds as f32);
        self.median.store(seconds.to_bits(), Ordering::Relaxed);
    }

    fn no_median(&self) {
        self.median.store(f32::NAN.to_bits(), Ordering::Relaxed);
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
    /// Entry indexes in the sort orders asked for lately, most recent last: computing one
    /// takes milliseconds, keeping all six of a large site would take 2.4 MB.
    orders: std::sync::Mutex<Vec<(Sort, Arc<[u32]>)>>,
    /// Every median is computed (for the sort by time on page).
    all_medians: OnceLock<()>,
}

/// Sort orders a table keeps.
const ORDERS_KEPT: usize = 2;

impl Table {
    fn order(&self, sort: Sort) -> Option<Arc<[u32]>> {
        let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
        let at = orders.iter().position(|(kept, _)| *kept == sort)?;
        let found = orders.remove(at);
        orders.push(found.clone());
        Some(found.1)
    }

    fn keep_order(&self, sort: Sort, order: Arc<[u32]>) {
        let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
        orders.retain(|(kept, _)| *kept != sort);
        if orders.len() >= ORDERS_KEPT {
            orders.remove(0);
        }
        orders.push((sort, order));
    }

    fn entry(&self, path_id: i32) -> Option<&Entry> {
        self.entries
            .binary_search_by_key(&path_id, |entry| entry.path_id)
            .ok()
            .map(|at| &self.entries[at])
    }

    /// Whether this table may answer for `range` at roll-up `version`, and whether it should
    /// be rebuilt in the background meanwhile.
    fn usable_for(&self, range: Range, version: i64) -> Freshness {
        if self.range != range {
            return Freshness::Other;
        }
        if self.version == version {
            return Freshness::Exact;
        }
        if self.build_time < ALWAYS_FRESH_BELOW {
            return Freshness::Other;
        }
        if self.built.elapsed() < self.build_time * STALE_FACTOR {
            Freshness::Recent
        } else {
            Freshness::Due
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    /// Built at this version.
    Exact,
    /// Older, but within its staleness allowance.
    Recent,
    /// Older: serve it, and rebuild in the background.
    Due,
    /// For another range, or too cheap to serve stale: build now.
    Other,
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
    let median = |e: &Entry| e.median().flatten();
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

/// Tables kept: the range last asked for. A large site's table is a few MB, and the memory
/// bar is 12 MiB for the whole process; another range waits for its build.
const TABLES: usize = 1;

#[derive(Default)]
pub struct PagesCache {
    /// Most recently used last.
    tables: Mutex<Vec<Arc<Table>>>,
    /// Ranges being rebuilt in the background.
    rebuilding: std::sync::Mutex<Vec<Range>>,
}

impl PagesCache {
    pub fn new() -> PagesCache {
        PagesCache::default()
    }

    /// Rows `offset..offset + limit` of the table of `range` sorted by `sort`.
    /// `known_paths` (how many paths exist) sizes a table being built.
    pub async fn page(
        self: &Arc<Self>,
        db: &Db,
        known_paths: usize,
        range: Range,
        sort: Sort,
        offset: usize,
        limit: usize,
    ) -> Result<Page, Unavailable> {
        let table = self.table(db, range, known_paths).await?;
        if sort == Sort::Spent && table.all_medians.get().is_none() {
            db.reads()?
                .pages_spent(range.first, range.last, None, |path_id, histogram| {
                    if let Some(entry) = table.entry(path_id) {
                        entry.set_median(histogram);
                    }
                })
                .await?;
            for entry in table.entries.iter().filter(|e| e.median().is_none()) {
                entry.no_median();
            }
            let _ = table.all_medians.set(());
        }
        let order = match table.order(sort) {
            Some(order) => order,
            None => {
                let order: Arc<[u32]> = if sort == Sort::Path {
                    by_path(db, &table).await?
                } else {
                    // Made in place: a Vec turned into an Arc would be copied.
                    let mut order: Arc<[u32]> = (0..table.entries.len() as u32).collect();
                    if let Some(unshared) = Arc::get_mut(&mut order) {
                        unshared.sort_unstable_by(|&a, &b| {
                            compare(&table.entries[a as usize], &table.entries[b as usize], sort)
                        });
                    }
                    order
                };
                table.keep_order(sort, order.clone());
                order
            }
        };
        let chosen: Vec<&Entry> = order
            .iter()
            .skip(offset)
            .take(limit)
            .map(|&i| &table.entries[i as usize])
            .collect();
        let ids: Vec<i32> = chosen.iter().map(|e| e.path_id).collect();
        let conn = db.reads()?;
        let missing: Vec<i32> = chosen
            .iter()
            .filter(|e| e.median().is_none())
            .map(|e| e.path_id)
            .collect();
        if !missing.is_empty() {
            conn.pages_spent(
                range.first,
                range.last,
                Some(&missing),
                |path_id, histogram| {
                    if let Some(entry) = table.entry(path_id) {
                        entry.set_median(histogram);
                    }
                },
            )
            .await?;
            for entry in chosen.iter().filter(|e| e.median().is_none()) {
                entry.no_median();
            }
        }
        let mut names = conn.path_names(&ids).await?;
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
                    median_spent: entry.median().flatten(),
                })
            })
            .collect();
        Ok(Page {
            rows,
            total: table.entries.len(),
        })
    }

    async fn table(
        self: &Arc<Self>,
        db: &Db,
        range: Range,
        known_paths: usize,
    ) -> Result<Arc<Table>, Unavailable> {
        let version = db.reads()?.rollup_version().await?;
        // Held while building: concurrent requests wait for the one build instead of
        // starting their own.
        let mut tables = self.tables.lock().await;
        let found = tables
            .iter()
            .rposition(|table| table.usable_for(range, version) != Freshness::Other);
        if let Some(at) = found {
            let table = tables.remove(at);
            tables.push(table.clone());
            if table.usable_for(range, version) == Freshness::Due {
                self.rebuild_in_background(db, range, known_paths);
            }
            return Ok(table);
        }
        // Tables of this range that are out of date go before the new one is built, so the
        // memory of two of them is never needed for one range.
        tables.retain(|table| table.range != range);
        let table = Arc::new(build(db, range, version, known_paths).await?);
        store(&mut tables, table.clone());
        Ok(table)
    }

    fn rebuild_in_background(self: &Arc<Self>, db: &Db, range: Range, known_paths: usize) {
        {
            let mut rebuilding = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
            if rebuilding.contains(&range) {
                return;
            }
            rebuilding.push(range);
        }
        let (cache, db) = (self.clone(), db.clone());
        tokio::spawn(async move {
            let built = async {
                let version = db.reads()?.rollup_version().await?;
                build(&db, range, version, known_paths).await
            }
            .await;
            if let Ok(table) = built {
                let mut tables = cache.tables.lock().await;
                tables.retain(|t| t.range != range);
                store(&mut tables, Arc::new(table));
            }
            cache
                .rebuilding
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|r| *r != range);
        });
    }
}

fn store(tables: &mut Vec<Arc<Table>>, table: Arc<Table>) {
    while tables.len() >= TABLES {
        tables.remove(0);
    }
    tables.push(table);
}

async fn build(
    db: &Db,
    range: Range,
    version: i64,
    expected_paths: usize,
) -> Result<Table, Unavailable> {
    let started = Instant::now();
    // Sized for every known path up front: growing by doubling would need twice the memory
    // at the end.
    let mut entries = Vec::with_capacity(expected_paths);
    db.reads()?
        .pages(
            range.first,
            range.last,
            |path_id, views, visits, visitors| {
                entries.push(Entry::new(path_id, views, visits, visitors));
            },
        )
        .await?;
    // In id order, so an entry is found by binary search without a map beside the table.
    entries.sort_unstable_by_key(|entry| entry.path_id);
    let table = Table {
        range,
        version,
        built: Instant::now(),
        build_time: started.elapsed(),
        entries: entries.into_boxed_slice(),
        orders: Default::default(),
        all_medians: OnceLock::new(),
    };
    tracing::debug!(
        paths = table.entries.len(),
        build_ms = table.build_time.as_millis() as u64,
        "built the pages table"
    );
    crate::memory::release_free();
    Ok(table)
}

/// Entry indexes in the alphabetical order of their paths (asked of the database, which
/// has the paths' text and an index on it), in chunks of 500 paths (a chunk's rows are in
/// memory at once).
async fn by_path(db: &Db, table: &Table) -> Result<Arc<[u32]>, Unavailable> {
    let conn = db.reads()?;
    let mut order = Vec::with_capacity(table.entries.len());
    let mut after = String::new();
    loop {
        let chunk = conn.paths_after_name(&after, 500).await?;
        let Some(last) = chunk.last() else { break };
        after.clone_from(&last.path);
        order.extend(chunk.iter().filter_map(|named| {
            table
                .entries
                .binary_search_by_key(&named.id, |entry| entry.path_id)
                .ok()
                .map(|at| at as u32)
        }));
    }
    Ok(order.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path_id: i32, views: u32, visits: u32, median: f32) -> Entry {
        let entry = Entry::new(path_id, views.into(), visits.into(), (views / 2).into());
        entry.median.store(median.to_bits(), Ordering::Relaxed);
        entry
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
    fn medians_are_remembered_once_computed() {
        let entry = Entry::new(1, 4, 2, 1);
        assert_eq!(entry.median(), None, "not computed yet");
        let mut histogram = [0; crate::db::rollups::BUCKETS];
        histogram[2] = 10;
        entry.set_median(histogram);
        assert_eq!(entry.median(), Some(Some(25.0)));
        entry.no_median();
        assert_eq!(entry.median(), Some(None), "computed: no time reported");
    }

    #[test]
    fn a_table_is_reused_while_exact_and_rebuilt_behind_when_slow_to_build() {
        let range = Range::ending(crate::time::Day::from_days(20_000), 30);
        let table = |build_ms, age_ms| Table {
            range,
            version: 7,
            built: Instant::now() - Duration::from_millis(age_ms),
            build_time: Duration::from_millis(build_ms),
            entries: Box::new([]),
            orders: Default::default(),
            all_medians: OnceLock::new(),
        };
        assert_eq!(table(1, 0).usable_for(range, 7), Freshness::Exact);
        assert_eq!(
            table(1, 0).usable_for(range, 8),
            Freshness::Other,
            "cheap: rebuilt at once"
        );
        assert_eq!(
            table(800, 0).usable_for(range, 8),
            Freshness::Recent,
            "slow: serves a while"
        );
        assert_eq!(
            table(800, 9000).usable_for(range, 8),
            Freshness::Due,
            "then rebuilt behind"
        );
        assert_eq!(
            table(800, 0).usable_for(Range::ending(range.last, 7), 7),
            Freshness::Other
        );
    }
}

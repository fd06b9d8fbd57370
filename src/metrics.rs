//! `/metrics`: counters and histograms in the Prometheus text exposition format 0.0.4.
//!
//! # Invariants
//! 1. The set of families is fixed at compile time and every series is preallocated at
//!    construction: recording is one or two relaxed atomic additions, never a lock or an
//!    allocation, so it can sit on every request's path.
//! 2. Label values come from fixed tables (route names given at construction, the enums
//!    below, a fixed list of status codes), so the number of series is bounded whatever
//!    clients send.
//! 3. A histogram stores one counter per bucket (not cumulative) and its `_count` is their
//!    sum read at render time, so the rendered buckets are cumulative and `+Inf` equals
//!    `_count` even while other threads record. `_sum` is a separate counter and may run
//!    one observation ahead or behind; Prometheus tolerates that, readers compute rates.
//! 4. Gauges are sampled by the caller at scrape time ([`Gauges`]); nothing here polls.
//!
//! Series of a labelled family with a fixed, small set of values (outcomes, results,
//! kinds) are always rendered, zeros included, so rates work from the first increment.
//! Request series (routes × statuses) appear once they have been seen, as with the usual
//! client libraries: rendering every pair would be hundreds of lines of zeros per scrape.

use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use hyper::header::HeaderValue;

/// What `/metrics` answers with.
pub const CONTENT_TYPE: HeaderValue =
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");

/// Statuses this server sends, each counted under its own code; sorted for the lookup. A
/// status missing here is counted under its class (`"5xx"`), which keeps the table fixed
/// and still matches the usual `status=~"5.."` alerts; `"other"` takes codes 600–999,
/// which `StatusCode` admits but no server of ours sends.
const STATUSES: [(u16, &str); 17] = [
    (200, "200"),
    (204, "204"),
    (301, "301"),
    (304, "304"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (413, "413"),
    (414, "414"),
    (421, "421"),
    (425, "425"),
    (429, "429"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
];
const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];
const STATUS_SLOTS: usize = STATUSES.len() + STATUS_CLASSES.len();

fn status_slot(status: StatusCode) -> usize {
    let code = status.as_u16();
    match STATUSES.binary_search_by_key(&code, |&(known, _)| known) {
        Ok(slot) => slot,
        Err(_) => STATUSES.len() + (usize::from(code / 100) - 1).min(STATUS_CLASSES.len() - 1),
    }
}

fn status_label(slot: usize) -> &'static str {
    match STATUSES.get(slot) {
        Some(&(_, label)) => label,
        None => STATUS_CLASSES[slot - STATUSES.len()],
    }
}

/// A bucket's upper bound, in the histogram's unit, and as the `le` label says it.
struct Bound {
    upper: u64,
    le: &'static str,
}

const fn millis_tenths(tenths: u64, le: &'static str) -> Bound {
    Bound {
        upper: tenths * 100_000,
        le,
    }
}

/// Nanoseconds; from a tenth of a millisecond (a request answered from memory) to ten
/// seconds (past every timeout we set), about three buckets per decade.
const DURATION_BOUNDS: [Bound; 16] = [
    millis_tenths(1, "0.0001"),
    millis_tenths(2, "0.0002"),
    millis_tenths(5, "0.0005"),
    millis_tenths(10, "0.001"),
    millis_tenths(25, "0.0025"),
    millis_tenths(50, "0.005"),
    millis_tenths(100, "0.01"),
    millis_tenths(250, "0.025"),
    millis_tenths(500, "0.05"),
    millis_tenths(1_000, "0.1"),
    millis_tenths(2_500, "0.25"),
    millis_tenths(5_000, "0.5"),
    millis_tenths(10_000, "1"),
    millis_tenths(25_000, "2.5"),
    millis_tenths(50_000, "5"),
    millis_tenths(100_000, "10"),
];
const DURATION_BUCKETS: usize = DURATION_BOUNDS.len() + 1;

/// Rows per writer batch: powers of two up to the writer's largest batch (512).
const ROWS_BOUNDS: [Bound; 10] = [
    Bound { upper: 1, le: "1" },
    Bound { upper: 2, le: "2" },
    Bound { upper: 4, le: "4" },
    Bound { upper: 8, le: "8" },
    Bound {
        upper: 16,
        le: "16",
    },
    Bound {
        upper: 32,
        le: "32",
    },
    Bound {
        upper: 64,
        le: "64",
    },
    Bound {
        upper: 128,
        le: "128",
    },
    Bound {
        upper: 256,
        le: "256",
    },
    Bound {
        upper: 512,
        le: "512",
    },
];
const ROWS_BUCKETS: usize = ROWS_BOUNDS.len() + 1;

#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn absorb(&self, other: &Counter) {
        self.add(other.get());
    }
}

/// `B` buckets: one per bound and the `+Inf` overflow.
struct Histogram<const B: usize> {
    buckets: [Counter; B],
    sum: Counter,
}

impl<const B: usize> Histogram<B> {
    fn new() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| Counter::default()),
            sum: Counter::default(),
        }
    }

    fn observe(&self, bounds: &[Bound], value: u64) {
        debug_assert_eq!(bounds.len() + 1, B);
        let bucket = bounds
            .iter()
            .position(|bound| value <= bound.upper)
            .unwrap_or(bounds.len());
        self.buckets[bucket].add(1);
        self.sum.add(value);
    }

    fn absorb(&self, other: &Self) {
        absorb_all(&self.buckets, &other.buckets);
        self.sum.absorb(&other.sum);
    }

    fn count(&self) -> u64 {
        self.buckets.iter().map(Counter::get).sum()
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// How a `/register` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    Ok,
    /// The path matches `exclude_paths`.
    Excluded,
    /// The tracked site does not have the page.
    NotOnSite,
    /// `max_paths` reached.
    PathLimit,
    /// The client holds `max_pending_per_client` registrations already.
    ClientLimit,
    /// Every visitor slot is busy.
    Busy,
    /// The path check or the database could not answer.
    Unavailable,
    BadRequest,
}

impl Registration {
    const ALL: [Registration; 8] = [
        Registration::Ok,
        Registration::Excluded,
        Registration::NotOnSite,
        Registration::PathLimit,
        Registration::ClientLimit,
        Registration::Busy,
        Registration::Unavailable,
        Registration::BadRequest,
    ];

    fn label(self) -> &'static str {
        match self {
            Registration::Ok => "ok",
            Registration::Excluded => "excluded",
            Registration::NotOnSite => "not_on_site",
            Registration::PathLimit => "path_limit",
            Registration::ClientLimit => "client_limit",
            Registration::Busy => "busy",
            Registration::Unavailable => "unavailable",
            Registration::BadRequest => "bad_request",
        }
    }
}

/// Whose day-marker said "new visitor today": the site's or one page's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisitorScope {
    Site,
    Page,
}

impl VisitorScope {
    const ALL: [VisitorScope; 2] = [VisitorScope::Site, VisitorScope::Page];

    fn label(self) -> &'static str {
        match self {
            VisitorScope::Site => "site",
            VisitorScope::Page => "page",
        }
    }
}

/// What a writer batch wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchKind {
    Visits,
    SpentTimes,
    Views,
}

impl BatchKind {
    const ALL: [BatchKind; 3] = [BatchKind::Visits, BatchKind::SpentTimes, BatchKind::Views];

    fn label(self) -> &'static str {
        match self {
            BatchKind::Visits => "visits",
            BatchKind::SpentTimes => "spent_times",
            BatchKind::Views => "views",
        }
    }
}

/// What the tracked site said about a new path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathCheck {
    Exists,
    Missing,
    /// No answer: timeout, connection refused, a redirect or an error status we do not trust.
    Failed,
}

impl PathCheck {
    const ALL: [PathCheck; 3] = [PathCheck::Exists, PathCheck::Missing, PathCheck::Failed];

    fn label(self) -> &'static str {
        match self {
            PathCheck::Exists => "exists",
            PathCheck::Missing => "missing",
            PathCheck::Failed => "failed",
        }
    }
}

/// Values only the rest of the server knows, sampled by the caller when `/metrics` is
/// scraped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    pub pending_visitors: u64,
    pub live_visitors: u64,
    pub writer_queue_depth: u64,
    pub database_up: bool,
    pub visitor_slots: u64,
    pub known_paths: u64,
}

struct RouteMetrics {
    statuses: [Counter; STATUS_SLOTS],
    duration: Histogram<DURATION_BUCKETS>,
}

/// Every metric the tracker keeps. Share it (`Arc` or a field of the app); all methods take
/// `&self`.
pub struct Metrics {
    route_names: &'static [&'static str],
    /// One tally per thread (threads beyond [`MAX_SHARDS`] share): every request adds to several
    /// counters, and with one set of counters for all threads each of them was a cache line
    /// the cores took from each other on every request. `/metrics` adds the shards up.
    shards: Box<[Shard]>,
    /// Seconds since the Unix epoch when this was built, at start-up: the process start as
    /// near as matters for `process_start_time_seconds` (which only has to change on a
    /// restart), without reading `/proc/self/stat` and the kernel's tick rate.
    started: f64,
}

/// Most shards of [`Metrics`]: the runtime has at most 4 worker threads.
const MAX_SHARDS: usize = 4;

/// A tally on cache lines of its own (128 bytes: adjacent-line prefetching pairs lines).
#[repr(align(128))]
struct Shard(Tally);

/// The shard of the calling thread: threads take shards in the order they first record.
fn shard_of_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % MAX_SHARDS;
    }
    SHARD.with(|shard| *shard)
}

/// Every counter and histogram, once per shard.
struct Tally {
    routes: Box<[RouteMetrics]>,
    registrations: [Counter; Registration::ALL.len()],
    views: Counter,
    visits: Counter,
    visitors: [Counter; VisitorScope::ALL.len()],
    spent_time_reports: Counter,
    writer_batches: [Counter; BatchKind::ALL.len()],
    writer_batch_rows: Histogram<ROWS_BUCKETS>,
    writer_failures: Counter,
    path_checks: [Counter; PathCheck::ALL.len()],
    path_check_duration: Histogram<DURATION_BUCKETS>,
    database_reconnects: Counter,
    client_limited: Counter,
}

impl Tally {
    fn new(routes: usize) -> Tally {
        Tally {
            routes: (0..routes)
                .map(|_| RouteMetrics {
                    statuses: counters(),
                    duration: Histogram::new(),
                })
                .collect(),
            registrations: counters(),
            views: Counter::default(),
            visits: Counter::default(),
            visitors: counters(),
            spent_time_reports: Counter::default(),
            writer_batches: counters(),
            writer_batch_rows: Histogram::new(),
            writer_failures: Counter::default(),
            path_checks: counters(),
            path_check_duration: Histogram::new(),
            database_reconnects: Counter::default(),
            client_limited: Counter::default(),
        }
    }

    /// Adds everything `other` counted to this tally.
    fn absorb(&self, other: &Tally) {
        for (route, theirs) in self.routes.iter().zip(&other.routes) {
            absorb_all(&route.statuses, &theirs.statuses);
            route.duration.absorb(&theirs.duration);
        }
        absorb_all(&self.registrations, &other.registrations);
        self.views.absorb(&other.views);
        self.visits.absorb(&other.visits);
        absorb_all(&self.visitors, &other.visitors);
        self.spent_time_reports.absorb(&other.spent_time_reports);
        absorb_all(&self.writer_batches, &other.writer_batches);
        self.writer_batch_rows.absorb(&other.writer_batch_rows);
        self.writer_failures.absorb(&other.writer_failures);
        absorb_all(&self.path_checks, &other.path_checks);
        self.path_check_duration.absorb(&other.path_check_duration);
        self.database_reconnects.absorb(&other.database_reconnects);
        self.client_limited.absorb(&other.client_limited);
    }
}

fn absorb_all(ours: &[Counter], theirs: &[Counter]) {
    for (counter, other) in ours.iter().zip(theirs) {
        counter.absorb(other);
    }
}

fn counters<const N: usize>() -> [Counter; N] {
    std::array::from_fn(|_| Counter::default())
}

impl Metrics {
    /// Metrics for the routes named by `route_names`; [`Metrics::record`] takes an index
    /// into it.
    pub fn new(route_names: &'static [&'static str]) -> Metrics {
        Metrics {
            route_names,
            // As many as the most worker threads, whatever this machine has: threads take
            // shards in the order they first record, and fewer shards than recording
            // threads would put two workers on one.
            shards: (0..MAX_SHARDS)
                .map(|_| Shard(Tally::new(route_names.len())))
                .collect(),
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
        }
    }

    /// The calling thread's tally.
    fn here(&self) -> &Tally {
        &self.shards[shard_of_thread()].0
    }

    /// One answered request: its route (an index into the names given to [`Metrics::new`]),
    /// status and the time from its head to its response.
    pub fn record(&self, route: usize, status: StatusCode, elapsed: Duration) {
        debug_assert!(route < self.route_names.len(), "route {route} has no name");
        if let Some(route) = self.here().routes.get(route) {
            route.statuses[status_slot(status)].add(1);
            route.duration.observe(&DURATION_BOUNDS, nanos(elapsed));
        }
    }

    pub fn registration(&self, outcome: Registration) {
        self.here().registrations[outcome as usize].add(1);
    }

    pub fn view(&self) {
        self.here().views.add(1);
    }

    pub fn visit(&self) {
        self.here().visits.add(1);
    }

    pub fn visitor(&self, scope: VisitorScope) {
        self.here().visitors[scope as usize].add(1);
    }

    pub fn spent_time_report(&self) {
        self.here().spent_time_reports.add(1);
    }

    /// A writer batch committed with `rows` rows.
    pub fn writer_batch(&self, kind: BatchKind, rows: usize) {
        self.here().writer_batches[kind as usize].add(1);
        self.here()
            .writer_batch_rows
            .observe(&ROWS_BOUNDS, u64::try_from(rows).unwrap_or(u64::MAX));
    }

    pub fn writer_failure(&self) {
        self.here().writer_failures.add(1);
    }

    pub fn path_check(&self, result: PathCheck, elapsed: Duration) {
        self.here().path_checks[result as usize].add(1);
        self.here()
            .path_check_duration
            .observe(&DURATION_BOUNDS, nanos(elapsed));
    }

    pub fn database_reconnect(&self) {
        self.here().database_reconnects.add(1);
    }

    /// A `/register` refused by `max_pending_per_client`.
    pub fn client_limited(&self) {
        self.here().client_limited.add(1);
    }

    /// Appends the exposition of every family to `out`.
    pub fn render(&self, gauges: &Gauges, out: &mut String) {
        let total = Tally::new(self.route_names.len());
        for shard in &self.shards {
            total.absorb(&shard.0);
        }
        let mut r = Renderer { out };

        r.family(
            "oxitraffic_build_info",
            "gauge",
            "The running version; always 1.",
        );
        r.sample(
            "oxitraffic_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        if let Some(bytes) = resident_memory_bytes() {
            r.family(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
            );
            r.sample("process_resident_memory_bytes", &[], bytes);
        }
        r.family(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch in seconds.",
        );
        r.sample("process_start_time_seconds", &[], self.started);

        r.family(
            "oxitraffic_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
        );
        for (name, route) in self.route_names.iter().zip(&total.routes) {
            for (slot, counter) in route.statuses.iter().enumerate() {
                let count = counter.get();
                if count > 0 {
                    let labels = [("route", *name), ("status", status_label(slot))];
                    r.sample("oxitraffic_http_requests_total", &labels, count);
                }
            }
        }
        r.family(
            "oxitraffic_http_request_duration_seconds",
            "histogram",
            "Time from a request's head to its response, by route.",
        );
        for (name, route) in self.route_names.iter().zip(&total.routes) {
            if route.duration.count() > 0 {
                r.histogram(
                    "oxitraffic_http_request_duration_seconds",
                    Some(("route", name)),
                    &route.duration,
                    &DURATION_BOUNDS,
                    Unit::Nanoseconds,
                );
            }
        }

        r.family(
            "oxitraffic_registrations_total",
            "counter",
            "Registrations (/register), by outcome.",
        );
        for outcome in Registration::ALL {
            let count = total.registrations[outcome as usize].get();
            let labels = [("outcome", outcome.label())];
            r.sample("oxitraffic_registrations_total", &labels, count);
        }
        r.counter(
            "oxitraffic_views_total",
            "Page views counted (successful registrations).",
            &total.views,
        );
        r.counter(
            "oxitraffic_visits_total",
            "Visits counted (past the minimum delay).",
            &total.visits,
        );
        r.family(
            "oxitraffic_visitors_total",
            "counter",
            "New daily visitors, by scope (the site, or a page).",
        );
        for scope in VisitorScope::ALL {
            let count = total.visitors[scope as usize].get();
            r.sample(
                "oxitraffic_visitors_total",
                &[("scope", scope.label())],
                count,
            );
        }
        r.counter(
            "oxitraffic_spent_time_reports_total",
            "Reports of time spent on a page (/page-left) stored.",
            &total.spent_time_reports,
        );

        r.family(
            "oxitraffic_writer_batches_total",
            "counter",
            "Batches the database writer committed, by kind.",
        );
        for kind in BatchKind::ALL {
            let count = total.writer_batches[kind as usize].get();
            r.sample(
                "oxitraffic_writer_batches_total",
                &[("kind", kind.label())],
                count,
            );
        }
        r.family(
            "oxitraffic_writer_batch_rows",
            "histogram",
            "Rows per committed writer batch.",
        );
        r.histogram(
            "oxitraffic_writer_batch_rows",
            None,
            &total.writer_batch_rows,
            &ROWS_BOUNDS,
            Unit::Count,
        );
        r.counter(
            "oxitraffic_writer_failures_total",
            "Writer batches that failed.",
            &total.writer_failures,
        );

        r.family(
            "oxitraffic_path_checks_total",
            "counter",
            "Checks of new paths against the tracked site, by result.",
        );
        for result in PathCheck::ALL {
            let count = total.path_checks[result as usize].get();
            let labels = [("result", result.label())];
            r.sample("oxitraffic_path_checks_total", &labels, count);
        }
        r.family(
            "oxitraffic_path_check_duration_seconds",
            "histogram",
            "Time a check of a new path took.",
        );
        r.histogram(
            "oxitraffic_path_check_duration_seconds",
            None,
            &total.path_check_duration,
            &DURATION_BOUNDS,
            Unit::Nanoseconds,
        );

        r.counter(
            "oxitraffic_database_reconnects_total",
            "Times the database connection was re-established.",
            &total.database_reconnects,
        );
        r.counter(
            "oxitraffic_client_limited_total",
            "Registrations refused because one client held too many.",
            &total.client_limited,
        );

        let gauges = [
            (
                "oxitraffic_pending_visitors",
                "Visitors registered and not yet counted.",
                gauges.pending_visitors,
            ),
            (
                "oxitraffic_live_visitors",
                "Pages open now (registered in the last 5 minutes, not left).",
                gauges.live_visitors,
            ),
            (
                "oxitraffic_writer_queue_depth",
                "Writes waiting for the database writer.",
                gauges.writer_queue_depth,
            ),
            (
                "oxitraffic_database_up",
                "1 when the database is reachable, else 0.",
                u64::from(gauges.database_up),
            ),
            (
                "oxitraffic_visitor_slots",
                "Visitor slots (the most visitors that can be pending at once).",
                gauges.visitor_slots,
            ),
            (
                "oxitraffic_known_paths",
                "Paths known to exist, held in memory.",
                gauges.known_paths,
            ),
        ];
        for (name, help, value) in gauges {
            r.family(name, "gauge", help);
            r.sample(name, &[], value);
        }
    }
}

/// The unit a histogram records in; rendered values are in seconds or plain counts.
#[derive(Clone, Copy)]
enum Unit {
    Nanoseconds,
    Count,
}

struct Renderer<'a> {
    out: &'a mut String,
}

impl Renderer<'_> {
    /// `# HELP` and `# TYPE`. Help texts are ours and hold no backslash or line break, the
    /// two characters the format would want escaped there.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        debug_assert!(!help.contains(['\\', '\n']));
        let _ = write!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    fn counter(&mut self, name: &str, help: &str, counter: &Counter) {
        self.family(name, "counter", help);
        self.sample(name, &[], counter.get());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.out, " {value}");
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        if labels.is_empty() {
            return;
        }
        self.out.push('{');
        for (index, (name, value)) in labels.iter().enumerate() {
            if index > 0 {
                self.out.push(',');
            }
            self.out.push_str(name);
            self.out.push_str("=\"");
            escape_label_value(value, self.out);
            self.out.push('"');
        }
        self.out.push('}');
    }

    fn histogram<const B: usize>(
        &mut self,
        name: &str,
        label: Option<(&str, &str)>,
        histogram: &Histogram<B>,
        bounds: &[Bound],
        unit: Unit,
    ) {
        let mut cumulative = 0;
        let les = bounds.iter().map(|bound| bound.le).chain(["+Inf"]);
        for (le, bucket) in les.zip(&histogram.buckets) {
            cumulative += bucket.get();
            self.out.push_str(name);
            self.out.push_str("_bucket");
            match label {
                Some(label) => self.labels(&[label, ("le", le)]),
                None => self.labels(&[("le", le)]),
            }
            let _ = writeln!(self.out, " {cumulative}");
        }
        let label = label.as_slice();
        let sum = histogram.sum.get();
        self.out.push_str(name);
        self.out.push_str("_sum");
        self.labels(label);
        let _ = match unit {
            Unit::Nanoseconds => writeln!(self.out, " {}", sum as f64 / 1e9),
            Unit::Count => writeln!(self.out, " {sum}"),
        };
        self.out.push_str(name);
        self.out.push_str("_count");
        self.labels(label);
        let _ = writeln!(self.out, " {cumulative}");
    }
}

/// Label values escape backslash, double quote and line feed (format 0.0.4).
fn escape_label_value(value: &str, out: &mut String) {
    for char in value.chars() {
        match char {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            _ => out.push(char),
        }
    }
}

/// `VmRSS` from `/proc/self/status`, which the kernel states in KiB whatever the page size;
/// `None` where there is no procfs.
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const ROUTES: &[&str] = &["register", "stats", "we\"ird\\route\nname"];

    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    impl Sample {
        fn label(&self, name: &str) -> Option<&str> {
            self.labels
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    #[derive(Default)]
    struct Exposition {
        help: HashMap<String, String>,
        kind: HashMap<String, String>,
        samples: Vec<Sample>,
    }

    impl Exposition {
        /// The samples of one metric name whose labels include all of `with`.
        fn find(&self, name: &str, with: &[(&str, &str)]) -> Vec<&Sample> {
            self.samples
                .iter()
                .filter(|s| s.name == name && with.iter().all(|(n, v)| s.label(n) == Some(*v)))
                .collect()
        }

        fn value(&self, name: &str, with: &[(&str, &str)]) -> f64 {
            match self.find(name, with).as_slice() {
                [sample] => sample.value,
                other => panic!("{name} {with:?}: {} samples", other.len()),
            }
        }
    }

    /// A small parser of the text format, strict about what we promise: every sample's
    /// family is announced (HELP, then TYPE) right before its samples, once.
    fn parse(text: &str) -> Exposition {
        let mut exposition = Exposition::default();
        let mut current: Option<String> = None;
        let mut finished: Vec<String> = Vec::new();
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(
                    !exposition.help.contains_key(name),
                    "{name} announced twice"
                );
                finished.extend(current.replace(name.to_string()));
                exposition.help.insert(name.into(), help.into());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(current.as_deref(), Some(name), "TYPE right after HELP");
                assert!(["counter", "gauge", "histogram"].contains(&kind));
                assert!(exposition.kind.insert(name.into(), kind.into()).is_none());
            } else {
                let sample = parse_sample(line);
                let family = current.as_deref().expect("a sample before any family");
                let kind = &exposition.kind[family];
                let belongs = if kind == "histogram" {
                    ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| sample.name == format!("{family}{suffix}"))
                } else {
                    sample.name == family
                };
                assert!(belongs, "{} under family {family}", sample.name);
                assert!(!finished.contains(&sample.name));
                exposition.samples.push(sample);
            }
        }
        exposition
    }

    fn parse_sample(line: &str) -> Sample {
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        );
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(inside) = rest.strip_prefix('{') {
            let mut chars = inside.char_indices();
            loop {
                let (start, _) = chars.next().unwrap();
                let eq = inside[start..].find('=').unwrap() + start;
                let label = inside[start..eq].to_string();
                while chars.next().unwrap().0 < eq {}
                assert_eq!(chars.next().unwrap().1, '"');
                let mut value = String::new();
                loop {
                    match chars.next().unwrap().1 {
                        '"' => break,
                        '\\' => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            escaped @ ('\\' | '"') => value.push(escaped),
                            other => panic!("unknown escape \\{other}"),
                        },
                        '\n' => panic!("raw line feed in a label value"),
                        c => value.push(c),
                    }
                }
                labels.push((label, value));
                match chars.next().unwrap() {
                    (_, ',') => continue,
                    (end, '}') => {
                        rest = &inside[end + 1..];
                        break;
                    }
                    (_, other) => panic!("{other} after a label"),
                }
            }
        }
        let value = rest.strip_prefix(' ').unwrap();
        let value = match value {
            "+Inf" => f64::INFINITY,
            _ => value.parse().unwrap(),
        };
        Sample {
            name: name.into(),
            labels,
            value,
        }
    }

    fn rendered(metrics: &Metrics, gauges: &Gauges) -> (String, Exposition) {
        let mut out = String::new();
        metrics.render(gauges, &mut out);
        let exposition = parse(&out);
        (out, exposition)
    }

    /// Every histogram series: buckets in increasing `le`, cumulative, ending with `+Inf`
    /// equal to `_count`.
    fn check_histograms(exposition: &Exposition) -> usize {
        let mut checked = 0;
        for (family, kind) in &exposition.kind {
            if kind != "histogram" {
                continue;
            }
            for count in exposition.find(&format!("{family}_count"), &[]) {
                let same_series = |s: &&Sample| {
                    s.labels
                        .iter()
                        .filter(|(n, _)| n != "le")
                        .eq(count.labels.iter())
                };
                let buckets: Vec<_> = exposition
                    .find(&format!("{family}_bucket"), &[])
                    .into_iter()
                    .filter(same_series)
                    .collect();
                assert!(buckets.len() > 1, "{family}");
                let les: Vec<f64> = buckets
                    .iter()
                    .map(|b| match b.label("le").unwrap() {
                        "+Inf" => f64::INFINITY,
                        le => le.parse().unwrap(),
                    })
                    .collect();
                assert!(les.windows(2).all(|w| w[0] < w[1]), "{family}: {les:?}");
                assert_eq!(les.last(), Some(&f64::INFINITY));
                assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value));
                assert_eq!(buckets.last().unwrap().value, count.value, "{family}");
                let sums = exposition.find(&format!("{family}_sum"), &[]);
                assert_eq!(sums.into_iter().filter(same_series).count(), 1);
                checked += 1;
            }
        }
        checked
    }

    #[test]
    fn recorded_values_render_as_a_valid_exposition() {
        let metrics = Metrics::new(ROUTES);
        let ms = Duration::from_millis;
        metrics.record(0, StatusCode::OK, Duration::from_micros(50));
        metrics.record(0, StatusCode::OK, ms(3));
        metrics.record(0, StatusCode::SERVICE_UNAVAILABLE, ms(20));
        metrics.record(1, StatusCode::IM_A_TEAPOT, Duration::from_secs(30));
        metrics.record(2, StatusCode::NOT_FOUND, ms(1));
        for _ in 0..3 {
            metrics.registration(Registration::Ok);
            metrics.view();
        }
        metrics.registration(Registration::NotOnSite);
        metrics.visit();
        metrics.visitor(VisitorScope::Page);
        metrics.visitor(VisitorScope::Page);
        metrics.spent_time_report();
        metrics.writer_batch(BatchKind::Visits, 1);
        metrics.writer_batch(BatchKind::Visits, 300);
        metrics.writer_batch(BatchKind::Views, 5000);
        metrics.writer_failure();
        metrics.path_check(PathCheck::Exists, ms(120));
        metrics.path_check(PathCheck::Failed, Duration::from_secs(5));
        metrics.database_reconnect();
        metrics.client_limited();
        metrics.client_limited();
        let gauges = Gauges {
            pending_visitors: 12,
            live_visitors: 7,
            writer_queue_depth: 3,
            database_up: true,
            visitor_slots: 65536,
            known_paths: 42,
        };
        let (text, exposition) = rendered(&metrics, &gauges);

        for name in [
            "oxitraffic_http_requests_total",
            "oxitraffic_http_request_duration_seconds",
            "oxitraffic_registrations_total",
            "oxitraffic_views_total",
            "oxitraffic_visits_total",
            "oxitraffic_visitors_total",
            "oxitraffic_spent_time_reports_total",
            "oxitraffic_writer_batches_total",
            "oxitraffic_writer_batch_rows",
            "oxitraffic_writer_failures_total",
            "oxitraffic_path_checks_total",
            "oxitraffic_path_check_duration_seconds",
            "oxitraffic_database_reconnects_total",
            "oxitraffic_client_limited_total",
            "oxitraffic_pending_visitors",
            "oxitraffic_live_visitors",
            "oxitraffic_writer_queue_depth",
            "oxitraffic_database_up",
            "oxitraffic_visitor_slots",
            "oxitraffic_known_paths",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "oxitraffic_build_info",
        ] {
            assert!(exposition.help.contains_key(name), "{name} has HELP");
            assert!(exposition.kind.contains_key(name), "{name} has TYPE");
        }
        assert!(exposition.samples.iter().all(|s| {
            let family = exposition
                .kind
                .keys()
                .any(|f| s.name.starts_with(f.as_str()));
            family && s.value.is_finite() && s.value >= 0.0
        }));

        let requests = "oxitraffic_http_requests_total";
        assert_eq!(
            exposition.value(requests, &[("route", "register"), ("status", "200")]),
            2.0
        );
        assert_eq!(
            exposition.value(requests, &[("route", "register"), ("status", "503")]),
            1.0
        );
        assert_eq!(
            exposition.value(requests, &[("route", "stats"), ("status", "4xx")]),
            1.0
        );
        assert_eq!(
            exposition.find(requests, &[]).len(),
            4,
            "only seen pairs: {text}"
        );
        // The odd route name survives escaping and parsing.
        assert_eq!(exposition.value(requests, &[("route", ROUTES[2])]), 1.0);
        assert!(text.contains(r#"route="we\"ird\\route\nname""#));

        let duration = "oxitraffic_http_request_duration_seconds";
        let register = [("route", "register")];
        assert_eq!(
            exposition.value(&format!("{duration}_count"), &register),
            3.0
        );
        let sum = exposition.value(&format!("{duration}_sum"), &register);
        assert!((sum - 0.02305).abs() < 1e-9, "{sum}");
        let bucket = |le| {
            exposition.value(
                &format!("{duration}_bucket"),
                &[("route", "register"), ("le", le)],
            )
        };
        assert_eq!(bucket("0.0001"), 1.0);
        assert_eq!(bucket("0.0025"), 1.0);
        assert_eq!(bucket("0.005"), 2.0);
        assert_eq!(bucket("0.025"), 3.0);
        let stats = [("route", "stats")];
        assert_eq!(
            exposition.value(&format!("{duration}_bucket"), &[stats[0], ("le", "10")]),
            0.0
        );
        assert_eq!(
            exposition.value(&format!("{duration}_bucket"), &[stats[0], ("le", "+Inf")]),
            1.0
        );

        let registrations = "oxitraffic_registrations_total";
        assert_eq!(
            exposition.find(registrations, &[]).len(),
            8,
            "every outcome, zeros too"
        );
        assert_eq!(exposition.value(registrations, &[("outcome", "ok")]), 3.0);
        assert_eq!(
            exposition.value(registrations, &[("outcome", "not_on_site")]),
            1.0
        );
        assert_eq!(
            exposition.value(registrations, &[("outcome", "client_limit")]),
            0.0
        );
        assert_eq!(exposition.value("oxitraffic_views_total", &[]), 3.0);
        assert_eq!(exposition.value("oxitraffic_visits_total", &[]), 1.0);
        let visitors = "oxitraffic_visitors_total";
        assert_eq!(exposition.value(visitors, &[("scope", "page")]), 2.0);
        assert_eq!(exposition.value(visitors, &[("scope", "site")]), 0.0);
        assert_eq!(
            exposition.value("oxitraffic_spent_time_reports_total", &[]),
            1.0
        );
        let batches = "oxitraffic_writer_batches_total";
        assert_eq!(exposition.value(batches, &[("kind", "visits")]), 2.0);
        assert_eq!(exposition.value(batches, &[("kind", "spent_times")]), 0.0);
        assert_eq!(exposition.value(batches, &[("kind", "views")]), 1.0);
        let rows = "oxitraffic_writer_batch_rows";
        assert_eq!(
            exposition.value(&format!("{rows}_bucket"), &[("le", "1")]),
            1.0
        );
        assert_eq!(
            exposition.value(&format!("{rows}_bucket"), &[("le", "256")]),
            1.0
        );
        assert_eq!(
            exposition.value(&format!("{rows}_bucket"), &[("le", "512")]),
            2.0
        );
        assert_eq!(exposition.value(&format!("{rows}_sum"), &[]), 5301.0);
        assert_eq!(exposition.value(&format!("{rows}_count"), &[]), 3.0);
        assert_eq!(
            exposition.value("oxitraffic_writer_failures_total", &[]),
            1.0
        );
        let checks = "oxitraffic_path_checks_total";
        assert_eq!(exposition.value(checks, &[("result", "exists")]), 1.0);
        assert_eq!(exposition.value(checks, &[("result", "missing")]), 0.0);
        assert_eq!(exposition.value(checks, &[("result", "failed")]), 1.0);
        let check_duration = "oxitraffic_path_check_duration_seconds";
        assert_eq!(
            exposition.value(&format!("{check_duration}_bucket"), &[("le", "0.1")]),
            0.0
        );
        assert_eq!(
            exposition.value(&format!("{check_duration}_bucket"), &[("le", "0.25")]),
            1.0
        );
        assert_eq!(
            exposition.value(&format!("{check_duration}_bucket"), &[("le", "5")]),
            2.0
        );
        assert_eq!(
            exposition.value(&format!("{check_duration}_sum"), &[]),
            5.12
        );
        assert_eq!(
            exposition.value("oxitraffic_database_reconnects_total", &[]),
            1.0
        );
        assert_eq!(
            exposition.value("oxitraffic_client_limited_total", &[]),
            2.0
        );

        for (name, value) in [
            ("oxitraffic_pending_visitors", 12.0),
            ("oxitraffic_live_visitors", 7.0),
            ("oxitraffic_writer_queue_depth", 3.0),
            ("oxitraffic_database_up", 1.0),
            ("oxitraffic_visitor_slots", 65536.0),
            ("oxitraffic_known_paths", 42.0),
        ] {
            assert_eq!(exposition.value(name, &[]), value, "{name}");
            assert_eq!(exposition.kind[name], "gauge");
        }
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        assert_eq!(exposition.value("oxitraffic_build_info", &version), 1.0);
        let rss = exposition.value("process_resident_memory_bytes", &[]);
        assert!((1e6..1e10).contains(&rss), "{rss}");
        let started = exposition.value("process_start_time_seconds", &[]);
        assert!(started > 1.7e9, "{started}");

        // Per route (three), the batch rows and the path checks.
        assert_eq!(check_histograms(&exposition), 5);
    }

    #[test]
    fn a_fresh_registry_renders_zeros_and_no_request_series() {
        let metrics = Metrics::new(ROUTES);
        let (_, exposition) = rendered(&metrics, &Gauges::default());
        assert!(
            exposition
                .find("oxitraffic_http_requests_total", &[])
                .is_empty()
        );
        assert!(
            exposition
                .kind
                .contains_key("oxitraffic_http_requests_total")
        );
        assert_eq!(exposition.value("oxitraffic_database_up", &[]), 0.0);
        assert_eq!(
            exposition.value("oxitraffic_writer_batch_rows_count", &[]),
            0.0
        );
        assert_eq!(check_histograms(&exposition), 2);
    }

    #[test]
    fn statuses_map_to_fixed_slots() {
        assert!(STATUSES.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        for (code, label) in STATUSES {
            assert_eq!(label, code.to_string());
            let slot = status_slot(StatusCode::from_u16(code).unwrap());
            assert_eq!(status_label(slot), label);
        }
        let label = |code| status_label(status_slot(StatusCode::from_u16(code).unwrap()));
        assert_eq!(label(101), "1xx");
        assert_eq!(label(206), "2xx");
        assert_eq!(label(418), "4xx");
        assert_eq!(label(504), "5xx");
        assert_eq!(label(999), "other");
    }

    #[test]
    fn bounds_are_increasing_and_labelled_by_their_value() {
        for (bounds, scale) in [(&DURATION_BOUNDS[..], 1e9), (&ROWS_BOUNDS[..], 1.0)] {
            assert!(bounds.windows(2).all(|w| w[0].upper < w[1].upper));
            for bound in bounds {
                let le: f64 = bound.le.parse().unwrap();
                assert!(
                    (le * scale - bound.upper as f64).abs() < 1e-3,
                    "{}",
                    bound.le
                );
            }
        }
        // An observation on a bound belongs to that bucket (`le` is "less or equal").
        let histogram = Histogram::<DURATION_BUCKETS>::new();
        histogram.observe(&DURATION_BOUNDS, 1_000_000);
        assert_eq!(histogram.buckets[3].get(), 1);
    }

    #[test]
    fn counting_from_many_threads_loses_nothing() {
        let metrics = Metrics::new(ROUTES);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for i in 0..10_000u64 {
                        metrics.record(1, StatusCode::OK, Duration::from_micros(i));
                        metrics.view();
                    }
                });
            }
        });
        let (_, exposition) = rendered(&metrics, &Gauges::default());
        let ok = [("route", "stats"), ("status", "200")];
        assert_eq!(
            exposition.value("oxitraffic_http_requests_total", &ok),
            40_000.0
        );
        assert_eq!(exposition.value("oxitraffic_views_total", &[]), 40_000.0);
        let count = "oxitraffic_http_request_duration_seconds_count";
        assert_eq!(exposition.value(count, &[("route", "stats")]), 40_000.0);
    }
}

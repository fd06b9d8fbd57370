//! What the dashboard and the insights API show, gathered once for both (SPEC §9): date
//! ranges, period summaries with the previous period, daily series, the pages table,
//! referrers by host and campaigns. Everything reads the roll-ups, never raw visits.
//!
//! Medians of the time on page come from the roll-ups' histogram buckets (exact values are
//! not kept, so that a median never means reading every visit): the rank is located in its
//! bucket and interpolated linearly inside it. A median in the open last bucket (an hour or
//! more) is reported as that bucket's lower bound.

pub mod cache;
pub mod pages;

use std::sync::Arc;
use std::time::Instant;

use cache::{Key, ResultCache};

use crate::db::rollups::{BUCKETS, DayCounts, Scope, Totals};
use crate::db::{Db, Unavailable};
use crate::http::HttpError;
use crate::query;
use crate::time::Day;

/// Lower bounds in seconds of the time-on-page buckets. The schema's
/// `spent_time_bucket_bounds()` is the source; a test checks that both agree.
pub const SPENT_BOUNDS: [i32; BUCKETS] = [
    0, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600,
];

/// The longest range a request may ask for (ten years and then some).
pub const MAX_RANGE_DAYS: i32 = 3660;
/// The range when none is given: the 30 days ending today.
pub const DEFAULT_RANGE_DAYS: i32 = 30;

/// A range of local days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub first: Day,
    pub last: Day,
}

impl Range {
    /// The `days` days ending with `last`.
    pub fn ending(last: Day, days: i32) -> Range {
        Range {
            first: last.plus(1 - days),
            last,
        }
    }

    /// From the `from` and `to` query parameters (local dates `YYYY-MM-DD`); missing ones
    /// default to the 30 days ending today.
    pub fn from_query(query: Option<&str>, today: Day) -> Result<Range, HttpError> {
        let date = |name: &'static str| -> Result<Option<Day>, HttpError> {
            match query::param(query, name)? {
                None => Ok(None),
                Some(text) => Day::parse(&text).map(Some).ok_or_else(|| {
                    HttpError::bad_request(format!(
                        "malformed `{name}`: expected a date YYYY-MM-DD"
                    ))
                }),
            }
        };
        let (from, to) = (date("from")?, date("to")?);
        let range = match (from, to) {
            (Some(first), Some(last)) => Range { first, last },
            (Some(first), None) => Range { first, last: today },
            (None, Some(last)) => Range::ending(last, DEFAULT_RANGE_DAYS),
            (None, None) => Range::ending(today, DEFAULT_RANGE_DAYS),
        };
        if range.first > range.last {
            return Err(HttpError::bad_request(format!(
                "`from` ({}) is after `to` ({})",
                range.first, range.last
            )));
        }
        if range.days() > MAX_RANGE_DAYS {
            return Err(HttpError::bad_request(format!(
                "the range is {} days long; at most {MAX_RANGE_DAYS} days can be asked for",
                range.days()
            )));
        }
        Ok(range)
    }

    pub fn days(self) -> i32 {
        self.last.since(self.first) + 1
    }

    /// The period of equal length just before.
    pub fn previous(self) -> Range {
        Range::ending(self.first.plus(-1), self.days())
    }

    pub fn contains(self, day: Day) -> bool {
        self.first <= day && day <= self.last
    }
}

/// Visits per time-on-page bucket, and what can be estimated from them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histogram {
    pub counts: [i64; BUCKETS],
}

/// A percentile of the time on page, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub seconds: f64,
    /// It falls in the open last bucket: only a lower bound is known.
    pub at_least: bool,
}

impl Histogram {
    pub fn total(&self) -> i64 {
        self.counts.iter().map(|c| c.max(&0)).sum()
    }

    /// The `q`-quantile (0 < q < 1), or `None` without data.
    pub fn percentile(&self, q: f64) -> Option<Estimate> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0.0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            if count <= 0 {
                continue;
            }
            let count = count as f64;
            if below + count >= rank {
                let low = f64::from(SPENT_BOUNDS[bucket]);
                let Some(&high) = SPENT_BOUNDS.get(bucket + 1) else {
                    return Some(Estimate {
                        seconds: low,
                        at_least: true,
                    });
                };
                let fraction = (rank - below) / count;
                return Some(Estimate {
                    seconds: low + fraction * (f64::from(high) - low),
                    at_least: false,
                });
            }
            below += count;
        }
        None
    }

    pub fn median(&self) -> Option<Estimate> {
        self.percentile(0.5)
    }
}

/// `visits ÷ views`, or `None` without views.
pub fn engagement(visits: i64, views: i64) -> Option<f64> {
    (views > 0).then(|| visits as f64 / views as f64)
}

/// One period's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub range: Range,
    pub views: i64,
    pub visits: i64,
    pub visitors: i64,
    pub histogram: Histogram,
}

impl Period {
    fn new(range: Range, totals: Totals) -> Period {
        Period {
            range,
            views: totals.views,
            visits: totals.visits,
            visitors: totals.visitors,
            histogram: Histogram {
                counts: totals.spent,
            },
        }
    }

    pub fn engagement(&self) -> Option<f64> {
        engagement(self.visits, self.views)
    }

    pub fn median_spent(&self) -> Option<Estimate> {
        self.histogram.median()
    }
}

/// A period and the one of equal length before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub current: Period,
    pub previous: Period,
}

pub async fn summary(db: &Db, scope: Scope, range: Range) -> Result<Summary, Unavailable> {
    let conn = db.reads()?;
    let previous = range.previous();
    let (current_totals, previous_totals) = tokio::try_join!(
        conn.totals(scope, range.first, range.last),
        conn.totals(scope, previous.first, previous.last),
    )?;
    Ok(Summary {
        current: Period::new(range, current_totals),
        previous: Period::new(previous, previous_totals),
    })
}

/// Every day of the range, days without counts included as zeros.
pub async fn daily(db: &Db, scope: Scope, range: Range) -> Result<Vec<DayCounts>, Unavailable> {
    let stored = db.reads()?.daily(scope, range.first, range.last).await?;
    Ok(fill_days(range, &stored))
}

fn fill_days(range: Range, stored: &[DayCounts]) -> Vec<DayCounts> {
    let mut days: Vec<DayCounts> = (0..range.days())
        .map(|n| DayCounts {
            day: range.first.plus(n),
            views: 0,
            visits: 0,
            visitors: 0,
        })
        .collect();
    for counts in stored {
        if let Some(slot) = usize::try_from(counts.day.since(range.first))
            .ok()
            .and_then(|i| days.get_mut(i))
        {
            *slot = *counts;
        }
    }
    days
}

/// Referring hosts, most visits first, each with its referring pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `None` for the visits whose referrers were past the per-day bound on distinct ones.
    pub host: Option<String>,
    pub visits: i64,
    pub referrers: Vec<(String, i64)>,
}

pub async fn referrers(
    db: &Db,
    cache: &ResultCache,
    scope: Scope,
    range: Range,
    hosts: i64,
    per_host: i64,
) -> Result<Arc<Vec<Host>>, Unavailable> {
    let conn = db.reads()?;
    let version = conn.rollup_version().await?;
    let key = Key::Referrers {
        scope,
        range,
        hosts,
        per_host,
    };
    if let Some(hosts) = cache.get(key, version) {
        return Ok(hosts);
    }
    let started = Instant::now();
    let rows = conn
        .referrers(scope, range.first, range.last, hosts, per_host)
        .await?;
    let mut grouped: Vec<Host> = Vec::new();
    let mut bytes = 0;
    for row in rows {
        let same_host = grouped
            .last()
            .is_some_and(|host| host.host == row.host && host.visits == row.host_visits);
        if !same_host {
            bytes += 64 + row.host.as_ref().map_or(0, String::len);
            grouped.push(Host {
                host: row.host,
                visits: row.host_visits,
                referrers: Vec::new(),
            });
        }
        if let (Some(referrer), Some(host)) = (row.referrer, grouped.last_mut()) {
            bytes += 32 + referrer.0.len();
            host.referrers.push(referrer);
        }
    }
    let grouped = Arc::new(grouped);
    cache.put(key, version, started.elapsed(), bytes, grouped.clone());
    Ok(grouped)
}

/// A campaign (a missing part is `None`; all three `None`: campaigns past the per-day bound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
    pub visits: i64,
}

pub async fn campaigns(
    db: &Db,
    cache: &ResultCache,
    scope: Scope,
    range: Range,
    limit: i64,
) -> Result<Arc<Vec<Campaign>>, Unavailable> {
    let conn = db.reads()?;
    let version = conn.rollup_version().await?;
    let key = Key::Campaigns {
        scope,
        range,
        limit,
    };
    if let Some(campaigns) = cache.get(key, version) {
        return Ok(campaigns);
    }
    let started = Instant::now();
    let rows = conn
        .campaigns(scope, range.first, range.last, limit)
        .await?;
    let mut bytes = 0;
    let campaigns: Vec<Campaign> = rows
        .into_iter()
        .map(|([source, medium, campaign], visits)| {
            bytes += 96
                + [&source, &medium, &campaign]
                    .iter()
                    .map(|part| part.as_ref().map_or(0, String::len))
                    .sum::<usize>();
            Campaign {
                source,
                medium,
                campaign,
                visits,
            }
        })
        .collect();
    let campaigns = Arc::new(campaigns);
    cache.put(key, version, started.elapsed(), bytes, campaigns.clone());
    Ok(campaigns)
}

/// A whole-number query parameter in `1..=max`, or `default` when absent.
pub fn limit_param(
    query: Option<&str>,
    name: &'static str,
    default: i64,
    max: i64,
) -> Result<i64, HttpError> {
    number_param(query, name, default, 1, max)
}

/// A whole-number query parameter in `min..=max`, or `default` when absent.
pub fn number_param(
    query: Option<&str>,
    name: &'static str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, HttpError> {
    match query::param(query, name)? {
        None => Ok(default),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (min..=max).contains(n) && text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                HttpError::bad_request(format!(
                    "malformed `{name}`: expected a whole number from {min} to {max}"
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Day {
        Day::parse(text).unwrap()
    }

    #[test]
    fn ranges_default_to_the_last_30_days_and_are_checked() {
        let today = day("2024-03-31");
        let range = Range::from_query(None, today).unwrap();
        assert_eq!((range.first, range.last), (day("2024-03-02"), today));
        assert_eq!(range.days(), 30);
        let range = Range::from_query(Some("from=2024-01-01&to=2024-01-31"), today).unwrap();
        assert_eq!(range.days(), 31);
        assert_eq!(
            range.previous(),
            Range {
                first: day("2023-12-01"),
                last: day("2023-12-31")
            }
        );
        let range = Range::from_query(Some("to=2024-01-31"), today).unwrap();
        assert_eq!(range.first, day("2024-01-02"));
        let range = Range::from_query(Some("from=2024-03-30"), today).unwrap();
        assert_eq!(range.days(), 2);
        let one_day = Range::from_query(Some("from=2024-03-30&to=2024-03-30"), today).unwrap();
        assert_eq!(one_day.days(), 1);
        assert_eq!(one_day.previous().last, day("2024-03-29"));

        for bad in [
            "from=2024-02-01&to=2024-01-01",
            "from=2024-1-1",
            "to=yesterday",
            "from=2024-02-30",
            "from=2000-01-01&to=2024-01-01",
            "from=2024-01-01&from=2024-01-02",
        ] {
            let error = Range::from_query(Some(bad), today).unwrap_err();
            assert_eq!(error.status, 400, "{bad}: {}", error.message);
        }
        let longest = Range::from_query(Some("from=2014-01-01&to=2024-01-08"), today).unwrap();
        assert_eq!(longest.days(), MAX_RANGE_DAYS);
        assert!(Range::from_query(Some("from=2014-01-01&to=2024-01-09"), today).is_err());
    }

    #[test]
    fn zeros_fill_the_days_without_counts() {
        let range = Range::ending(day("2024-01-05"), 5);
        let stored = [DayCounts {
            day: day("2024-01-03"),
            views: 4,
            visits: 2,
            visitors: 1,
        }];
        let days = fill_days(range, &stored);
        assert_eq!(days.len(), 5);
        assert_eq!(days[0].day, day("2024-01-01"));
        assert_eq!(days[2], stored[0]);
        assert_eq!((days[4].views, days[4].visits), (0, 0));
    }

    #[test]
    fn medians_interpolate_within_a_bucket() {
        let mut histogram = Histogram::default();
        histogram.counts[2] = 10; // [20, 30)
        assert_eq!(histogram.median().unwrap().seconds, 25.0);
        assert_eq!(histogram.percentile(0.9).unwrap().seconds, 29.0);
        histogram.counts = [0; BUCKETS];
        histogram.counts[2] = 1;
        histogram.counts[5] = 3; // [60, 90)
        assert_eq!(histogram.median().unwrap().seconds, 70.0);
        assert!(Histogram::default().median().is_none());
        histogram.counts = [0; BUCKETS];
        histogram.counts[13] = 4;
        assert_eq!(
            histogram.median(),
            Some(Estimate {
                seconds: 3600.0,
                at_least: true
            })
        );
    }

    #[test]
    fn engagement_needs_views() {
        assert_eq!(engagement(3, 4), Some(0.75));
        assert_eq!(engagement(3, 0), None);
    }

    #[test]
    fn numbers_are_strict() {
        assert_eq!(limit_param(None, "limit", 100, 1000).unwrap(), 100);
        assert_eq!(limit_param(Some("limit=5"), "limit", 100, 1000).unwrap(), 5);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=-1",
            "limit=+5",
            "limit=1e3",
            "limit=",
        ] {
            assert!(limit_param(Some(bad), "limit", 100, 1000).is_err(), "{bad}");
        }
        assert_eq!(
            number_param(Some("offset=0"), "offset", 0, 0, 10).unwrap(),
            0
        );
    }
}

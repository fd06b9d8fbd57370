//! Time on page from the per-day histogram counters: the distribution, and percentiles
//! estimated by interpolating inside a bucket (exact values are not kept, so that showing a
//! median never means reading every visit).

use std::fmt;

use super::chart::Bar;

pub struct Histogram {
    /// Visits per bucket; bucket `i` holds `[bounds[i], bounds[i + 1])`, the last is open.
    counts: Vec<i64>,
    bounds: Vec<i32>,
}

/// A percentile of the time on page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub seconds: f64,
    /// It falls in the open last bucket: only a lower bound is known.
    pub at_least: bool,
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at_least {
            f.write_str("≥ ")?;
        }
        f.write_str(&duration(self.seconds.round() as i64))
    }
}

/// `45 s`, `1 min 20 s`, `2 h 5 min`.
pub fn duration(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 && s % 60 == 0 => format!("{} min", s / 60),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s if s % 3600 / 60 == 0 => format!("{} h", s / 3600),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// Short axis label for a bucket's lower bound: `10s`, `1.5m`, `1h`.
fn short(seconds: i32) -> String {
    match seconds {
        0 => "0".to_string(),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 && s % 60 == 0 => format!("{}m", s / 60),
        s if s < 3600 => format!("{:.1}m", f64::from(s) / 60.0),
        s => format!("{}h", s / 3600),
    }
}

impl Histogram {
    /// From the roll-ups' histogram.
    pub fn from_insights(histogram: &crate::insights::Histogram) -> Histogram {
        Histogram::from_counts(
            histogram
                .counts
                .iter()
                .enumerate()
                .map(|(bucket, &count)| (bucket as i16, count)),
            &crate::insights::SPENT_BOUNDS,
        )
    }

    pub fn from_counts(counts: impl IntoIterator<Item = (i16, i64)>, bounds: &[i32]) -> Histogram {
        let mut histogram = Histogram {
            counts: vec![0; bounds.len()],
            bounds: bounds.to_vec(),
        };
        for (bucket, visits) in counts {
            if let Some(slot) = usize::try_from(bucket)
                .ok()
                .and_then(|b| histogram.counts.get_mut(b))
            {
                *slot += visits.max(0);
            }
        }
        histogram
    }

    pub fn total(&self) -> i64 {
        self.counts.iter().sum()
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
            if count == 0 {
                continue;
            }
            let count = count as f64;
            if below + count >= rank {
                let low = f64::from(self.bounds[bucket]);
                let Some(&high) = self.bounds.get(bucket + 1) else {
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

    /// One bar per bucket.
    pub fn bars(&self) -> Vec<Bar> {
        self.counts
            .iter()
            .enumerate()
            .map(|(bucket, &visits)| {
                let low = self.bounds[bucket];
                let (label, range) = match self.bounds.get(bucket + 1) {
                    Some(&high) => (
                        short(low),
                        format!("{} to {}", duration(low.into()), duration(high.into())),
                    ),
                    None => (
                        format!("{}+", short(low)),
                        format!("{} or more", duration(low.into())),
                    ),
                };
                Bar {
                    label,
                    tooltip: format!("{range}: {visits} visits"),
                    value: visits,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: [i32; 14] = [
        0, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600,
    ];

    #[test]
    fn percentiles_interpolate_within_a_bucket() {
        // 10 visits in [20, 30): the median is half-way.
        let histogram = Histogram::from_counts([(2, 10)], &BOUNDS);
        assert_eq!(
            histogram.percentile(0.5),
            Some(Estimate {
                seconds: 25.0,
                at_least: false
            })
        );
        assert_eq!(
            histogram.percentile(0.9),
            Some(Estimate {
                seconds: 29.0,
                at_least: false
            })
        );
        // 1 visit at [20, 30), 3 at [60, 90): the median is in the second bucket.
        let histogram = Histogram::from_counts([(2, 1), (5, 3)], &BOUNDS);
        assert_eq!(histogram.percentile(0.5).unwrap().seconds, 70.0);
        assert!(
            Histogram::from_counts([], &BOUNDS)
                .percentile(0.5)
                .is_none()
        );
    }

    #[test]
    fn the_open_bucket_only_gives_a_lower_bound() {
        let histogram = Histogram::from_counts([(13, 4)], &BOUNDS);
        let median = histogram.percentile(0.5).unwrap();
        assert!(median.at_least);
        assert_eq!(median.to_string(), "≥ 1 h");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(60), "1 min");
        assert_eq!(duration(80), "1 min 20 s");
        assert_eq!(duration(3600), "1 h");
        assert_eq!(duration(3900), "1 h 5 min");
    }

    #[test]
    fn bars_cover_every_bucket_with_readable_labels() {
        let histogram =
            Histogram::from_counts([(0, 1), (6, 2), (13, 3), (99, 5), (-1, 5)], &BOUNDS);
        let bars = histogram.bars();
        assert_eq!(bars.len(), 14);
        assert_eq!(
            histogram.total(),
            6,
            "buckets the schema does not have are ignored"
        );
        assert_eq!(bars[6].label, "1.5m");
        assert_eq!(bars[6].tooltip, "1 min 30 s to 2 min: 2 visits");
        assert_eq!(bars[13].label, "1h+");
        assert_eq!(bars[13].tooltip, "1 h or more: 3 visits");
    }
}

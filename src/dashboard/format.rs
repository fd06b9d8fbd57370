//! Numbers and words as people read them: plurals, durations, percentages, and a figure's
//! change against the previous period. Everything returns plain text (escaped when it goes
//! into a page) or writes through [`Html`], so nothing here can produce markup by accident.

use super::html::{Html, grouped};
use crate::insights::Estimate;

/// `1 visit`, `2 visits`, `1 234 visits`.
pub fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{} {}", grouped(n), if n == 1 { one } else { many })
}

/// [`plural`] into a page.
pub fn write_plural<'h>(out: &'h mut Html, n: i64, one: &str, many: &str) -> &'h mut Html {
    out.count(n).raw(" ").text(if n == 1 { one } else { many })
}

/// `45 s`, `1 min 20 s`, `2 h 5 min`.
pub fn duration(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 && s % 60 == 0 => format!("{} min", s / 60),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s if s % 3600 / 60 == 0 => format!("{} h", s / 3600),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// A percentile of the time on page: `1 min 5 s`, or `≥ 1 h` when it fell in the open last
/// bucket, or `–` without data.
pub fn estimate(estimate: Option<Estimate>) -> String {
    match estimate {
        None => "–".to_string(),
        Some(e) if e.at_least => format!("≥ {}", duration(e.seconds.round() as i64)),
        Some(e) => duration(e.seconds.round() as i64),
    }
}

/// A median from the pages table (seconds; an hour or more means "in the open bucket").
pub fn median_seconds(seconds: Option<f64>) -> String {
    estimate(seconds.map(|seconds| Estimate {
        seconds,
        at_least: seconds >= f64::from(*crate::insights::SPENT_BOUNDS.last().unwrap_or(&0)),
    }))
}

/// A ratio as a whole percentage: `42 %` (a narrow no-break space, as in counts).
pub fn percent(ratio: Option<f64>) -> String {
    match ratio {
        Some(ratio) if ratio.is_finite() => format!("{}\u{202F}%", (ratio * 100.0).round() as i64),
        _ => "–".to_string(),
    }
}

/// How a figure moved against the previous period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// Up by this much (percent, or percentage points for a rate).
    Up(f64),
    Down(f64),
    Same,
    /// Nothing in the previous period, something now.
    New,
    /// One of the two periods has no value (no views, no reported times).
    Unknown,
}

/// How a change is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Relative to the previous value: `▲ 12 %`.
    Relative,
    /// A difference of rates in percentage points: `▲ 3 pts`.
    Points,
}

impl Change {
    /// The relative change of a count (or a duration).
    pub fn relative(current: f64, previous: f64) -> Change {
        if current == previous {
            Change::Same
        } else if previous == 0.0 {
            Change::New
        } else if current > previous {
            Change::Up((current - previous) / previous * 100.0)
        } else {
            Change::Down((previous - current) / previous * 100.0)
        }
    }

    /// Counts: zero before and something now is "new", not an infinite percentage.
    pub fn of_counts(current: i64, previous: i64) -> Change {
        Change::relative(current as f64, previous as f64)
    }

    /// Medians: unknown unless both periods have one. A median that is only a lower bound
    /// (an hour or more) compares as that bound.
    pub fn of_estimates(current: Option<Estimate>, previous: Option<Estimate>) -> Change {
        match (current, previous) {
            (Some(current), Some(previous)) => {
                Change::relative(current.seconds.round(), previous.seconds.round())
            }
            _ => Change::Unknown,
        }
    }

    /// Rates (engagement): the difference in percentage points, unknown unless both exist.
    pub fn of_rates(current: Option<f64>, previous: Option<f64>) -> Change {
        match (current, previous) {
            (Some(current), Some(previous)) => {
                let points = (current - previous) * 100.0;
                if points.abs() < 0.5 {
                    Change::Same
                } else if points > 0.0 {
                    Change::Up(points)
                } else {
                    Change::Down(-points)
                }
            }
            _ => Change::Unknown,
        }
    }

    /// The CSS class that colours it (colour is never the only signal: arrows and words too).
    pub fn class(self) -> &'static str {
        match self {
            Change::Up(_) => "up",
            Change::Down(_) => "down",
            Change::Same => "same",
            Change::New => "new",
            Change::Unknown => "unknown",
        }
    }

    /// The amount as shown after the arrow: `12 %`, `< 1 %`, `3 pts`.
    fn amount(size: f64, measure: Measure) -> String {
        let unit = match measure {
            Measure::Relative => "\u{202F}%",
            Measure::Points => {
                if size.round() == 1.0 {
                    " pt"
                } else {
                    " pts"
                }
            }
        };
        if size < 1.0 && measure == Measure::Relative {
            return format!("< 1{unit}");
        }
        let whole = size.round().min(i64::MAX as f64) as i64;
        format!("{}{unit}", grouped(whole))
    }

    /// Writes the change: an arrow (hidden from screen readers, which get a word), the amount,
    /// and what it is compared with (`vs previous 30 days`).
    pub fn write(self, out: &mut Html, measure: Measure, compared_with: &str) {
        let (arrow, word) = match self {
            Change::Up(_) => ("▲", "up"),
            Change::Down(_) => ("▼", "down"),
            // "no change" follows in words.
            Change::Same => ("=", ""),
            Change::New => ("", ""),
            Change::Unknown => ("–", "no comparison"),
        };
        if !arrow.is_empty() {
            out.raw("<span aria-hidden=\"true\">")
                .text(arrow)
                .raw("</span>");
        }
        if !word.is_empty() {
            out.raw(" <span class=\"visually-hidden\">")
                .text(word)
                .raw("</span>");
        }
        match self {
            Change::Up(size) | Change::Down(size) => {
                out.raw(" ").text(&Change::amount(size, measure));
            }
            Change::Same => {
                out.raw(" no change");
            }
            Change::New => {
                out.raw("new");
            }
            Change::Unknown => {}
        }
        out.raw(" <span class=\"vs\">")
            .text(compared_with)
            .raw("</span>");
    }
}

/// `vs previous 30 days`, `vs previous day`.
pub fn compared_with(days: i32) -> String {
    if days == 1 {
        "vs previous day".to_string()
    } else {
        format!("vs previous {}", plural(i64::from(days), "day", "days"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(change: Change, measure: Measure) -> String {
        let mut out = Html::new();
        change.write(&mut out, measure, "vs previous 30 days");
        out.into_string()
    }

    /// What a sighted reader sees: markup and the screen-reader words removed, every kind of
    /// space as one.
    fn visible(html: &str) -> String {
        let without_words = html
            .split("<span class=\"visually-hidden\">")
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    part
                } else {
                    part.split_once("</span>").map_or(part, |p| p.1)
                }
            })
            .collect::<String>();
        let mut text = String::new();
        let mut in_tag = false;
        for c in without_words.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        let text = text
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn plurals_agree_with_their_number() {
        assert_eq!(plural(1, "visit", "visits"), "1 visit");
        assert_eq!(plural(0, "visit", "visits"), "0 visits");
        assert_eq!(plural(2, "visit", "visits"), "2 visits");
        assert_eq!(plural(1234, "visitor", "visitors"), "1\u{202F}234 visitors");
        let mut out = Html::new();
        write_plural(&mut out, 1, "page", "pages");
        assert_eq!(out.as_str(), "1 page");
        assert_eq!(compared_with(1), "vs previous day");
        assert_eq!(compared_with(7), "vs previous 7 days");
    }

    #[test]
    fn durations_and_percentiles_read_naturally() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(60), "1 min");
        assert_eq!(duration(80), "1 min 20 s");
        assert_eq!(duration(3600), "1 h");
        assert_eq!(duration(3900), "1 h 5 min");
        assert_eq!(estimate(None), "–");
        let at_least = Estimate {
            seconds: 3600.0,
            at_least: true,
        };
        assert_eq!(estimate(Some(at_least)), "≥ 1 h");
        assert_eq!(median_seconds(Some(64.6)), "1 min 5 s");
        assert_eq!(median_seconds(Some(3600.0)), "≥ 1 h");
        assert_eq!(median_seconds(None), "–");
        assert_eq!(percent(Some(0.4249)), "42\u{202F}%");
        assert_eq!(percent(None), "–");
    }

    #[test]
    fn changes_say_up_down_new_or_unknown_in_words_and_arrows() {
        assert_eq!(Change::of_counts(112, 100), Change::Up(12.0));
        assert_eq!(Change::of_counts(75, 100), Change::Down(25.0));
        assert_eq!(Change::of_counts(5, 0), Change::New);
        assert_eq!(Change::of_counts(0, 0), Change::Same);
        assert_eq!(Change::of_rates(Some(0.45), None), Change::Unknown);
        assert_eq!(Change::of_rates(Some(0.45), Some(0.42)).class(), "up");
        assert_eq!(Change::of_rates(Some(0.421), Some(0.42)), Change::Same);
        assert_eq!(Change::of_estimates(None, None), Change::Unknown);

        let up = written(Change::of_counts(112, 100), Measure::Relative);
        assert_eq!(visible(&up), "▲ 12 % vs previous 30 days");
        assert!(
            up.contains("<span class=\"visually-hidden\">up</span>"),
            "{up}"
        );
        assert!(up.contains("<span aria-hidden=\"true\">▲</span>"), "{up}");
        assert_eq!(
            visible(&written(Change::of_counts(75, 100), Measure::Relative)),
            "▼ 25 % vs previous 30 days"
        );
        assert_eq!(
            visible(&written(Change::of_counts(1001, 1000), Measure::Relative)),
            "▲ < 1 % vs previous 30 days"
        );
        assert_eq!(
            visible(&written(Change::of_counts(3, 0), Measure::Relative)),
            "new vs previous 30 days"
        );
        assert_eq!(
            visible(&written(Change::Unknown, Measure::Relative)),
            "– vs previous 30 days"
        );
        assert_eq!(
            visible(&written(Change::of_counts(4, 4), Measure::Relative)),
            "= no change vs previous 30 days"
        );
        assert_eq!(
            visible(&written(
                Change::of_rates(Some(0.45), Some(0.42)),
                Measure::Points
            )),
            "▲ 3 pts vs previous 30 days"
        );
        assert_eq!(
            visible(&written(Change::Down(1.2), Measure::Points)),
            "▼ 1 pt vs previous 30 days"
        );
        assert_eq!(
            visible(&written(Change::Up(123_456.0), Measure::Relative)),
            "▲ 123 456 % vs previous 30 days",
            "the narrow spaces read as spaces"
        );
    }
}

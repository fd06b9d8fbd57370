//! Charts as inline SVG, drawn on the server: no script, styled by the page's CSS (so dark
//! mode follows the system), with a title and a description for screen readers and a
//! tooltip per column.
//!
//! A chart stretches to its card at a fixed height without distorting its text: the plot is
//! an SVG whose horizontal positions are percentages of its width and vertical ones pixels.
//! Bars and lines sit in a nested SVG stretched to the plot (`preserveAspectRatio="none"`,
//! strokes kept at their width by `vector-effect`), where a column is one unit wide; text
//! sits in the outer SVG at its natural size. The y axis is a separate narrow SVG beside the
//! plot, so it stays in view while a phone scrolls a wide plot sideways.
//!
//! On a phone a long series keeps a legible width (a CSS class by column count sets a
//! minimum width) inside a scroller that opens at its right end, on the most recent days,
//! without JavaScript: the scroller is `direction: rtl` and the plot inside it `ltr`.

use super::format::{self, plural, write_plural};
use super::html::Html;
use crate::db::rollups::DayCounts;
use crate::insights::{Estimate, Histogram, SPENT_BOUNDS};
use crate::time::Day;

/// Height of every chart in pixels.
pub const HEIGHT: f64 = 220.0;
/// Where the bars stand, and where the x-axis labels go.
const BASELINE: f64 = 192.0;
const LABEL_Y: f64 = 212.0;
/// Room above the highest grid line (a tick label is centred on it).
const TOP: f64 = 10.0;
/// Room for the percentile markers' labels above the histogram.
const MARKER_TOP: f64 = 36.0;
/// Columns are never wider than this many would make them: one day is not one bar across
/// the card. Fewer columns are centred.
const MIN_COLUMNS: usize = 7;
/// Daily columns up to about a year; beyond, one column per month.
pub const MAX_DAILY_COLUMNS: usize = 366;
/// Daily x-axis labels: about this many, the most recent day always among them.
const DAY_LABELS: usize = 8;
/// Monthly x-axis labels: about this many.
const MONTH_LABELS: usize = 12;

/// A round step for `max` split into at most five intervals: 1, 2 or 5 times a power of ten.
pub fn tick_step(max: i64) -> i64 {
    let mut step: i64 = 1;
    loop {
        for factor in [1, 2, 5] {
            if max <= step.saturating_mul(factor).saturating_mul(5) {
                return step * factor;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// The vertical scale: values to pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub y_max: i64,
    pub step: i64,
    top: f64,
}

impl Scale {
    pub fn new(max: i64, top: f64) -> Scale {
        let max = max.max(1);
        let step = tick_step(max);
        Scale {
            y_max: max.saturating_add(step - 1) / step * step,
            step,
            top,
        }
    }

    pub fn y(&self, value: i64) -> f64 {
        BASELINE - (BASELINE - self.top) * value.max(0) as f64 / self.y_max as f64
    }

    fn ticks(&self) -> impl Iterator<Item = i64> + '_ {
        (0..=self.y_max / self.step).map(|n| n * self.step)
    }
}

/// An axis label that stays narrow: `950`, `1.5k`, `12k`, `2.5M`.
pub fn compact(n: i64) -> String {
    let scaled = |divisor: f64, suffix: &str| {
        let value = n as f64 / divisor;
        let text = format!("{value:.1}");
        format!("{}{suffix}", text.trim_end_matches(".0"))
    };
    match n.abs() {
        a if a < 1000 => n.to_string(),
        a if a < 1_000_000 => scaled(1e3, "k"),
        a if a < 1_000_000_000 => scaled(1e6, "M"),
        _ => scaled(1e9, "G"),
    }
}

/// Horizontal placement: `columns` columns, each one unit of a frame at least
/// [`MIN_COLUMNS`] units wide, centred in it.
#[derive(Debug, Clone, Copy)]
struct Frame {
    units: f64,
    offset: f64,
}

impl Frame {
    fn new(columns: usize) -> Frame {
        let units = columns.max(MIN_COLUMNS) as f64;
        Frame {
            units,
            offset: (units - columns as f64) / 2.0,
        }
    }

    /// The left edge of column `index` plus `within` (0–1), in units.
    fn x(&self, index: usize, within: f64) -> f64 {
        self.offset + index as f64 + within
    }

    /// The same position as a percentage of the plot's width.
    fn percent(&self, index: usize, within: f64) -> f64 {
        self.x(index, within) / self.units * 100.0
    }
}

/// The CSS class giving a plot its minimum width on a narrow screen.
pub fn width_class(columns: usize) -> &'static str {
    match columns {
        0..=14 => "cols-s",
        15..=31 => "cols-m",
        32..=92 => "cols-l",
        _ => "cols-xl",
    }
}

/// The y axis, beside the plot.
fn y_axis(out: &mut Html, scale: &Scale) {
    out.raw("<svg class=\"y-axis\" width=\"44\" height=\"")
        .number(HEIGHT)
        .raw("\" aria-hidden=\"true\" focusable=\"false\">");
    for tick in scale.ticks() {
        out.raw("<text x=\"40\" y=\"")
            .decimal(scale.y(tick) + 4.0, 1)
            .raw("\" text-anchor=\"end\">")
            .text(&compact(tick))
            .raw("</text>");
    }
    out.raw("</svg>");
}

/// Opens the plot: the outer SVG with its accessible name and the grid lines.
fn open_plot(
    out: &mut Html,
    id: &'static str,
    class: &'static str,
    title: &str,
    description: &str,
    scale: &Scale,
) {
    out.raw("<div class=\"scroller\"><svg class=\"plot ")
        .raw(class)
        .raw("\" width=\"100%\" height=\"")
        .number(HEIGHT)
        .raw("\" role=\"img\" aria-labelledby=\"")
        .raw(id)
        .raw("-title ")
        .raw(id)
        .raw("-desc\"><title id=\"")
        .raw(id)
        .raw("-title\">")
        .text(title)
        .raw("</title><desc id=\"")
        .raw(id)
        .raw("-desc\">")
        .text(description)
        .raw("</desc>");
    for tick in scale.ticks() {
        let y = scale.y(tick);
        out.raw("<line class=\"grid\" x1=\"0\" x2=\"100%\" y1=\"")
            .decimal(y, 1)
            .raw("\" y2=\"")
            .decimal(y, 1)
            .raw("\"/>");
    }
}

/// Opens the nested SVG where a column is one unit wide and y is in pixels.
fn open_shapes(out: &mut Html, frame: &Frame) {
    out.raw("<svg class=\"shapes\" width=\"100%\" height=\"")
        .number(HEIGHT)
        .raw("\" viewBox=\"0 0 ")
        .decimal(frame.units, 3)
        .raw(" ")
        .number(HEIGHT)
        .raw("\" preserveAspectRatio=\"none\">");
}

fn bar(out: &mut Html, class: &'static str, scale: &Scale, x: f64, width: f64, value: i64) {
    if value <= 0 {
        return;
    }
    let top = scale.y(value);
    out.raw("<rect class=\"")
        .raw(class)
        .raw("\" x=\"")
        .decimal(x, 3)
        .raw("\" y=\"")
        .decimal(top, 1)
        .raw("\" width=\"")
        .decimal(width, 3)
        .raw("\" height=\"")
        .decimal(BASELINE - top, 1)
        .raw("\"/>");
}

/// An x-axis label centred under column `index` (kept inside the plot at its ends).
fn x_label(out: &mut Html, frame: &Frame, index: usize, class: &'static str, text: &str) {
    let centre = frame.percent(index, 0.5);
    let (x, anchor) = if centre < 4.0 {
        (frame.percent(index, 0.0), "start")
    } else if centre > 96.0 {
        (frame.percent(index, 1.0), "end")
    } else {
        (centre, "middle")
    };
    out.raw("<text class=\"")
        .raw(class)
        .raw("\" x=\"")
        .decimal(x, 2)
        .raw("%\" y=\"")
        .number(LABEL_Y)
        .raw("\" text-anchor=\"")
        .raw(anchor)
        .raw("\">")
        .text(text)
        .raw("</text>");
}

fn empty_note(out: &mut Html, note: &str) {
    out.raw("<text class=\"empty\" x=\"50%\" y=\"")
        .number((TOP + BASELINE) / 2.0)
        .raw("\" text-anchor=\"middle\">")
        .text(note)
        .raw("</text>");
}

/// What one column of the daily chart covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Day,
    Month,
}

/// One column: a day, or a month (or the part of it inside the range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub first: Day,
    pub last: Day,
    pub views: i64,
    pub visits: i64,
    pub visitors: i64,
}

/// Days as columns: one per day up to about a year, one per month beyond.
pub fn columns(days: &[DayCounts]) -> (Vec<Column>, Unit) {
    let column = |d: &DayCounts| Column {
        first: d.day,
        last: d.day,
        views: d.views,
        visits: d.visits,
        visitors: d.visitors,
    };
    if days.len() <= MAX_DAILY_COLUMNS {
        return (days.iter().map(column).collect(), Unit::Day);
    }
    let mut months: Vec<Column> = Vec::new();
    for day in days {
        match months.last_mut() {
            Some(month) if month.first.month_start() == day.day.month_start() => {
                month.last = day.day;
                month.views += day.views;
                month.visits += day.visits;
                month.visitors += day.visitors;
            }
            _ => months.push(column(day)),
        }
    }
    (months, Unit::Month)
}

impl Column {
    /// `2024-01-28`, `2024-01-28 (today, so far)`, `Jan 2024`, `2024-01-15 to 2024-01-31`.
    fn when(&self, unit: Unit, today: Day) -> String {
        let whole_month = self.first == self.first.month_start()
            && self.last.plus(1) == self.last.plus(1).month_start();
        match unit {
            Unit::Day if self.first == today => format!("{} (today, so far)", self.first),
            Unit::Day => self.first.to_string(),
            Unit::Month if whole_month => self.first.month_label(),
            Unit::Month => format!("{} to {}", self.first, self.last),
        }
    }

    /// `2024-01-28: 5 views, 1 visit, 0 visitors`, straight into the page.
    fn write_tooltip(&self, out: &mut Html, unit: Unit, today: Day) {
        out.text(&self.when(unit, today)).raw(": ");
        write_plural(out, self.views, "view", "views").raw(", ");
        write_plural(out, self.visits, "visit", "visits").raw(", ");
        write_plural(out, self.visitors, "visitor", "visitors");
    }

    #[cfg(test)]
    fn tooltip(&self, unit: Unit, today: Day) -> String {
        let mut out = Html::new();
        self.write_tooltip(&mut out, unit, today);
        out.into_string()
    }
}

/// Which columns get an x-axis label, and its text.
fn day_label(columns: &[Column], unit: Unit, index: usize) -> Option<String> {
    let from_end = columns.len() - 1 - index;
    let column = &columns[index];
    match unit {
        Unit::Day if columns.len() <= 62 => {
            let every = columns.len().div_ceil(DAY_LABELS).max(1);
            from_end
                .is_multiple_of(every)
                .then(|| column.first.short_label())
        }
        // Longer: the first of each month, and the most recent day.
        Unit::Day => (column.first.date().day == 1 && from_end >= 5 || from_end == 0)
            .then(|| column.first.short_label()),
        Unit::Month => {
            let every = columns.len().div_ceil(MONTH_LABELS).max(1);
            from_end
                .is_multiple_of(every)
                .then(|| column.first.month_label())
        }
    }
}

/// The legend above the daily chart, in HTML so it wraps on a phone.
pub fn legend(out: &mut Html) {
    out.raw(
        "<ul class=\"legend\"><li><span class=\"swatch views\"></span>Views</li>\
         <li><span class=\"swatch visits\"></span>Visits</li>\
         <li><span class=\"swatch visitors\"></span>Visitors</li></ul>",
    );
}

/// Views, visits and visitors per day (or month): per column a pale views bar with the
/// visits bar inside it, and the visitors as a line across the columns.
pub fn daily(out: &mut Html, columns: &[Column], unit: Unit, today: Day) {
    out.reserve(2048 + columns.len() * 220);
    let max = columns
        .iter()
        .map(|c| c.views.max(c.visits).max(c.visitors))
        .max()
        .unwrap_or(0);
    let scale = Scale::new(max, TOP);
    let frame = Frame::new(columns.len());
    let per = match unit {
        Unit::Day => "day",
        Unit::Month => "month",
    };
    let title = format!("Views, visits and visitors per {per}");
    let total = |f: fn(&Column) -> i64| columns.iter().map(f).sum::<i64>();
    let description = match (columns.first(), columns.last()) {
        (Some(first), Some(last)) => format!(
            "{}, {} and {} from {} to {}.",
            plural(total(|c| c.views), "view", "views"),
            plural(total(|c| c.visits), "visit", "visits"),
            plural(total(|c| c.visitors), "visitor", "visitors"),
            first.first,
            last.last
        ),
        _ => "No days in this range.".to_string(),
    };

    out.raw("<div class=\"chart\">");
    y_axis(out, &scale);
    open_plot(
        out,
        "daily",
        width_class(columns.len()),
        &title,
        &description,
        &scale,
    );
    open_shapes(out, &frame);
    for (index, column) in columns.iter().enumerate() {
        out.raw("<g class=\"col\"><title>");
        column.write_tooltip(out, unit, today);
        out.raw("</title>");
        bar(out, "views", &scale, frame.x(index, 0.1), 0.8, column.views);
        bar(
            out,
            "visits",
            &scale,
            frame.x(index, 0.25),
            0.5,
            column.visits,
        );
        out.raw("</g>");
    }
    if columns.iter().any(|c| c.visitors > 0) {
        out.raw("<polyline class=\"visitors\" vector-effect=\"non-scaling-stroke\" points=\"");
        let point = |out: &mut Html, x: f64, value: i64| {
            out.decimal(x, 3)
                .raw(",")
                .decimal(scale.y(value), 1)
                .raw(" ");
        };
        if let [only] = columns {
            // A line needs two points: a short one across the single column.
            point(out, frame.x(0, 0.1), only.visitors);
            point(out, frame.x(0, 0.9), only.visitors);
        } else {
            for (index, column) in columns.iter().enumerate() {
                point(out, frame.x(index, 0.5), column.visitors);
            }
        }
        out.raw("\"/>");
    }
    out.raw("</svg>");
    for index in 0..columns.len() {
        if let Some(label) = day_label(columns, unit, index) {
            x_label(out, &frame, index, "axis", &label);
        }
    }
    if max == 0 {
        empty_note(out, "No views or visits in this range");
    }
    out.raw("</svg></div></div>");
}

/// The x-axis label of a time-on-page bucket's lower bound: `10s`, `1.5m`, `1h+`.
fn bucket_label(bucket: usize) -> String {
    let seconds = SPENT_BOUNDS[bucket];
    let text = match seconds {
        0 => "0".to_string(),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 && s % 60 == 0 => format!("{}m", s / 60),
        s if s < 3600 => format!("{:.1}m", f64::from(s) / 60.0),
        s => format!("{}h", s / 3600),
    };
    if bucket + 1 == SPENT_BOUNDS.len() {
        text + "+"
    } else {
        text
    }
}

/// `1 min 30 s to 2 min: 2 visits`, `1 h or more: 3 visits`.
fn bucket_tooltip(bucket: usize, visits: i64) -> String {
    let low = format::duration(SPENT_BOUNDS[bucket].into());
    let range = match SPENT_BOUNDS.get(bucket + 1) {
        Some(&high) => format!("{low} to {}", format::duration(high.into())),
        None => format!("{low} or more"),
    };
    format!("{range}: {}", plural(visits, "visit", "visits"))
}

/// Where a time falls on the histogram's x axis, in columns: its bucket plus how far into
/// the bucket (linear, as the estimate itself assumes); the open last bucket at its start.
fn bucket_position(estimate: Estimate) -> f64 {
    let seconds = estimate.seconds;
    let bucket = SPENT_BOUNDS
        .iter()
        .rposition(|&low| f64::from(low) <= seconds)
        .unwrap_or(0);
    match SPENT_BOUNDS.get(bucket + 1) {
        Some(&high) if !estimate.at_least => {
            let low = f64::from(SPENT_BOUNDS[bucket]);
            bucket as f64 + ((seconds - low) / (f64::from(high) - low)).clamp(0.0, 1.0)
        }
        _ => bucket as f64,
    }
}

/// Visits by time on page, one bar per bucket, with the median and the 90th percentile
/// marked where they were estimated.
pub fn spent(out: &mut Html, histogram: &Histogram) {
    out.reserve(6144);
    let counts = &histogram.counts;
    let max = counts.iter().copied().max().unwrap_or(0);
    let scale = Scale::new(max, MARKER_TOP);
    let frame = Frame::new(counts.len());
    let median = histogram.median();
    let p90 = histogram.percentile(0.9);
    let description = format!(
        "{} reported their time on page: median {}, 90th percentile {} (estimated from the buckets).",
        plural(histogram.total(), "visit", "visits"),
        format::estimate(median),
        format::estimate(p90)
    );
    out.raw("<div class=\"chart\">");
    y_axis(out, &scale);
    open_plot(
        out,
        "spent",
        width_class(counts.len()),
        "Visits by time on page",
        &description,
        &scale,
    );
    open_shapes(out, &frame);
    for (bucket, &visits) in counts.iter().enumerate() {
        out.raw("<g class=\"col\"><title>")
            .text(&bucket_tooltip(bucket, visits))
            .raw("</title>");
        bar(out, "visits", &scale, frame.x(bucket, 0.1), 0.8, visits);
        out.raw("</g>");
    }
    let markers = [("median", median, 14.0), ("90th percentile", p90, 30.0)];
    for (_, estimate, _) in markers {
        if let Some(estimate) = estimate {
            let x = frame.offset + bucket_position(estimate);
            // Below both labels, so neither line crosses the other marker's label.
            out.raw("<line class=\"marker\" vector-effect=\"non-scaling-stroke\" x1=\"")
                .decimal(x, 3)
                .raw("\" x2=\"")
                .decimal(x, 3)
                .raw("\" y1=\"")
                .number(MARKER_TOP - 2.0)
                .raw("\" y2=\"")
                .number(BASELINE)
                .raw("\"/>");
        }
    }
    out.raw("</svg>");
    for (bucket, _) in counts.iter().enumerate() {
        // Every other label goes on a narrow screen, where all of them would collide.
        let class = if bucket % 2 == 0 {
            "axis"
        } else {
            "axis minor"
        };
        x_label(out, &frame, bucket, class, &bucket_label(bucket));
    }
    for (name, estimate, label_y) in markers {
        if let Some(estimate) = estimate {
            let percent = (frame.offset + bucket_position(estimate)) / frame.units * 100.0;
            let (anchor, dx) = if percent > 60.0 {
                ("end", "-4")
            } else {
                ("start", "4")
            };
            out.raw("<text class=\"marker-label\" x=\"")
                .decimal(percent, 2)
                .raw("%\" dx=\"")
                .raw(dx)
                .raw("\" y=\"")
                .number(label_y)
                .raw("\" text-anchor=\"")
                .raw(anchor)
                .raw("\">")
                .text(name)
                .raw(" ")
                .text(&format::estimate(Some(estimate)))
                .raw("</text>");
        }
    }
    if max == 0 {
        empty_note(out, "No times reported in this range");
    }
    out.raw("</svg></div></div>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::rollups::BUCKETS;

    fn daily_svg(columns: &[Column], unit: Unit, today: Day) -> Html {
        let mut out = Html::new();
        daily(&mut out, columns, unit, today);
        out
    }

    fn spent_svg(histogram: &Histogram) -> Html {
        let mut out = Html::new();
        spent(&mut out, histogram);
        out
    }

    fn day(text: &str) -> Day {
        Day::parse(text).unwrap()
    }

    fn days(first: &str, count: i32, visits: impl Fn(i32) -> i64) -> Vec<DayCounts> {
        (0..count)
            .map(|n| DayCounts {
                day: day(first).plus(n),
                views: visits(n) * 3,
                visits: visits(n),
                visitors: visits(n) * 2,
            })
            .collect()
    }

    #[test]
    fn ticks_are_round_and_labels_narrow() {
        assert_eq!(tick_step(1), 1);
        assert_eq!(tick_step(5), 1);
        assert_eq!(tick_step(7), 2);
        assert_eq!(tick_step(23), 5);
        assert_eq!(tick_step(51), 20);
        assert_eq!(tick_step(1234), 500);
        assert!(tick_step(i64::MAX) > 0);
        assert_eq!(compact(950), "950");
        assert_eq!(compact(1000), "1k");
        assert_eq!(compact(1500), "1.5k");
        assert_eq!(compact(12_000), "12k");
        assert_eq!(compact(2_500_000), "2.5M");
        let scale = Scale::new(1234, TOP);
        assert_eq!((scale.y_max, scale.step), (1500, 500));
        assert_eq!(scale.y(1500), TOP);
        assert_eq!(scale.y(0), BASELINE);
        assert_eq!(scale.ticks().collect::<Vec<_>>(), vec![0, 500, 1000, 1500]);
    }

    #[test]
    fn a_year_is_daily_and_longer_ranges_are_monthly() {
        let year = days("2023-01-01", 366, |_| 1);
        let (columns, unit) = columns(&year);
        assert_eq!((columns.len(), unit), (366, Unit::Day));

        let long = days("2023-01-15", 400, |_| 2); // to 2024-02-18
        let (months, unit) = super::columns(&long);
        assert_eq!(unit, Unit::Month);
        assert_eq!(months.len(), 14);
        assert_eq!(
            (months[0].first, months[0].last),
            (day("2023-01-15"), day("2023-01-31"))
        );
        assert_eq!(months[0].visits, 34);
        assert_eq!(
            months.iter().map(|m| m.visits).sum::<i64>(),
            800,
            "nothing lost"
        );
        let today = day("2024-02-18");
        assert_eq!(
            months[0].when(Unit::Month, today),
            "2023-01-15 to 2023-01-31"
        );
        assert_eq!(months[1].when(Unit::Month, today), "Feb 2023");
        assert_eq!(
            months[1].tooltip(Unit::Month, today),
            "Feb 2023: 168 views, 56 visits, 112 visitors"
        );
    }

    #[test]
    fn tooltips_use_plurals_and_mark_today() {
        let one = Column {
            first: day("2024-01-28"),
            last: day("2024-01-28"),
            views: 1,
            visits: 1,
            visitors: 0,
        };
        assert_eq!(
            one.tooltip(Unit::Day, day("2024-01-29")),
            "2024-01-28: 1 view, 1 visit, 0 visitors"
        );
        assert_eq!(
            one.tooltip(Unit::Day, day("2024-01-28")),
            "2024-01-28 (today, so far): 1 view, 1 visit, 0 visitors"
        );
    }

    #[test]
    fn the_daily_chart_has_a_column_per_day_and_labels_the_last_one() {
        let series = days("2024-01-01", 30, |n| i64::from(n % 5));
        let (columns, unit) = columns(&series);
        let svg = daily_svg(&columns, unit, day("2024-01-30"));
        let svg = svg.as_str();
        assert_eq!(svg.matches("<g class=\"col\">").count(), 30);
        assert!(
            svg.contains(
                "<title>2024-01-30 (today, so far): 12 views, 4 visits, 8 visitors</title>"
            )
        );
        assert!(
            svg.contains(">Jan 30</text>"),
            "the most recent day is labelled"
        );
        assert!(svg.matches("class=\"axis\"").count() <= DAY_LABELS);
        assert!(svg.contains("class=\"plot cols-m\""));
        assert!(svg.contains("<polyline class=\"visitors\""));
        assert!(svg.contains("preserveAspectRatio=\"none\""));
        assert!(!svg.contains("No views or visits"));
        assert!(
            svg.contains("<desc id=\"daily-desc\">180 views, 60 visits and 120 visitors from 2024-01-01 to 2024-01-30.</desc>"),
            "{svg}"
        );
        // Grid lines and y labels agree: 0 to 12 in steps of 5 → 0, 5, 10, 15.
        assert_eq!(svg.matches("<line class=\"grid\"").count(), 4);
        assert!(svg.contains(">15</text>"));
    }

    #[test]
    fn a_year_of_days_is_labelled_by_month_and_scrolls_on_a_phone() {
        let series = days("2023-03-01", 365, |_| 3);
        let (columns, unit) = columns(&series);
        let svg = daily_svg(&columns, unit, day("2024-02-28"));
        assert!(svg.as_str().contains("class=\"plot cols-xl\""));
        for month in ["Apr 1", "Jan 1", "Feb 28"] {
            assert!(
                svg.as_str().contains(&format!(">{month}</text>")),
                "{month}"
            );
        }
        assert!(!svg.as_str().contains(">Mar 2</text>"));
    }

    #[test]
    fn columns_stay_inside_the_plot_and_few_are_centred() {
        let one = days("2024-01-01", 1, |_| 4);
        let (columns, unit) = columns(&one);
        let svg = daily_svg(&columns, unit, day("2024-01-01"));
        // One column in a frame seven wide, in the middle.
        assert!(svg.as_str().contains("viewBox=\"0 0 7 220\""), "{svg:?}");
        assert!(
            svg.as_str().contains("<rect class=\"views\" x=\"3.1\""),
            "{svg:?}"
        );
        assert!(
            svg.as_str().contains("points=\"3.1,"),
            "a line across the lone column"
        );
        let frame = Frame::new(30);
        assert_eq!(frame.x(0, 0.0), 0.0);
        assert_eq!(frame.percent(29, 1.0), 100.0);
    }

    #[test]
    fn empty_charts_say_so() {
        let quiet = days("2024-01-01", 30, |_| 0);
        let (columns, unit) = columns(&quiet);
        let svg = daily_svg(&columns, unit, day("2024-01-30"));
        assert!(
            svg.as_str()
                .contains(">No views or visits in this range</text>")
        );
        assert!(!svg.as_str().contains("<rect"));
        assert!(!svg.as_str().contains("<polyline"));
        let svg = spent_svg(&Histogram::default());
        assert!(
            svg.as_str()
                .contains(">No times reported in this range</text>")
        );
        assert!(!svg.as_str().contains("class=\"marker\""));
    }

    #[test]
    fn the_histogram_marks_its_median_and_90th_percentile() {
        let mut histogram = Histogram::default();
        histogram.counts[2] = 10; // [20, 30): median 25 s, p90 29 s
        let svg = spent_svg(&histogram);
        let svg = svg.as_str();
        assert_eq!(svg.matches("<g class=\"col\">").count(), BUCKETS);
        assert!(svg.contains(">median 25 s</text>"), "{svg}");
        assert!(svg.contains(">90th percentile 29 s</text>"));
        assert!(
            svg.contains("x1=\"2.5\""),
            "the median half-way into its bucket"
        );
        assert!(svg.contains("<title>20 s to 30 s: 10 visits</title>"));
        assert!(svg.contains("<title>1 h or more: 0 visits</title>"));
        assert!(svg.contains(">1.5m</text>") && svg.contains(">1h+</text>"));
        assert!(svg.contains("class=\"axis minor\""));

        histogram.counts = [0; BUCKETS];
        histogram.counts[13] = 1;
        let svg = spent_svg(&histogram);
        assert!(svg.as_str().contains(">median ≥ 1 h</text>"));
        assert!(svg.as_str().contains("<title>1 h or more: 1 visit</title>"));
        assert_eq!(
            bucket_position(Estimate {
                seconds: 3600.0,
                at_least: true
            }),
            13.0
        );
    }

    #[test]
    fn text_in_charts_is_escaped() {
        // Chart text comes from numbers and dates only, but goes through the escaping writer
        // all the same: nothing here may open a tag.
        let series = days("2024-01-01", 3, |_| 1);
        let (columns, unit) = columns(&series);
        let svg = daily_svg(&columns, unit, day("2024-01-03"));
        for fragment in svg.as_str().split('<').skip(1) {
            let tag = fragment.split([' ', '>', '/']).next().unwrap_or("");
            assert!(
                [
                    "svg", "text", "title", "desc", "line", "g", "rect", "polyline", "div", ""
                ]
                .contains(&tag),
                "unexpected <{tag}"
            );
        }
    }
}

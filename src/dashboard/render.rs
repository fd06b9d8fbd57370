//! Dashboard pages from plain data: no database, no request, so the pages can be tested and
//! benchmarked on their own. The handlers in `mod.rs` gather the data.

use hyper::header::HeaderValue;

use super::chart::{self, Bar};
use super::html::{Html, Template};
use super::spent::{Estimate, Histogram};
use crate::http::Cached;
use crate::paths::normalize;
use crate::time::Day;

fn day(number: i64) -> Day {
    Day::from_days(number as i32)
}

pub const CSS: &str = include_str!("../../assets/style.css");

/// A time range of the stats page, chosen with a plain link.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Range {
    pub key: &'static str,
    pub label: &'static str,
    pub days: Option<i64>,
}

pub const RANGES: [Range; 5] = [
    Range {
        key: "7d",
        label: "last 7 days",
        days: Some(7),
    },
    Range {
        key: "30d",
        label: "last 30 days",
        days: Some(30),
    },
    Range {
        key: "90d",
        label: "last 90 days",
        days: Some(90),
    },
    Range {
        key: "365d",
        label: "last 365 days",
        days: Some(365),
    },
    Range {
        key: "all",
        label: "all time",
        days: None,
    },
];
pub const DEFAULT_RANGE: Range = RANGES[1];

/// What every page shows about the tracker itself.
pub struct Context<'a> {
    pub site: &'a str,
    pub base_url: &'a str,
    pub min_delay_secs: u32,
}

/// The most frequent referrers, and how many visits had any referrer at all.
#[derive(Default)]
pub struct Referrers {
    pub top: Vec<(String, i64)>,
    pub total: i64,
}

/// Everything `/` shows except the path table, which is streamed.
pub struct IndexData {
    pub total_visits: i64,
    pub path_count: i64,
    /// Site visits per day, oldest first, zeros included.
    pub series: Vec<(i64, i64)>,
    pub histogram: Histogram,
    pub referrers: Referrers,
}

pub struct StatsData {
    pub path: String,
    pub range: Range,
    pub total_visits: i64,
    pub series: Vec<(i64, i64)>,
    pub histogram: Histogram,
    pub referrers: Referrers,
}

/// Templates and the stylesheet, prepared once.
pub struct Pages {
    page: Template,
    index: Template,
    stats: Template,
    message: Template,
    /// The stylesheet; pages link it with its version, so it can be cached for a year.
    pub css: Cached,
    css_version: Html,
}

impl Default for Pages {
    fn default() -> Pages {
        Pages::new()
    }
}

fn text(value: &str) -> Html {
    let mut out = Html::new();
    out.text(value);
    out
}

fn count(value: i64) -> Html {
    let mut out = Html::new();
    out.count(value);
    out
}

fn duration(estimate: Option<Estimate>) -> Html {
    text(&estimate.map_or_else(|| "–".to_string(), |e| e.to_string()))
}

/// The `/stats` link for a stored path: the path in the form count.js sends it, encoded as a
/// query value, so every stored path (`?` and `%` included) has a working link.
fn stats_link(out: &mut Html, path: &str) {
    out.raw("/stats?path=")
        .url_component(&normalize::request_target(path));
}

impl Pages {
    pub fn new() -> Pages {
        let css = Cached::new(
            CSS,
            HeaderValue::from_static("text/css; charset=utf-8"),
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        );
        let mut css_version = Html::new();
        css_version.url_component(css.version());
        Pages {
            page: Template::parse(include_str!("../../assets/page.html")),
            index: Template::parse(include_str!("../../assets/index.html")),
            stats: Template::parse(include_str!("../../assets/stats.html")),
            message: Template::parse(include_str!("../../assets/message.html")),
            css,
            css_version,
        }
    }

    /// The page layout around its content, split where the content goes (for streaming).
    pub fn layout(&self, context: &Context, title: &str) -> (Html, Html) {
        let mut min_delay = Html::new();
        min_delay.number(context.min_delay_secs);
        self.page.render_around(
            &[
                ("title", &text(title)),
                ("css_version", &self.css_version),
                ("site", &text(context.site)),
                ("min_delay", &min_delay),
            ],
            "content",
        )
    }

    /// A whole page around `content`.
    pub fn page(&self, context: &Context, title: &str, content: &Html) -> Html {
        let (mut out, after) = self.layout(context, title);
        out.append(content).append(&after);
        out
    }

    /// A page that says what went wrong.
    pub fn message(&self, context: &Context, heading: &str, message: &str) -> Html {
        let content = self
            .message
            .render(&[("heading", &text(heading)), ("message", &text(message))]);
        self.page(context, heading, &content)
    }

    /// `/` before and after the rows of its path table.
    pub fn index(&self, context: &Context, data: &IndexData) -> (Html, Html) {
        let recent_visits: i64 = data.series.iter().map(|(_, v)| v).sum();
        let (bars, _) = bars_for(&data.series);
        let (first, last) = span(&data.series);
        let description = format!("{recent_visits} visits from {first} to {last}");
        let chart = chart::bar_chart(
            "site",
            chart::WIDE,
            "Visits per day, last 30 days",
            &description,
            &bars,
            "No visits in the last 30 days",
        );
        let getting_started = if data.path_count == 0 {
            getting_started(context)
        } else {
            Html::new()
        };
        let (content_before, content_after) = self.index.render_around(
            &[
                ("site", &text(context.site)),
                ("total_visits", &count(data.total_visits)),
                ("recent_visits", &count(recent_visits)),
                ("median", &duration(data.histogram.percentile(0.5))),
                ("path_count", &count(data.path_count)),
                ("chart", &chart),
                ("getting_started", &getting_started),
                ("referrers", &referrer_table(&data.referrers, recent_visits)),
            ],
            "rows",
        );
        let (mut before, page_after) = self.layout(context, "Dashboard");
        before.append(&content_before);
        let mut after = content_after;
        after.append(&page_after);
        (before, after)
    }

    /// The whole `/stats` page.
    pub fn stats(&self, context: &Context, data: &StatsData) -> Html {
        let range_visits: i64 = data.series.iter().map(|(_, v)| v).sum();
        let (bars, unit) = bars_for(&data.series);
        let (first, last) = span(&data.series);
        let caption = format!("Visits per {unit}, {}", data.range.label);
        let chart = chart::bar_chart(
            "visits",
            chart::WIDE,
            &caption,
            &format!("{range_visits} visits from {first} to {last}"),
            &bars,
            "No visits in this range",
        );
        let spent_chart = chart::bar_chart(
            "spent",
            chart::NARROW,
            "Visits by time on page",
            &format!(
                "{} visits reported their time on page",
                data.histogram.total()
            ),
            &data.histogram.bars(),
            "No times reported in this range",
        );
        let content = self.stats.render(&[
            ("path", &text(&data.path)),
            ("ranges", &range_nav(&data.path, data.range)),
            ("range_visits", &count(range_visits)),
            ("range_label", &text(data.range.label)),
            ("total_visits", &count(data.total_visits)),
            ("median", &duration(data.histogram.percentile(0.5))),
            ("p90", &duration(data.histogram.percentile(0.9))),
            ("chart", &chart),
            ("chart_caption", &text(&caption)),
            ("referrers", &referrer_table(&data.referrers, range_visits)),
            ("spent_chart", &spent_chart),
            ("spent_count", &count(data.histogram.total())),
        ]);
        self.page(context, &data.path, &content)
    }
}

/// One row of the path table per path.
pub fn path_rows<'a>(out: &mut Html, rows: impl IntoIterator<Item = (&'a str, i64)>) {
    for (path, visits) in rows {
        out.raw("<tr><td><a href=\"");
        stats_link(out, path);
        out.raw("\">")
            .text(path)
            .raw("</a></td><td class=\"num\">")
            .count(visits)
            .raw("</td></tr>\n");
    }
}

/// The row shown when no path is registered yet.
pub const NO_PATHS_ROW: &str = "<tr><td colspan=\"2\" class=\"empty-note\">No pages yet.</td></tr>";

fn span(series: &[(i64, i64)]) -> (String, String) {
    let day =
        |entry: Option<&(i64, i64)>| entry.map_or_else(String::new, |(d, _)| day(*d).to_string());
    (day(series.first()), day(series.last()))
}

/// Bars for a daily series: one per day up to about a year, one per month beyond.
pub fn bars_for(series: &[(i64, i64)]) -> (Vec<Bar>, &'static str) {
    let plural = |n: i64| if n == 1 { "visit" } else { "visits" };
    if series.len() <= 366 {
        let bars = series
            .iter()
            .map(|&(day, visits)| Bar {
                label: self::day(day).short_label(),
                tooltip: format!("{}: {visits} {}", self::day(day), plural(visits)),
                value: visits,
            })
            .collect();
        return (bars, "day");
    }
    let mut bars: Vec<Bar> = Vec::new();
    let mut current_month = None;
    for &(day, visits) in series {
        let month = self::day(day).month_start();
        if current_month != Some(month) {
            current_month = Some(month);
            bars.push(Bar {
                label: self::day(day).month_label(),
                tooltip: String::new(),
                value: 0,
            });
        }
        if let Some(bar) = bars.last_mut() {
            bar.value += visits;
        }
    }
    for bar in &mut bars {
        bar.tooltip = format!("{}: {} {}", bar.label, bar.value, plural(bar.value));
    }
    (bars, "month")
}

fn referrer_table(referrers: &Referrers, visits_in_range: i64) -> Html {
    let mut out = Html::new();
    let direct = (visits_in_range - referrers.total).max(0);
    if referrers.top.is_empty() && direct == 0 {
        out.raw("<p class=\"empty-note\">No visits in this range.</p>");
        return out;
    }
    out.raw(
        "<table><thead><tr><th scope=\"col\">From</th><th scope=\"col\" class=\"num\">Visits</th>\
         </tr></thead><tbody>",
    );
    for (referrer, visits) in &referrers.top {
        out.raw("<tr><td>");
        // Only web addresses become links; anything else (an app id) stays text.
        if referrer.starts_with("https://") || referrer.starts_with("http://") {
            out.raw("<a href=\"")
                .text(referrer)
                .raw("\" rel=\"noopener noreferrer nofollow\">")
                .text(referrer)
                .raw("</a>");
        } else {
            out.text(referrer);
        }
        out.raw("</td><td class=\"num\">")
            .count(*visits)
            .raw("</td></tr>");
    }
    if direct > 0 {
        out.raw("<tr><td class=\"empty-note\">Direct, or no referrer sent</td><td class=\"num\">")
            .count(direct)
            .raw("</td></tr>");
    }
    out.raw("</tbody></table>");
    out
}

/// The script tag to paste, shown until the first page is registered.
fn getting_started(context: &Context) -> Html {
    let mut out = Html::new();
    out.raw("<section class=\"card\"><h2>Getting started</h2><p>Add this tag to every page of ")
        .text(context.site)
        .raw(":</p><pre><code>&lt;script type=&quot;module&quot; src=&quot;")
        .text(context.base_url)
        .raw("/count.js&quot;&gt;&lt;/script&gt;</code></pre><p>Pages appear here once a visitor has stayed ")
        .number(context.min_delay_secs)
        .raw(" seconds.</p></section>");
    out
}

fn range_nav(path: &str, current: Range) -> Html {
    let mut out = Html::new();
    for range in RANGES {
        if range == current {
            out.raw("<strong aria-current=\"page\">")
                .text(range.label)
                .raw("</strong>\n");
        } else {
            out.raw("<a href=\"");
            stats_link(&mut out, path);
            out.raw("&amp;range=")
                .text(range.key)
                .raw("\">")
                .text(range.label)
                .raw("</a>\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: Context = Context {
        site: "https://example.org",
        base_url: "https://t.example",
        min_delay_secs: 19,
    };
    const BOUNDS: [i32; 14] = [
        0, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600,
    ];

    #[test]
    fn long_ranges_are_charted_by_month() {
        let short: Vec<(i64, i64)> = (0..30).map(|d| (19_700 + d, 1)).collect();
        let (bars, unit) = bars_for(&short);
        assert_eq!((bars.len(), unit), (30, "day"));
        assert_eq!(bars[0].tooltip, "2023-12-09: 1 visit");

        let long: Vec<(i64, i64)> = (0..400).map(|d| (19_358 + d, 2)).collect(); // 2023-01-01 …
        let (bars, unit) = bars_for(&long);
        assert_eq!(unit, "month");
        assert_eq!(bars.len(), 14);
        assert_eq!(bars[0].label, "Jan 2023");
        assert_eq!(bars[0].value, 62);
        assert_eq!(
            bars.iter().map(|b| b.value).sum::<i64>(),
            800,
            "nothing lost in the grouping"
        );
    }

    #[test]
    fn every_template_placeholder_is_filled() {
        // Rendering with a missing value trips a debug assertion; render every page once.
        let pages = Pages::new();
        let histogram = Histogram::from_counts([(3, 4)], &BOUNDS);
        let data = IndexData {
            total_visits: 4,
            path_count: 0,
            series: vec![(19_750, 4)],
            histogram,
            referrers: Referrers::default(),
        };
        let (before, after) = pages.index(&CONTEXT, &data);
        assert!(
            before.as_str().contains("Getting started") && after.as_str().ends_with("</html>\n")
        );
        let data = StatsData {
            path: "/a".into(),
            range: RANGES[4],
            total_visits: 4,
            series: vec![(19_750, 4)],
            histogram: Histogram::from_counts([], &BOUNDS),
            referrers: Referrers {
                top: vec![("android-app://x".into(), 1)],
                total: 1,
            },
        };
        let page = pages.stats(&CONTEXT, &data);
        assert!(
            page.as_str().contains("<td>android-app://x</td>"),
            "non-web referrers are not links"
        );
        assert!(page.as_str().contains("Direct, or no referrer sent"));
        assert!(!page.as_str().contains("{{"));
        assert!(
            pages
                .message(&CONTEXT, "Not found", "<x>")
                .as_str()
                .contains("<p>&lt;x&gt;</p>")
        );
    }

    #[test]
    fn links_encode_the_path_as_count_js_sends_it() {
        let nav = range_nav("/a b&c\"<x>", RANGES[0]);
        assert!(
            nav.as_str()
                .contains("<strong aria-current=\"page\">last 7 days</strong>")
        );
        assert!(
            nav.as_str()
                .contains("href=\"/stats?path=/a%2520b%26c%2522%253Cx%253E&amp;range=30d\""),
            "{nav:?}"
        );
        let mut rows = Html::new();
        path_rows(&mut rows, [("/what?", 3)]);
        assert_eq!(
            rows.as_str(),
            "<tr><td><a href=\"/stats?path=/what%253F\">/what?</a></td><td class=\"num\">3</td></tr>\n"
        );
    }
}

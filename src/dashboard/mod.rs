//! The HTML dashboard: `/` (every path, site totals, a chart) and `/stats?path=` (one path
//! over a chosen range). Pages read the per-day counters the database maintains, never
//! every visit, and stay useful without JavaScript (ranges are plain links, charts are SVG).

pub mod chart;
pub mod html;
pub mod spent;

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode, Uri};
use tokio_postgres::Row;

use crate::App;
use crate::db::{Conn, Unavailable};
use crate::http::{self, Body, HttpError};
use crate::paths::normalize;
use crate::query;
use crate::time;
use chart::Bar;
use html::{Html, Template};

/// No script, no frames, nothing from elsewhere: styles from us, the favicon is a data URL.
const CONTENT_SECURITY_POLICY: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; style-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'",
);
const CSS: &str = include_str!("../../assets/style.css");
/// Rows of the path table rendered per streamed chunk.
const ROWS_PER_CHUNK: usize = 200;
const TOP_REFERRERS: i64 = 20;
/// A day range wider than any data (about ±2,700 years) that PostgreSQL's dates still hold.
const ALL_DAYS: (i32, i32) = (-1_000_000, 1_000_000);

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
const DEFAULT_RANGE: Range = RANGES[1];

/// Templates and the stylesheet, prepared once.
pub struct Pages {
    page: Template,
    index: Template,
    stats: Template,
    message: Template,
    css_etag: HeaderValue,
    css_version: Html,
}

impl Pages {
    pub fn new() -> Pages {
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(CSS);
        let mut css_version = Html::new();
        css_version.url_component(&format!("{hash:016x}"));
        Pages {
            page: Template::parse(include_str!("../../assets/page.html")),
            index: Template::parse(include_str!("../../assets/index.html")),
            stats: Template::parse(include_str!("../../assets/stats.html")),
            message: Template::parse(include_str!("../../assets/message.html")),
            css_etag: HeaderValue::from_str(&format!("\"{hash:016x}\""))
                .expect("hex is a valid header"),
            css_version,
        }
    }
}

impl Default for Pages {
    fn default() -> Pages {
        Pages::new()
    }
}

/// Headers every dashboard page carries.
fn secure(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The page layout around `content`, split where the content goes (for streaming).
fn layout(app: &App, title: &str) -> (Html, Html) {
    let mut title_html = Html::new();
    title_html.text(title);
    let mut site = Html::new();
    site.text(app.config.tracked_origin.as_str());
    let mut min_delay = Html::new();
    min_delay.number(app.config.min_delay_secs);
    app.dashboard.page.render_around(
        &[
            ("title", &title_html),
            ("css_version", &app.dashboard.css_version),
            ("site", &site),
            ("min_delay", &min_delay),
        ],
        "content",
    )
}

fn page(app: &App, status: StatusCode, title: &str, content: &Html) -> Response<Body> {
    let (mut out, after) = layout(app, title);
    out.append(content).append(&after);
    secure(http::with_body(status, http::TEXT_HTML, out.into_string()))
}

/// An error as a complete HTML page.
pub fn error_page(app: &App, error: HttpError) -> Response<Body> {
    let heading = match error.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Bad request",
        StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
        _ => "Something went wrong",
    };
    let mut heading_html = Html::new();
    heading_html.text(heading);
    let mut message = Html::new();
    message.text(&error.message);
    let content = app
        .dashboard
        .message
        .render(&[("heading", &heading_html), ("message", &message)]);
    let mut response = page(app, error.status, heading, &content);
    if error.status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    }
    response
}

/// `GET /style.css`: cached for a year; pages link it with its hash, so a new version is a
/// new URL.
pub fn style(app: &App, request: &HeaderMap) -> Response<Body> {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tag| tag == app.dashboard.css_etag);
    let mut response = if fresh {
        http::empty(StatusCode::NOT_MODIFIED)
    } else {
        http::with_body(
            StatusCode::OK,
            HeaderValue::from_static("text/css; charset=utf-8"),
            Bytes::from_static(CSS.as_bytes()),
        )
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, app.dashboard.css_etag.clone());
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

/// Visits per day for `days` (inclusive), zeros filled in.
async fn daily_series(
    conn: &Conn,
    scope: i32,
    first: i64,
    last: i64,
) -> Result<Vec<(i64, i64)>, tokio_postgres::Error> {
    let rows = conn
        .client
        .query(
            &conn.statements.daily_visits,
            &[&scope, &(first as i32), &(last as i32)],
        )
        .await?;
    let mut series: Vec<(i64, i64)> = (first..=last).map(|day| (day, 0)).collect();
    for row in rows {
        let (day, visits): (i64, i64) = (row.get(0), row.get(1));
        if let Some(slot) = series.get_mut((day - first) as usize) {
            slot.1 = visits;
        }
    }
    Ok(series)
}

/// Bars for a daily series: one per day up to about a year, one per month beyond.
pub fn bars_for(series: &[(i64, i64)]) -> (Vec<Bar>, &'static str) {
    let plural = |n: i64| if n == 1 { "visit" } else { "visits" };
    if series.len() <= 366 {
        let bars = series
            .iter()
            .map(|&(day, visits)| Bar {
                label: time::short_date(day),
                tooltip: format!("{}: {visits} {}", time::iso_date(day), plural(visits)),
                value: visits,
            })
            .collect();
        return (bars, "day");
    }
    let mut bars: Vec<Bar> = Vec::new();
    let mut current_month = None;
    for &(day, visits) in series {
        let month = time::month_start(day);
        if current_month != Some(month) {
            current_month = Some(month);
            bars.push(Bar {
                label: time::month_label(day),
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

fn referrer_table(rows: &[Row], visits_in_range: i64) -> Html {
    let mut out = Html::new();
    let with_referrer: i64 = rows.first().map_or(0, |row| row.get(2));
    let direct = (visits_in_range - with_referrer).max(0);
    if rows.is_empty() && direct == 0 {
        out.raw("<p class=\"empty-note\">No visits in this range.</p>");
        return out;
    }
    out.raw("<table><thead><tr><th scope=\"col\">From</th><th scope=\"col\" class=\"num\">Visits</th></tr></thead><tbody>");
    for row in rows {
        let (referrer, visits): (&str, i64) = (row.get(0), row.get(1));
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
            .count(visits)
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

fn duration_html(estimate: Option<spent::Estimate>) -> Html {
    let mut out = Html::new();
    out.text(&estimate.map_or_else(|| "–".to_string(), |e| e.to_string()));
    out
}

fn db_error(error: tokio_postgres::Error) -> HttpError {
    tracing::warn!(error = %crate::logging::Chain(&error), "a dashboard query failed");
    HttpError::from(Unavailable)
}

/// `GET /`: every path by visits, site totals and the last 30 days.
pub async fn index(app: &App) -> Result<Response<Body>, HttpError> {
    let conn = app.db.reads()?;
    let today = time::today(app.config.utc_offset);
    let first = today - 29;
    let totals = conn
        .client
        .query_one(&conn.statements.site_totals, &[])
        .await
        .map_err(db_error)?;
    let (total_visits, path_count): (i64, i64) = (totals.get(0), totals.get(1));
    let series = daily_series(&conn, 0, first, today)
        .await
        .map_err(db_error)?;
    let recent_visits: i64 = series.iter().map(|(_, v)| v).sum();
    let histogram = conn
        .client
        .query(
            &conn.statements.spent_time_histogram,
            &[&0i32, &ALL_DAYS.0, &ALL_DAYS.1],
        )
        .await
        .map_err(db_error)?;
    let histogram = spent::Histogram::from_rows(&histogram, &conn.spent_time_bounds);
    let referrers = conn
        .client
        .query(
            &conn.statements.top_referrers,
            &[&0i32, &(first as i32), &(today as i32), &TOP_REFERRERS],
        )
        .await
        .map_err(db_error)?;
    let paths = conn
        .client
        .query(&conn.statements.paths_by_visits, &[])
        .await
        .map_err(db_error)?;

    let (bars, _) = bars_for(&series);
    let description = format!(
        "{recent_visits} visits from {} to {}",
        time::iso_date(first),
        time::iso_date(today)
    );
    let chart = chart::bar_chart(
        "site",
        chart::WIDE,
        "Visits per day, last 30 days",
        &description,
        &bars,
        "No visits in the last 30 days",
    );
    let numbers = |n: i64| {
        let mut out = Html::new();
        out.count(n);
        out
    };
    let mut site = Html::new();
    site.text(app.config.tracked_origin.as_str());
    let getting_started = if path_count == 0 {
        getting_started(app)
    } else {
        Html::new()
    };
    let (content_before, content_after) = app.dashboard.index.render_around(
        &[
            ("site", &site),
            ("total_visits", &numbers(total_visits)),
            ("recent_visits", &numbers(recent_visits)),
            ("median", &duration_html(histogram.percentile(0.5))),
            ("path_count", &numbers(path_count)),
            ("chart", &chart),
            ("getting_started", &getting_started),
            ("referrers", &referrer_table(&referrers, recent_visits)),
        ],
        "rows",
    );
    let (page_before, page_after) = layout(app, "Dashboard");

    // The table can have tens of thousands of rows: stream it in chunks so memory stays
    // flat however many paths there are.
    let (response, mut chunks) = http::streamed(StatusCode::OK, http::TEXT_HTML);
    drop(conn);
    tokio::spawn(async move {
        chunks.buf().push_str(page_before.as_str());
        chunks.buf().push_str(content_before.as_str());
        let mut rows = Html::with_capacity(ROWS_PER_CHUNK * 160);
        for batch in paths.chunks(ROWS_PER_CHUNK) {
            for row in batch {
                let (path, visits): (&str, i64) = (row.get(0), row.get(1));
                rows.raw("<tr><td><a href=\"/stats?path=")
                    .url_component(&normalize::request_target(path))
                    .raw("\">")
                    .text(path)
                    .raw("</a></td><td class=\"num\">")
                    .count(visits)
                    .raw("</td></tr>\n");
            }
            chunks.buf().push_str(&rows.take());
            if chunks.flush_if_full().await.is_err() {
                return;
            }
        }
        if paths.is_empty() {
            chunks
                .buf()
                .push_str("<tr><td colspan=\"2\" class=\"empty-note\">No pages yet.</td></tr>");
        }
        chunks.buf().push_str(content_after.as_str());
        chunks.buf().push_str(page_after.as_str());
        let _ = chunks.finish().await;
    });
    Ok(secure(response))
}

/// The script tag to paste, shown until the first page is registered.
fn getting_started(app: &App) -> Html {
    let mut out = Html::new();
    out.raw("<section class=\"card\"><h2>Getting started</h2><p>Add this tag to every page of ")
        .text(app.config.tracked_origin.as_str())
        .raw(":</p><pre><code>&lt;script type=&quot;module&quot; src=&quot;")
        .text(&app.config.base_url)
        .raw("/count.js&quot;&gt;&lt;/script&gt;</code></pre><p>Pages appear here once a visitor has stayed ")
        .number(app.config.min_delay_secs)
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
            out.raw("<a href=\"/stats?path=")
                .url_component(&normalize::request_target(path))
                .raw("&amp;range=")
                .text(range.key)
                .raw("\">")
                .text(range.label)
                .raw("</a>\n");
        }
    }
    out
}

/// `GET /stats?path=PATH[&range=30d]`. PATH is in the form count.js sends (the browser's
/// percent-encoded pathname), which links from the dashboard reproduce with
/// `normalize::request_target`, so every stored path, `?` and `%` included, has a working link.
pub async fn stats(app: &App, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let bad = |e: query::DecodeError| HttpError::bad_request(format!("query parameter is {e}"));
    let raw_path = query::param(uri.query(), "path")
        .map_err(bad)?
        .ok_or_else(|| HttpError::bad_request("missing query parameter: path"))?;
    let path =
        normalize::normalize(&raw_path).map_err(|e| HttpError::bad_request(e.to_string()))?;
    let range = match query::param(uri.query(), "range").map_err(bad)? {
        None => DEFAULT_RANGE,
        Some(key) => RANGES.into_iter().find(|r| r.key == key).ok_or_else(|| {
            HttpError::bad_request("unknown range: use 7d, 30d, 90d, 365d or all")
        })?,
    };

    let conn = app.db.reads()?;
    let row = conn
        .client
        .query_opt(&conn.statements.path_by_name, &[&path])
        .await
        .map_err(db_error)?;
    let Some(row) = row else {
        return Err(HttpError::not_found(
            "No page with this path has been registered.",
        ));
    };
    let (scope, total_visits): (i32, i64) = (row.get(0), row.get(1));
    let today = time::today(app.config.utc_offset);
    let first = match range.days {
        Some(days) => today - (days - 1),
        None => {
            let row = conn
                .client
                .query_one(&conn.statements.first_day, &[&scope])
                .await
                .map_err(db_error)?;
            row.get::<_, Option<i64>>(0).unwrap_or(today).min(today)
        }
    };
    let series = daily_series(&conn, scope, first, today)
        .await
        .map_err(db_error)?;
    let range_visits: i64 = series.iter().map(|(_, v)| v).sum();
    let day_bounds = [
        &scope as &(dyn tokio_postgres::types::ToSql + Sync),
        &(first as i32),
        &(today as i32),
    ];
    let referrers = conn
        .client
        .query(
            &conn.statements.top_referrers,
            &[day_bounds[0], day_bounds[1], day_bounds[2], &TOP_REFERRERS],
        )
        .await
        .map_err(db_error)?;
    let histogram = conn
        .client
        .query(&conn.statements.spent_time_histogram, &day_bounds)
        .await
        .map_err(db_error)?;
    let histogram = spent::Histogram::from_rows(&histogram, &conn.spent_time_bounds);
    drop(conn);

    let (bars, unit) = bars_for(&series);
    let description = format!(
        "{range_visits} visits from {} to {}",
        time::iso_date(first),
        time::iso_date(today)
    );
    let chart = chart::bar_chart(
        "visits",
        chart::WIDE,
        &format!("Visits per {unit}, {}", range.label),
        &description,
        &bars,
        "No visits in this range",
    );
    let spent_bars = histogram.bars();
    let spent_chart = chart::bar_chart(
        "spent",
        chart::NARROW,
        "Visits by time on page",
        &format!("{} visits reported their time on page", histogram.total()),
        &spent_bars,
        "No times reported in this range",
    );
    let text = |value: &str| {
        let mut out = Html::new();
        out.text(value);
        out
    };
    let numbers = |n: i64| {
        let mut out = Html::new();
        out.count(n);
        out
    };
    let content = app.dashboard.stats.render(&[
        ("path", &text(&path)),
        ("ranges", &range_nav(&path, range)),
        ("range_visits", &numbers(range_visits)),
        ("range_label", &text(range.label)),
        ("total_visits", &numbers(total_visits)),
        ("median", &duration_html(histogram.percentile(0.5))),
        ("p90", &duration_html(histogram.percentile(0.9))),
        ("chart", &chart),
        (
            "chart_caption",
            &text(&format!("Visits per {unit}, {}", range.label)),
        ),
        ("referrers", &referrer_table(&referrers, range_visits)),
        ("spent_chart", &spent_chart),
        ("spent_count", &numbers(histogram.total())),
    ]);
    Ok(page(app, StatusCode::OK, &path, &content))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let pages = Pages::new();
        let page: Vec<_> = pages.page.slots().collect();
        assert_eq!(
            page,
            ["title", "css_version", "site", "content", "min_delay"]
        );
        let index: Vec<_> = pages.index.slots().collect();
        assert_eq!(
            index,
            [
                "site",
                "total_visits",
                "recent_visits",
                "median",
                "path_count",
                "chart",
                "getting_started",
                "rows",
                "referrers"
            ]
        );
        let stats: Vec<_> = pages.stats.slots().collect();
        assert_eq!(
            stats,
            [
                "path",
                "ranges",
                "range_visits",
                "range_label",
                "total_visits",
                "median",
                "p90",
                "chart",
                "chart_caption",
                "referrers",
                "spent_chart",
                "range_label",
                "spent_count"
            ]
        );
    }

    #[test]
    fn range_links_encode_the_path() {
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
        assert!(!nav.as_str().contains("<x>"));
    }
}

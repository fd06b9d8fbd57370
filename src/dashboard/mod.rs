//! The HTML dashboard: `/` (every path, site totals, a chart) and `/stats?path=` (one path
//! over a chosen range). Pages read the per-day counters the database maintains, never
//! every visit, and stay useful without JavaScript (ranges are plain links, charts are SVG).
//! The handlers here gather data; `render` turns it into HTML.

pub mod chart;
pub mod html;
pub mod render;
pub mod spent;

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode, Uri};

use crate::App;
use crate::db::{Conn, Unavailable};
use crate::http::{self, Body, HttpError};
use crate::paths;
use crate::query;
use crate::time;
use html::Html;
use render::{Context, IndexData, Referrers, StatsData};

pub use render::Pages;

/// No script, no frames, nothing from elsewhere: styles from us, the favicon is a data URL.
const CONTENT_SECURITY_POLICY: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; style-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'",
);
/// Rows of the path table rendered per streamed chunk.
const ROWS_PER_CHUNK: usize = 200;
const TOP_REFERRERS: i64 = 20;
/// A day range wider than any data (about ±2,700 years) that PostgreSQL's dates still hold.
const ALL_DAYS: (i32, i32) = (-1_000_000, 1_000_000);

fn context(app: &App) -> Context<'_> {
    Context {
        site: app.config.tracked_origin.as_str(),
        base_url: &app.config.base_url,
        min_delay_secs: app.config.min_delay_secs,
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

fn html_response(status: StatusCode, page: Html) -> Response<Body> {
    secure(http::with_body(status, http::TEXT_HTML, page.into_string()))
}

/// An error as a complete HTML page.
pub fn error_page(app: &App, error: HttpError) -> Response<Body> {
    let heading = match error.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Bad request",
        StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
        _ => "Something went wrong",
    };
    let page = app
        .dashboard
        .message(&context(app), heading, &error.message);
    error.finish(html_response(error.status, page))
}

fn db_error(error: tokio_postgres::Error) -> HttpError {
    tracing::warn!(error = %crate::logging::Chain(&error), "a dashboard query failed");
    HttpError::from(Unavailable)
}

/// Visits per day from `first` to `last` (inclusive), zeros filled in.
async fn daily_series(
    conn: &Conn,
    scope: i32,
    first: i64,
    last: i64,
) -> Result<Vec<(i64, i64)>, HttpError> {
    let bounds = (first as i32, last as i32);
    let rows = conn
        .client
        .query(
            &conn.statements.daily_visits,
            &[&scope, &bounds.0, &bounds.1],
        )
        .await
        .map_err(db_error)?;
    let mut series: Vec<(i64, i64)> = (first..=last).map(|day| (day, 0)).collect();
    for row in rows {
        let (day, visits): (i64, i64) = (row.get(0), row.get(1));
        if let Some(slot) = series.get_mut((day - first) as usize) {
            slot.1 = visits;
        }
    }
    Ok(series)
}

async fn referrers(conn: &Conn, scope: i32, first: i32, last: i32) -> Result<Referrers, HttpError> {
    let rows = conn
        .client
        .query(
            &conn.statements.top_referrers,
            &[&scope, &first, &last, &TOP_REFERRERS],
        )
        .await
        .map_err(db_error)?;
    Ok(Referrers {
        top: rows.iter().map(|row| (row.get(0), row.get(1))).collect(),
        total: rows.first().map_or(0, |row| row.get(2)),
    })
}

async fn histogram(
    conn: &Conn,
    scope: i32,
    first: i32,
    last: i32,
) -> Result<spent::Histogram, HttpError> {
    let rows = conn
        .client
        .query(
            &conn.statements.spent_time_histogram,
            &[&scope, &first, &last],
        )
        .await
        .map_err(db_error)?;
    Ok(spent::Histogram::from_rows(&rows, &conn.spent_time_bounds))
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
    let data = IndexData {
        total_visits: totals.get(0),
        path_count: totals.get(1),
        series: daily_series(&conn, 0, first, today).await?,
        histogram: histogram(&conn, 0, ALL_DAYS.0, ALL_DAYS.1).await?,
        referrers: referrers(&conn, 0, first as i32, today as i32).await?,
    };
    drop(conn);
    let (paths, permit) = app.all_paths().await?;
    let (before, after) = app.dashboard.index(&context(app), &data);

    // The table can have tens of thousands of rows: stream it in chunks so memory stays
    // flat however many paths there are.
    let (response, mut chunks) = http::streamed(StatusCode::OK, http::TEXT_HTML);
    tokio::spawn(async move {
        let _permit = permit;
        chunks.buf().push_str(before.as_str());
        let mut rows = Html::with_capacity(ROWS_PER_CHUNK * 160);
        let mut remaining = paths.iter().peekable();
        while remaining.peek().is_some() {
            render::path_rows(&mut rows, remaining.by_ref().take(ROWS_PER_CHUNK));
            chunks.buf().push_str(&rows.take());
            if chunks.flush_if_full().await.is_err() {
                return;
            }
        }
        if paths.is_empty() {
            chunks.buf().push_str(render::NO_PATHS_ROW);
        }
        chunks.buf().push_str(after.as_str());
        let _ = chunks.finish().await;
    });
    Ok(secure(response))
}

/// `GET /stats?path=PATH[&range=30d]`, PATH in the form count.js sends it.
pub async fn stats(app: &App, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let path = paths::path_from_query(uri.query())?;
    let range = match query::param(uri.query(), "range")? {
        None => render::DEFAULT_RANGE,
        Some(key) => render::RANGES
            .into_iter()
            .find(|r| r.key == key)
            .ok_or_else(|| {
                HttpError::bad_request("unknown range: use 7d, 30d, 90d, 365d or all")
            })?,
    };

    let conn = app.db.reads()?;
    let (scope, total_visits) = conn
        .find_path(&path)
        .await
        .map_err(db_error)?
        .ok_or_else(|| HttpError::not_found("No page with this path has been registered."))?;
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
    let data = StatsData {
        series: daily_series(&conn, scope, first, today).await?,
        referrers: referrers(&conn, scope, first as i32, today as i32).await?,
        histogram: histogram(&conn, scope, first as i32, today as i32).await?,
        path,
        range,
        total_visits,
    };
    drop(conn);
    Ok(html_response(
        StatusCode::OK,
        app.dashboard.stats(&context(app), &data),
    ))
}

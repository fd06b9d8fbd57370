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
use crate::db::Unavailable;
use crate::db::rollups::Scope;
use crate::http::{self, Body, HttpError};
use crate::insights::pages::Sort;
use crate::insights::{self, Range};
use crate::paths;
use crate::query;
use html::Html;
use render::{Context, IndexData, Referrers, StatsData};

pub use render::Pages;

/// No script, no frames, nothing from elsewhere: styles from us, the favicon is a data URL.
const CONTENT_SECURITY_POLICY: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; style-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'",
);
/// Paths listed on the index.
const PATHS_SHOWN: usize = 100;
const TOP_REFERRERS: i64 = 20;

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

/// Visits per day of a range, for the charts.
async fn series(app: &App, scope: Scope, range: Range) -> Result<Vec<(i64, i64)>, HttpError> {
    let days = insights::daily(&app.db, scope, range).await?;
    Ok(days
        .iter()
        .map(|d| (i64::from(d.day.days()), d.visits))
        .collect())
}

async fn referrers(
    app: &App,
    scope: Scope,
    range: Range,
    visits: i64,
) -> Result<Referrers, HttpError> {
    let hosts = insights::referrers(&app.db, scope, range, TOP_REFERRERS, TOP_REFERRERS).await?;
    let mut top: Vec<(String, i64)> = hosts.into_iter().flat_map(|h| h.referrers).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(TOP_REFERRERS as usize);
    let total = visits.min(top.iter().map(|r| r.1).sum::<i64>().max(0));
    Ok(Referrers { top, total })
}

/// `GET /`: site totals, the last 30 days, and the most visited paths.
pub async fn index(app: &App, _uri: &Uri) -> Result<Response<Body>, HttpError> {
    let today = app.days.today().day;
    let range = Range::ending(today, 30);
    let all_time = Range::ending(today, insights::MAX_RANGE_DAYS);
    let summary = insights::summary(&app.db, Scope::Site, all_time).await?;
    let page = app
        .pages
        .page(
            &app.db,
            app.registry.len(),
            range,
            Sort::Visits,
            0,
            PATHS_SHOWN,
        )
        .await?;
    let data = IndexData {
        total_visits: summary.current.visits,
        path_count: app.registry.len() as i64,
        series: series(app, Scope::Site, range).await?,
        histogram: spent::Histogram::from_insights(&summary.current.histogram),
        referrers: referrers(app, Scope::Site, range, summary.current.visits).await?,
    };
    let (mut before, after) = app.dashboard.index(&context(app), &data);
    let mut rows = Html::new();
    render::path_rows(
        &mut rows,
        page.rows.iter().map(|row| (row.path.as_str(), row.visits)),
    );
    if page.rows.is_empty() {
        rows.raw(render::NO_PATHS_ROW);
    }
    before.append(&rows).append(&after);
    Ok(html_response(StatusCode::OK, before))
}

/// `GET /stats?path=PATH[&range=30d]`, PATH in the form count.js sends it.
pub async fn stats(app: &App, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let path = paths::path_from_query(uri.query())?;
    let range_choice = match query::param(uri.query(), "range")? {
        None => render::DEFAULT_RANGE,
        Some(key) => render::RANGES
            .into_iter()
            .find(|r| r.key == key)
            .ok_or_else(|| {
                HttpError::bad_request("unknown range: use 7d, 30d, 90d, 365d or all")
            })?,
    };
    let found = app
        .db
        .reads()?
        .find_path(&path)
        .await
        .map_err(Unavailable::from)?
        .ok_or_else(|| HttpError::not_found("No page with this path has been registered."))?;
    let today = app.days.today().day;
    let days = range_choice
        .days
        .unwrap_or(i64::from(insights::MAX_RANGE_DAYS)) as i32;
    let range = Range::ending(today, days);
    let scope = Scope::Path(found.id);
    let summary = insights::summary(&app.db, scope, range).await?;
    let data = StatsData {
        series: series(app, scope, range).await?,
        referrers: referrers(app, scope, range, summary.current.visits).await?,
        histogram: spent::Histogram::from_insights(&summary.current.histogram),
        path,
        range: range_choice,
        total_visits: found.visits,
    };
    Ok(html_response(
        StatusCode::OK,
        app.dashboard.stats(&context(app), &data),
    ))
}

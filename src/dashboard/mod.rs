//! The HTML dashboard: `/` (the whole site) and `/stats?path=` (one path), over a range
//! chosen with presets or custom dates (SPEC §2, §9).
//!
//! Pages read only the roll-ups through `insights`: per scope a handful of single-scope
//! queries (the period and the one before, the days, referrers, campaigns), run at once,
//! plus one page of the cached pages table. Nothing reads every path or every visit, so a
//! page costs the same for ten paths as for a hundred thousand. The handlers here gather the
//! data; `render` turns it into one HTML buffer. Pages stay useful without JavaScript:
//! ranges are links and a GET form, charts are SVG, details expand with `<details>`.

pub mod chart;
pub mod format;
pub mod html;
pub mod render;
pub mod selection;

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode, Uri};
use tokio::sync::Semaphore;

use crate::App;
use crate::db::Unavailable;
use crate::db::rollups::Scope;
use crate::http::{self, Body, HttpError};
use crate::insights;
use crate::paths;
use html::Html;
use render::{Context, IndexData, Overview, StatsData};
use selection::{PAGE_ROWS, Selection};

pub use render::Pages;

/// No script, no frames, nothing from elsewhere: styles from us, the favicon is a data URL,
/// and the custom-range form may only submit to this tracker.
const CONTENT_SECURITY_POLICY: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; style-src 'self'; img-src data:; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'",
);

/// Pages gathered and written at once; more wait their turn. A year of a large site is
/// 200 KB of HTML plus the figures behind it: eight at once took the process 1.4 MB past
/// its memory bar, and on two cores more than two at once only wait for each other anyway
/// (measured with `benches/load`: the same pages per second either way).
static TURNS: Semaphore = Semaphore::const_new(2);

/// Waits for a turn to build a page. The semaphore is never closed, so this never fails.
async fn turn() -> Option<tokio::sync::SemaphorePermit<'static>> {
    TURNS.acquire().await.ok()
}

fn context(app: &App) -> Context<'_> {
    Context {
        site: app.config.tracked_origin.as_str(),
        base_url: &app.config.base_url,
        min_delay_secs: app.config.min_delay_secs,
    }
}

/// Headers every dashboard page carries. A private dashboard's `Cache-Control` is replaced
/// by the router (`private, no-store`).
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

/// An error as a complete HTML page (the router's 400, 401, 404, 405 and 503 pages).
pub fn error_page(app: &App, error: HttpError) -> Response<Body> {
    let heading = match error.status {
        StatusCode::BAD_REQUEST => "Bad request",
        StatusCode::UNAUTHORIZED => "Sign-in required",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed",
        StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
        _ => "Something went wrong",
    };
    let page = app
        .dashboard
        .message(&context(app), heading, &error.message);
    error.finish(html_response(error.status, page))
}

/// What both pages show about `scope`, its queries run at once.
async fn overview(
    app: &App,
    scope: Scope,
    selection: Selection,
    today: crate::time::Day,
) -> Result<Overview, Unavailable> {
    let range = selection.range;
    let (summary, days, hosts, campaigns) = tokio::try_join!(
        insights::summary(&app.db, scope, range),
        insights::daily(&app.db, scope, range),
        insights::referrers(
            &app.db,
            &app.insights,
            scope,
            range,
            render::HOSTS,
            render::REFERRERS_PER_HOST
        ),
        insights::campaigns(&app.db, &app.insights, scope, range, render::CAMPAIGNS),
    )?;
    Ok(Overview {
        today,
        selection,
        summary,
        days,
        hosts,
        campaigns,
    })
}

/// `GET /[?range|from&to][&sort][&page]`: the whole site.
pub async fn index(app: &App, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let _turn = turn().await;
    let today = app.days.today().day;
    let selection = Selection::parse(uri.query(), today)?;
    let (overview, pages) = tokio::try_join!(
        overview(app, Scope::Site, selection, today),
        app.pages.page(
            &app.db,
            app.registry.len(),
            selection.range,
            selection.sort,
            selection.offset(),
            PAGE_ROWS
        ),
    )?;
    let data = IndexData {
        getting_started: pages.total == 0 && app.registry.is_empty(),
        live: app.live.now(app),
        overview,
        pages,
    };
    Ok(html_response(
        StatusCode::OK,
        app.dashboard.index(&context(app), &data),
    ))
}

/// `GET /stats?path=PATH[&range|from&to]`, PATH in the form count.js sends it.
pub async fn stats(app: &App, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let path = paths::path_from_query(uri.query())?;
    let today = app.days.today().day;
    let selection = Selection::parse(uri.query(), today)?;
    let _turn = turn().await;
    let found = app
        .db
        .reads()?
        .find_path(&path)
        .await
        .map_err(Unavailable::from)?
        .ok_or_else(|| HttpError::not_found("No page with this path has been registered."))?;
    let overview = overview(app, Scope::Path(found.id), selection, today).await?;
    let live_visitors = app
        .live
        .now(app)
        .paths
        .iter()
        .find(|(open, _)| *open == path)
        .map_or(0, |(_, visitors)| *visitors);
    let data = StatsData {
        path,
        overview,
        live_visitors,
    };
    Ok(html_response(
        StatusCode::OK,
        app.dashboard.stats(&context(app), &data),
    ))
}

//! The JSON API (SPEC §2, §9). Errors are `{"error": "…"}` with the status that says why.
//!
//! Small answers (a summary, a year of days, a page of the pages table) are built whole with
//! serde. Lists without a bound (`/api/counts`, `/api/history`, `/api/export`) are streamed:
//! each chunk is its own short query (keyset pagination), so a client reading slowly holds no
//! transaction, no snapshot and no connection; memory per response stays at a chunk; and a
//! client reading below the minimum rate is cut (see `http::Chunks`).

use std::fmt::Write as _;

use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use serde::Serialize;

use crate::App;
use crate::db::rollups::{DayCounts, Scope};
use crate::db::visits::{Cursor, ExportedVisit, RawVisit, Span};
use crate::db::{Db, Unavailable};
use crate::forwarded::Peer;
use crate::http::{self, Body, Chunks, HttpError};
use crate::insights::pages::Sort;
use crate::insights::{self, Estimate, Period, Range};
use crate::paths;
use crate::query;
use crate::streams::StreamPermit;
use crate::time;

/// Rows per query of a streamed list.
const CHUNK_ROWS: i64 = 1000;
/// Defaults and bounds of the list endpoints.
const PAGES_LIMIT: (i64, i64) = (100, 1000);
const HOSTS_LIMIT: (i64, i64) = (100, 1000);
const REFERRERS_PER_HOST: i64 = 100;
const CAMPAIGNS_LIMIT: (i64, i64) = (100, 1000);

/// The OpenAPI 3.1 description of every `/api/` endpoint.
const OPENAPI: &str = include_str!("../assets/openapi.json");

/// An API error: the status and `{"error": "…"}`.
pub fn error(error: HttpError) -> Response<Body> {
    let body = serde_json::json!({ "error": error.message }).to_string();
    error.finish(http::json(error.status, body))
}

/// API answers are fresh on every request (browsers revalidate, nothing stores them long).
fn no_cache(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn json_body(value: &impl Serialize) -> Result<Response<Body>, HttpError> {
    let body = serde_json::to_vec(value).map_err(|error| {
        tracing::error!(%error, "could not serialise an API answer");
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })?;
    Ok(no_cache(http::json(StatusCode::OK, body)))
}

/// The registered path named by the `path` query parameter: its id and total visits.
async fn find_path(
    db: &Db,
    query: Option<&str>,
) -> Result<(String, crate::db::paths::Found), HttpError> {
    let path = paths::path_from_query(query)?;
    let found = db
        .reads()?
        .find_path(&path)
        .await
        .map_err(Unavailable::from)?;
    let found = found.ok_or_else(|| HttpError::not_found("unknown path"))?;
    Ok((path, found))
}

/// The scope named by an optional `path` parameter: the site without one.
async fn scope(db: &Db, query: Option<&str>) -> Result<(Option<String>, Scope), HttpError> {
    if query::param(query, "path")?.is_none() {
        return Ok((None, Scope::Site));
    }
    let (path, found) = find_path(db, query).await?;
    Ok((Some(path), Scope::Path(found.id)))
}

fn range(app: &App, uri: &Uri) -> Result<Range, HttpError> {
    Range::from_query(uri.query(), app.days.today().day)
}

/// Seconds, whole: the median is an estimate from histogram buckets.
fn seconds(estimate: Option<Estimate>) -> Option<i64> {
    estimate.map(|e| e.seconds.round() as i64)
}

#[derive(Serialize)]
struct PeriodJson {
    from: String,
    to: String,
    views: i64,
    visits: i64,
    visitors: i64,
    engagement: Option<f64>,
    median_spent_seconds: Option<i64>,
}

impl From<&Period> for PeriodJson {
    fn from(period: &Period) -> PeriodJson {
        PeriodJson {
            from: period.range.first.to_string(),
            to: period.range.last.to_string(),
            views: period.views,
            visits: period.visits,
            visitors: period.visitors,
            engagement: period.engagement(),
            median_spent_seconds: seconds(period.median_spent()),
        }
    }
}

/// `GET /api/summary?from&to[&path]`.
pub async fn summary(app: &App, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let range = range(app, uri)?;
    let (path, scope) = scope(&app.db, uri.query()).await?;
    let summary = insights::summary(&app.db, scope, range).await?;
    #[derive(Serialize)]
    struct SummaryJson {
        path: Option<String>,
        current: PeriodJson,
        previous: PeriodJson,
    }
    json_body(&SummaryJson {
        path,
        current: (&summary.current).into(),
        previous: (&summary.previous).into(),
    })
}

#[derive(Serialize)]
struct DayJson {
    date: String,
    views: i64,
    visits: i64,
    visitors: i64,
}

impl From<&DayCounts> for DayJson {
    fn from(day: &DayCounts) -> DayJson {
        DayJson {
            date: day.day.to_string(),
            views: day.views,
            visits: day.visits,
            visitors: day.visitors,
        }
    }
}

/// `GET /api/daily?from&to[&path]`: every day of the range, zeros included.
pub async fn daily(app: &App, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let range = range(app, uri)?;
    let (_, scope) = scope(&app.db, uri.query()).await?;
    let days = insights::daily(&app.db, scope, range).await?;
    json_body(&days.iter().map(DayJson::from).collect::<Vec<_>>())
}

/// `GET /api/pages?from&to[&sort][&limit][&offset]`: largest first.
pub async fn pages(app: &App, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let query = uri.query();
    let range = range(app, uri)?;
    let sort = match query::param(query, "sort")? {
        None => Sort::Visits,
        Some(key) => Sort::parse(&key).ok_or_else(|| {
            HttpError::bad_request(
                "malformed `sort`: use visits, views, visitors, engagement, spent or path",
            )
        })?,
    };
    let limit = insights::limit_param(query, "limit", PAGES_LIMIT.0, PAGES_LIMIT.1)?;
    let offset = insights::number_param(query, "offset", 0, 0, i64::from(u32::MAX))?;
    let page = app
        .pages
        .page(
            &app.db,
            app.registry.len(),
            range,
            sort,
            offset as usize,
            limit as usize,
        )
        .await?;
    #[derive(Serialize)]
    struct PageJson {
        path: String,
        views: i64,
        visits: i64,
        visitors: i64,
        engagement: Option<f64>,
        median_spent_seconds: Option<i64>,
    }
    let rows: Vec<PageJson> = page
        .rows
        .into_iter()
        .map(|row| PageJson {
            engagement: row.engagement,
            median_spent_seconds: row.median_spent.map(|s| s.round() as i64),
            path: row.path,
            views: row.views,
            visits: row.visits,
            visitors: row.visitors,
        })
        .collect();
    let mut response = json_body(&rows)?;
    // The table's size, for paging through it.
    response
        .headers_mut()
        .insert("x-total-count", HeaderValue::from(page.total));
    Ok(response)
}

/// `GET /api/referrers?from&to[&path][&limit]`: hosts most visits first, each with up to a
/// hundred of its referring pages. Visits past the per-day bound on distinct referrers are
/// the host `null`.
pub async fn referrers(app: &App, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let range = range(app, uri)?;
    let limit = insights::limit_param(uri.query(), "limit", HOSTS_LIMIT.0, HOSTS_LIMIT.1)?;
    let (_, scope) = scope(&app.db, uri.query()).await?;
    let hosts = insights::referrers(
        &app.db,
        &app.insights,
        scope,
        range,
        limit,
        REFERRERS_PER_HOST,
    )
    .await?;
    #[derive(Serialize)]
    struct ReferrerJson<'a> {
        referrer: &'a str,
        visits: i64,
    }
    #[derive(Serialize)]
    struct HostJson<'a> {
        host: Option<&'a str>,
        visits: i64,
        referrers: Vec<ReferrerJson<'a>>,
    }
    json_body(
        &hosts
            .iter()
            .map(|host| HostJson {
                host: host.host.as_deref(),
                visits: host.visits,
                referrers: host
                    .referrers
                    .iter()
                    .map(|(referrer, visits)| ReferrerJson {
                        referrer,
                        visits: *visits,
                    })
                    .collect(),
            })
            .collect::<Vec<_>>(),
    )
}

/// `GET /api/campaigns?from&to[&path][&limit]`.
pub async fn campaigns(app: &App, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let range = range(app, uri)?;
    let limit = insights::limit_param(uri.query(), "limit", CAMPAIGNS_LIMIT.0, CAMPAIGNS_LIMIT.1)?;
    let (_, scope) = scope(&app.db, uri.query()).await?;
    let campaigns = insights::campaigns(&app.db, &app.insights, scope, range, limit).await?;
    #[derive(Serialize)]
    struct CampaignJson<'a> {
        source: Option<&'a str>,
        medium: Option<&'a str>,
        campaign: Option<&'a str>,
        visits: i64,
    }
    json_body(
        &campaigns
            .iter()
            .map(|c| CampaignJson {
                source: c.source.as_deref(),
                medium: c.medium.as_deref(),
                campaign: c.campaign.as_deref(),
                visits: c.visits,
            })
            .collect::<Vec<_>>(),
    )
}

/// `GET /api/live`: pages open now, from the visitor slots (and what other instances
/// published); no database query.
pub async fn live(app: &App) -> Result<Response<Body>, HttpError> {
    let live = app.live.now(app);
    #[derive(Serialize)]
    struct PathJson<'a> {
        path: &'a str,
        visitors: i64,
    }
    #[derive(Serialize)]
    struct LiveJson<'a> {
        visitors: i64,
        paths: Vec<PathJson<'a>>,
    }
    json_body(&LiveJson {
        visitors: live.visitors,
        paths: live
            .paths
            .iter()
            .map(|(path, visitors)| PathJson {
                path,
                visitors: *visitors,
            })
            .collect(),
    })
}

/// `/api/openapi.json`, with this build's version, served from memory with an ETag.
pub fn openapi_document() -> http::Cached {
    http::Cached::new(
        OPENAPI.replace("__OXITRAFFIC_VERSION__", env!("CARGO_PKG_VERSION")),
        http::APPLICATION_JSON,
        HeaderValue::from_static("public, max-age=300"),
    )
}

/// JSON string escaping for hand-written streams: quotes, backslashes and control
/// characters, everything else (valid UTF-8 already) as it is.
pub fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    let mut rest = value;
    while let Some(position) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ') {
        out.push_str(&rest[..position]);
        let c = rest.as_bytes()[position];
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{:04x}", c);
            }
        }
        rest = &rest[position + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

fn push_optional(out: &mut String, value: Option<&str>) {
    match value {
        Some(value) => push_json_string(out, value),
        None => out.push_str("null"),
    }
}

/// Appends `{"path":…,"count":…}`.
pub fn push_count(out: &mut String, path: &str, count: i64) {
    out.push_str("{\"path\":");
    push_json_string(out, path);
    let _ = write!(out, ",\"count\":{count}}}");
}

/// Appends one visit of a history.
pub fn push_visit(out: &mut String, visit: &RawVisit) {
    out.push('{');
    push_visit_fields(out, visit);
    out.push('}');
}

/// The fields every raw visit shows, in the history and in the NDJSON export.
fn push_visit_fields(out: &mut String, visit: &RawVisit) {
    out.push_str("\"registered_at\":\"");
    time::write_rfc3339(out, visit.unix_secs, visit.offset_secs);
    out.push_str("\",\"referrer\":");
    push_optional(out, visit.referrer.as_deref());
    out.push_str(",\"spent_time_seconds\":");
    match visit.spent_time_seconds {
        Some(seconds) => {
            let _ = write!(out, "{seconds}");
        }
        None => out.push_str("null"),
    }
}

/// A permit for one streamed download, or the 503 that says to come back.
fn stream_permit<B>(
    app: &App,
    request: &Request<B>,
    peer: Peer,
) -> Result<StreamPermit, HttpError> {
    app.streams
        .try_acquire(app.client_bucket(request.headers(), peer))
        .ok_or_else(|| HttpError::unavailable("too many downloads at once, try again shortly"))
}

/// Ends a streamed body as its producer left it: complete, failed (a database error midway:
/// the client sees an incomplete response, never a truncated one that looks whole), or
/// abandoned (the client went away).
async fn end_stream(chunks: Chunks, outcome: Result<(), Stop>) {
    match outcome {
        Ok(()) => {
            let _ = chunks.finish().await;
        }
        Err(Stop::Database) => chunks.abort().await,
        Err(Stop::ClientGone) => {}
    }
}

/// Why a stream stopped early.
enum Stop {
    ClientGone,
    Database,
}

impl From<http::ClientGone> for Stop {
    fn from(_: http::ClientGone) -> Stop {
        Stop::ClientGone
    }
}

impl From<Unavailable> for Stop {
    fn from(_: Unavailable) -> Stop {
        Stop::Database
    }
}

impl From<tokio_postgres::Error> for Stop {
    fn from(error: tokio_postgres::Error) -> Stop {
        tracing::warn!(error = %crate::logging::Chain(&error), "a streamed answer failed");
        Stop::Database
    }
}

/// `GET /api/counts`: `[{"path": "/", "count": 12}, …]`, every registered path with its
/// visits in all, alphabetically (keyset order: the paths' own index).
pub async fn counts<B>(
    app: &App,
    request: &Request<B>,
    peer: Peer,
) -> Result<Response<Body>, HttpError> {
    let permit = stream_permit(app, request, peer)?;
    app.db.reads()?;
    let db = app.db.clone();
    let (response, mut chunks) = http::streamed(StatusCode::OK, http::APPLICATION_JSON);
    tokio::spawn(async move {
        let _permit = permit;
        let outcome = write_counts(&db, &mut chunks).await;
        end_stream(chunks, outcome).await;
    });
    Ok(no_cache(response))
}

async fn write_counts(db: &Db, chunks: &mut Chunks) -> Result<(), Stop> {
    chunks.buf().push('[');
    let mut after = String::new();
    let mut first = true;
    loop {
        let chunk = db.reads()?.paths_after_name(&after, CHUNK_ROWS).await?;
        let Some(last) = chunk.last() else { break };
        after.clone_from(&last.path);
        for named in &chunk {
            if !first {
                chunks.buf().push(',');
            }
            first = false;
            push_count(chunks.buf(), &named.path, named.visits);
        }
        chunks.flush_if_full().await?;
    }
    chunks.buf().push(']');
    Ok(())
}

/// `GET /api/count?path=PATH`: the number of visits in all, `12`.
pub async fn count(app: &App, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let (_, found) = find_path(&app.db, uri.query()).await?;
    Ok(no_cache(http::json(
        StatusCode::OK,
        Bytes::from(found.visits.to_string()),
    )))
}

/// `GET /api/history?path=PATH`: every stored visit of a path in time order, streamed.
/// Timestamps carry the offset in force at their instant in the configured zone.
pub async fn history<B>(
    app: &App,
    request: &Request<B>,
    peer: Peer,
) -> Result<Response<Body>, HttpError> {
    let (_, found) = find_path(&app.db, request.uri().query()).await?;
    let permit = stream_permit(app, request, peer)?;
    let db = app.db.clone();
    let today = app.days.today();
    let mut head = String::from("{\"utc_offset\":\"");
    time::write_offset(
        &mut head,
        (i64::from(today.day.days()) * 86_400 - today.start) as i32,
    );
    head.push('"');
    if let Some(name) = app.days.zone().name() {
        head.push_str(",\"time_zone\":");
        push_json_string(&mut head, name);
    }
    head.push_str(",\"visits\":[");
    let (response, mut chunks) = http::streamed(StatusCode::OK, http::APPLICATION_JSON);
    tokio::spawn(async move {
        let _permit = permit;
        chunks.buf().push_str(&head);
        let outcome = write_history(&db, found.id, &mut chunks).await;
        end_stream(chunks, outcome).await;
    });
    Ok(no_cache(response))
}

async fn write_history(db: &Db, path_id: i32, chunks: &mut Chunks) -> Result<(), Stop> {
    let mut after = Cursor::start();
    let mut first = true;
    loop {
        let chunk = db
            .reads()?
            .history_chunk(path_id, after, CHUNK_ROWS)
            .await?;
        let Some((last, _)) = chunk.last() else { break };
        after = *last;
        for (_, visit) in &chunk {
            if !first {
                chunks.buf().push(',');
            }
            first = false;
            push_visit(chunks.buf(), visit);
        }
        chunks.flush_if_full().await?;
    }
    chunks.buf().push_str("]}");
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ExportFormat {
    Csv,
    Ndjson,
}

/// The CSV header of an export.
pub const EXPORT_COLUMNS: &str =
    "path,registered_at,referrer,spent_time_seconds,utm_source,utm_medium,utm_campaign";

/// Appends one CSV field: quoted when it holds a comma, quote or line break. A campaign value
/// (the only free text) that a spreadsheet would run as a formula gets a leading `'`.
fn push_csv(out: &mut String, value: Option<&str>, free_text: bool) {
    let Some(value) = value else { return };
    let formula = free_text && value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || value.contains([',', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

/// `GET /api/export?from&to[&path][&format=csv|ndjson]`: raw visits of the range, streamed.
pub async fn export<B>(
    app: &App,
    request: &Request<B>,
    peer: Peer,
) -> Result<Response<Body>, HttpError> {
    let uri = request.uri();
    let query = uri.query();
    let range = range(app, uri)?;
    let format = match query::param(query, "format")?.as_deref() {
        None | Some("csv") => ExportFormat::Csv,
        Some("ndjson") => ExportFormat::Ndjson,
        Some(_) => {
            return Err(HttpError::bad_request(
                "malformed `format`: use csv or ndjson",
            ));
        }
    };
    let (_, scope) = scope(&app.db, query).await?;
    let path_id = match scope {
        Scope::Site => None,
        Scope::Path(id) => Some(id),
    };
    let span = app
        .db
        .reads()?
        .day_span(range.first, range.last)
        .await
        .map_err(Unavailable::from)?;
    let permit = stream_permit(app, request, peer)?;
    let db = app.db.clone();
    let (content_type, extension) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Ndjson => ("application/x-ndjson", "ndjson"),
    };
    let (mut response, mut chunks) =
        http::streamed(StatusCode::OK, HeaderValue::from_static(content_type));
    tokio::spawn(async move {
        let _permit = permit;
        let outcome = write_export(&db, span, path_id, format, &mut chunks).await;
        end_stream(chunks, outcome).await;
    });
    let disposition = format!(
        "attachment; filename=\"oxitraffic-visits-{}-{}.{extension}\"",
        range.first, range.last
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(no_cache(response))
}

async fn write_export(
    db: &Db,
    span: Span,
    path_id: Option<i32>,
    format: ExportFormat,
    chunks: &mut Chunks,
) -> Result<(), Stop> {
    if format == ExportFormat::Csv {
        chunks.buf().push_str(EXPORT_COLUMNS);
        chunks.buf().push_str("\r\n");
    }
    let mut after = Cursor::before(span.start);
    loop {
        let chunk = db
            .reads()?
            .export_chunk(span.end, path_id, after, CHUNK_ROWS)
            .await?;
        let Some((last, _)) = chunk.last() else { break };
        after = *last;
        for (_, exported) in &chunk {
            match format {
                ExportFormat::Csv => push_csv_row(chunks.buf(), exported),
                ExportFormat::Ndjson => push_ndjson_row(chunks.buf(), exported),
            }
        }
        chunks.flush_if_full().await?;
    }
    Ok(())
}

fn push_csv_row(out: &mut String, exported: &ExportedVisit) {
    let visit = &exported.visit;
    let campaign = &exported.campaign;
    push_csv(out, Some(&exported.path), false);
    out.push(',');
    time::write_rfc3339(out, visit.unix_secs, visit.offset_secs);
    out.push(',');
    push_csv(out, visit.referrer.as_deref(), false);
    out.push(',');
    if let Some(seconds) = visit.spent_time_seconds {
        let _ = write!(out, "{seconds}");
    }
    for part in [&campaign.source, &campaign.medium, &campaign.campaign] {
        out.push(',');
        push_csv(out, part.as_deref(), true);
    }
    out.push_str("\r\n");
}

fn push_ndjson_row(out: &mut String, exported: &ExportedVisit) {
    let visit = &exported.visit;
    let campaign = &exported.campaign;
    out.push_str("{\"path\":");
    push_json_string(out, &exported.path);
    out.push(',');
    push_visit_fields(out, visit);
    for (name, part) in [
        ("utm_source", &campaign.source),
        ("utm_medium", &campaign.medium),
        ("utm_campaign", &campaign.campaign),
    ] {
        let _ = write!(out, ",\"{name}\":");
        push_optional(out, part.as_deref());
    }
    out.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_and_counts_are_valid_json() {
        let mut out = String::new();
        push_visit(
            &mut out,
            &RawVisit {
                unix_secs: 1_706_450_591,
                offset_secs: 7200,
                referrer: Some("https://e.example/\"\u{2028}".into()),
                spent_time_seconds: Some(42),
            },
        );
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["registered_at"], "2024-01-28T16:03:11+02:00");
        assert_eq!(value["referrer"], "https://e.example/\"\u{2028}");
        assert_eq!(value["spent_time_seconds"], 42);
        out.clear();
        push_json_string(&mut out, "a\\b\"c\n\u{1}é");
        assert_eq!(
            serde_json::from_str::<String>(&out).unwrap(),
            "a\\b\"c\n\u{1}é"
        );
        out.clear();
        push_count(&mut out, "/a\"b", i64::MIN);
        assert_eq!(out, r#"{"path":"/a\"b","count":-9223372036854775808}"#);
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        let field = |value, free| {
            let mut out = String::new();
            push_csv(&mut out, Some(value), free);
            out
        };
        assert_eq!(field("/blog", false), "/blog");
        assert_eq!(field("/a,b", false), "\"/a,b\"");
        assert_eq!(field("say \"hi\"", true), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(1)", true), "\"'=HYPERLINK(1)\"");
        assert_eq!(
            field("-5", false),
            "-5",
            "only campaign values are free text"
        );
        let mut out = String::new();
        push_csv(&mut out, None, true);
        assert_eq!(out, "");
    }

    #[test]
    fn the_openapi_document_is_json_and_describes_every_api_route() {
        let served = openapi_document();
        let document: serde_json::Value = serde_json::from_slice(served.body()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        for spec in crate::routes::TABLE {
            if let Some(path) = spec.pattern.strip_prefix("/api/") {
                assert!(
                    document["paths"][format!("/api/{path}")].is_object(),
                    "/api/{path} is not described"
                );
            }
        }
    }
}

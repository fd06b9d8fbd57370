//! The JSON API: `/api/counts`, `/api/count?path=` and `/api/history?path=`.
//!
//! Lists are streamed in chunks. The history of a path can hold millions of visits, so it is
//! read row by row on a connection of its own and written out as it arrives; the client's
//! pace sets the database's pace, and memory stays flat.

use std::time::SystemTime;

use futures_core::Stream;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode, Uri};

use crate::App;
use crate::db::Unavailable;
use crate::http::{self, Body, Chunks, HttpError};
use crate::paths::normalize;
use crate::query;
use crate::time;

/// History downloads at once; each holds a database connection.
pub const MAX_HISTORY_STREAMS: usize = 4;

/// An API error: the status and `{"error": "…"}`.
pub fn error(error: HttpError) -> Response<Body> {
    let body = serde_json::json!({ "error": error.message }).to_string();
    let mut response = http::json(error.status, body);
    if error.status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    }
    response
}

fn json_headers(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn db_error(error: tokio_postgres::Error) -> HttpError {
    tracing::warn!(error = %crate::logging::Chain(&error), "an API query failed");
    HttpError::from(Unavailable)
}

/// The normalised `path` query parameter.
fn path_param(uri: &Uri) -> Result<String, HttpError> {
    let raw = query::param(uri.query(), "path")
        .map_err(|e| HttpError::bad_request(format!("query parameter is {e}")))?
        .ok_or_else(|| HttpError::bad_request("missing query parameter: path"))?;
    normalize::normalize(&raw).map_err(|e| HttpError::bad_request(e.to_string()))
}

/// The id and total visits of a registered path.
async fn find_path(app: &App, path: &str) -> Result<(i32, i64), HttpError> {
    let conn = app.db.reads()?;
    let row = conn
        .client
        .query_opt(&conn.statements.path_by_name, &[&path])
        .await
        .map_err(db_error)?;
    let row = row.ok_or_else(|| HttpError::not_found("unknown path"))?;
    Ok((row.get(0), row.get(1)))
}

/// Appends `value` as a JSON string.
fn push_json_string(out: &mut String, value: &str) {
    out.push_str(&serde_json::to_string(value).expect("a string serialises"));
}

/// `GET /api/counts`: `[{"path": "/", "count": 12}, …]`, most visited first.
pub async fn counts(app: &App) -> Result<Response<Body>, HttpError> {
    let conn = app.db.reads()?;
    let rows = conn
        .client
        .query(&conn.statements.paths_by_visits, &[])
        .await
        .map_err(db_error)?;
    drop(conn);
    let (response, mut chunks) = http::streamed(StatusCode::OK, http::APPLICATION_JSON);
    tokio::spawn(async move {
        chunks.buf().push('[');
        for (index, row) in rows.iter().enumerate() {
            let (path, count): (&str, i64) = (row.get(0), row.get(1));
            let out = chunks.buf();
            if index > 0 {
                out.push(',');
            }
            out.push_str("{\"path\":");
            push_json_string(out, path);
            out.push_str(",\"count\":");
            out.push_str(&count.to_string());
            out.push('}');
            if chunks.flush_if_full().await.is_err() {
                return;
            }
        }
        chunks.buf().push(']');
        let _ = chunks.finish().await;
    });
    Ok(json_headers(response))
}

/// `GET /api/count?path=PATH`: the number of visits, `12`.
pub async fn count(app: &App, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let path = path_param(uri)?;
    let (_, visits) = find_path(app, &path).await?;
    Ok(json_headers(http::json(
        StatusCode::OK,
        Bytes::from(visits.to_string()),
    )))
}

/// `GET /api/history?path=PATH`: every visit in time order, streamed.
pub async fn history(app: &App, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let path = path_param(uri)?;
    let (path_id, _) = find_path(app, &path).await?;
    let Ok(permit) = app.history_streams.clone().try_acquire_owned() else {
        return Err(HttpError::unavailable(
            "too many history downloads at once, try again shortly",
        ));
    };
    let client = app.db.dedicated().await?;
    let rows = client
        .query_raw(
            "SELECT registered_at, referrer, spent_time_seconds FROM oxitraffic.visits
             WHERE path_id = $1 ORDER BY registered_at, id",
            [&path_id],
        )
        .await
        .map_err(db_error)?;
    let offset = app.config.utc_offset;
    let (response, mut chunks) = http::streamed(StatusCode::OK, http::APPLICATION_JSON);
    // The task holds the permit and the connection until the stream ends.
    tokio::spawn(async move {
        let _permit = permit;
        let _client = client;
        match write_history(rows, offset, &mut chunks).await {
            Ok(()) => {
                let _ = chunks.finish().await;
            }
            Err(Stop::Database) => chunks.abort().await,
            Err(Stop::ClientGone) => {}
        }
    });
    Ok(json_headers(response))
}

/// Why a history stream stopped early.
enum Stop {
    ClientGone,
    Database,
}

async fn write_history(
    rows: tokio_postgres::RowStream,
    offset: crate::config::UtcOffset,
    chunks: &mut Chunks,
) -> Result<(), Stop> {
    let mut rows = std::pin::pin!(rows);
    chunks.buf().push_str("{\"utc_offset\":\"");
    chunks.buf().push_str(&offset.to_string());
    chunks.buf().push_str("\",\"visits\":[");
    let mut first = true;
    loop {
        let row = match std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
            None => break,
            Some(Ok(row)) => row,
            Some(Err(error)) => {
                tracing::warn!(error = %crate::logging::Chain(&error), "a history stream failed");
                return Err(Stop::Database);
            }
        };
        let (registered_at, referrer, spent): (SystemTime, Option<&str>, Option<i32>) =
            (row.get(0), row.get(1), row.get(2));
        let out = chunks.buf();
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str("{\"registered_at\":\"");
        time::write_rfc3339(out, time::unix_seconds(registered_at), offset);
        out.push_str("\",\"referrer\":");
        match referrer {
            Some(referrer) => push_json_string(out, referrer),
            None => out.push_str("null"),
        }
        out.push_str(",\"spent_time_seconds\":");
        match spent {
            Some(seconds) => out.push_str(&seconds.to_string()),
            None => out.push_str("null"),
        }
        out.push('}');
        chunks.flush_if_full().await.map_err(|_| Stop::ClientGone)?;
    }
    chunks.buf().push_str("]}");
    Ok(())
}

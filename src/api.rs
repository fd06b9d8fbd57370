//! The JSON API: `/api/counts`, `/api/count?path=` and `/api/history?path=`.
//!
//! Lists are streamed in chunks. The history of a path can hold millions of visits, so it is
//! read row by row on a connection of its own and written out as it arrives; the client's
//! pace sets the database's pace, and memory stays flat.

use std::fmt::Write as _;
use std::time::SystemTime;

use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode, Uri};

use crate::App;
use crate::config::UtcOffset;
use crate::db::{self, Unavailable};
use crate::http::{self, Body, Chunks, HttpError};
use crate::paths;
use crate::time;

/// History downloads at once; each holds a database connection.
pub const MAX_HISTORY_STREAMS: usize = 4;

/// An API error: the status and `{"error": "…"}`.
pub fn error(error: HttpError) -> Response<Body> {
    let body = serde_json::json!({ "error": error.message }).to_string();
    error.finish(http::json(error.status, body))
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

/// The id and total visits of the registered path named by the `path` query parameter.
async fn find_path(app: &App, uri: &Uri) -> Result<(i32, i64), HttpError> {
    let path = paths::path_from_query(uri.query())?;
    let conn = app.db.reads()?;
    let found = conn.find_path(&path).await.map_err(db_error)?;
    found.ok_or_else(|| HttpError::not_found("unknown path"))
}

/// Appends `value` as a JSON string: quotes, backslashes and control characters escaped,
/// everything else (valid UTF-8 already) copied as it is.
fn push_json_string(out: &mut String, value: &str) {
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
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[usize::from(c >> 4)] as char);
                out.push(HEX[usize::from(c & 15)] as char);
            }
        }
        rest = &rest[position + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

/// Appends `{"path":…,"count":…}`.
pub fn push_count(out: &mut String, path: &str, count: i64) {
    out.push_str("{\"path\":");
    push_json_string(out, path);
    out.push_str(",\"count\":");
    // Writing into the String directly: no allocation per number.
    let _ = write!(out, "{count}");
    out.push('}');
}

/// Appends one visit of a history.
pub fn push_visit(
    out: &mut String,
    registered_at: i64,
    referrer: Option<&str>,
    spent: Option<i32>,
    offset: UtcOffset,
) {
    out.push_str("{\"registered_at\":\"");
    time::write_rfc3339(out, registered_at, offset);
    out.push_str("\",\"referrer\":");
    match referrer {
        Some(referrer) => push_json_string(out, referrer),
        None => out.push_str("null"),
    }
    out.push_str(",\"spent_time_seconds\":");
    match spent {
        Some(seconds) => {
            let _ = write!(out, "{seconds}");
        }
        None => out.push_str("null"),
    }
    out.push('}');
}

/// `GET /api/counts`: `[{"path": "/", "count": 12}, …]`, most visited first.
pub async fn counts(app: &App) -> Result<Response<Body>, HttpError> {
    let (paths, permit) = app.all_paths().await?;
    let (response, mut chunks) = http::streamed(StatusCode::OK, http::APPLICATION_JSON);
    tokio::spawn(async move {
        let _permit = permit;
        chunks.buf().push('[');
        for (index, (path, count)) in paths.iter().enumerate() {
            let out = chunks.buf();
            if index > 0 {
                out.push(',');
            }
            push_count(out, path, count);
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
    let (_, visits) = find_path(app, uri).await?;
    Ok(json_headers(http::json(
        StatusCode::OK,
        Bytes::from(visits.to_string()),
    )))
}

/// `GET /api/history?path=PATH`: every visit in time order, streamed.
pub async fn history(app: &App, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let (path_id, _) = find_path(app, uri).await?;
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
    offset: UtcOffset,
    chunks: &mut Chunks,
) -> Result<(), Stop> {
    let mut rows = std::pin::pin!(rows);
    chunks.buf().push_str("{\"utc_offset\":\"");
    chunks.buf().push_str(&offset.to_string());
    chunks.buf().push_str("\",\"visits\":[");
    let mut first = true;
    loop {
        let row = match db::next_row(rows.as_mut()).await {
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
        push_visit(
            out,
            time::unix_seconds(registered_at),
            referrer,
            spent,
            offset,
        );
        chunks.flush_if_full().await.map_err(|_| Stop::ClientGone)?;
    }
    chunks.buf().push_str("]}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_and_counts_are_valid_json() {
        let mut out = String::new();
        push_visit(
            &mut out,
            1_706_450_591,
            Some("https://e.example/\"\u{2028}"),
            Some(42),
            UtcOffset::from_minutes(120),
        );
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["registered_at"], "2024-01-28T16:03:11+02:00");
        assert_eq!(value["referrer"], "https://e.example/\"\u{2028}");
        out.clear();
        push_json_string(&mut out, "a\\b\"c\n\u{1}é");
        assert_eq!(
            serde_json::from_str::<String>(&out).unwrap(),
            "a\\b\"c\n\u{1}é"
        );
        assert_eq!(value["spent_time_seconds"], 42);
        out.clear();
        push_visit(&mut out, 0, None, None, UtcOffset::default());
        assert_eq!(
            out,
            r#"{"registered_at":"1970-01-01T00:00:00+00:00","referrer":null,"spent_time_seconds":null}"#
        );
        out.clear();
        push_count(&mut out, "/a\"b", i64::MIN);
        assert_eq!(out, r#"{"path":"/a\"b","count":-9223372036854775808}"#);
    }
}

//! The script endpoints: `/register`, `/post-sleep/TOKEN` and `/page-left/TOKEN/SECONDS`.

use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode, Uri};

use crate::App;
use crate::clock::TICKS_PER_SEC;
use crate::db::writer::{NewVisit, WriteError};
use crate::http::{self, Body, HttpError};
use crate::paths::{self, Refusal};
use crate::query;
use crate::referrer;
use crate::slots::{ClaimError, Pending, Token};

/// Longest time on a page we accept: a day of visible time.
pub const MAX_SPENT_SECONDS: u32 = 86_400;

fn no_store(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn parse_token(text: &str) -> Result<Token, HttpError> {
    Token::parse(text).ok_or_else(|| {
        HttpError::bad_request("malformed token: expected the number /register returned")
    })
}

impl From<WriteError> for HttpError {
    fn from(error: WriteError) -> HttpError {
        match error {
            WriteError::Unavailable => {
                HttpError::unavailable("database unavailable, try again shortly")
            }
            WriteError::Refused => HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the visit could not be stored",
            ),
        }
    }
}

/// `GET /register?path=PATH`: a token for a new pending visit of a known (or newly
/// validated) path.
pub async fn register(app: &App, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let path = paths::path_from_query(uri.query())?;
    // A known path is answered from memory; a new one is checked with the site once.
    let path_id = app
        .registry
        .resolve(&path, &app.db)
        .await
        .map_err(|refusal| match refusal {
            Refusal::NotOnSite => HttpError::not_found("path not found on the tracked site"),
            Refusal::LimitReached => {
                HttpError::not_found("path not tracked: the path limit is reached")
            }
            Refusal::Unavailable(reason) => HttpError::unavailable(reason),
        })?;
    let pending = Pending {
        path_id: path_id as u32,
        registered_at: app.clock.ticks_ceil(),
    };
    let token = app
        .slots
        .register(pending)
        .map_err(|_| HttpError::unavailable("too many visits are being counted right now"))?;
    Ok(no_store(http::json(
        StatusCode::OK,
        Bytes::from(token.get().to_string()),
    )))
}

/// `POST /post-sleep/TOKEN[?referrer=URL]`: counts the visit, once.
pub async fn post_sleep(app: &App, token: &str, uri: &Uri) -> Result<Response<Body>, HttpError> {
    let token = parse_token(token)?;
    let referrer = query::param(uri.query(), "referrer")?
        .and_then(|raw| referrer::clean(&raw, &app.config.tracked_origin));
    let min_delay = app.config.min_delay_secs * TICKS_PER_SEC;
    let claim = app
        .slots
        .claim(token, app.clock.ticks(), min_delay)
        .map_err(|error| match error {
            ClaimError::NotFound => {
                HttpError::not_found("unknown, expired or already counted token")
            }
            ClaimError::TooEarly { wait_ticks } => {
                HttpError::too_early(wait_ticks.div_ceil(TICKS_PER_SEC))
            }
        })?;
    let visit = NewVisit {
        token: token.get() as i64,
        path_id: claim.pending.path_id as i32,
        registered_at: app.clock.wall_time(claim.pending.registered_at),
        referrer,
    };
    // On failure the claim is dropped and the token stays usable for the script's retry.
    let visit_id = app.writer.insert(visit).await?;
    claim.counted(visit_id);
    Ok(no_store(http::text(StatusCode::OK, "counted\n")))
}

/// `POST /page-left/TOKEN/SECONDS`: the visible time of a counted visit; the latest wins.
pub async fn page_left(app: &App, token: &str, seconds: &str) -> Result<Response<Body>, HttpError> {
    let token = parse_token(token)?;
    let seconds = seconds
        .parse::<u32>()
        .ok()
        .filter(|s| *s <= MAX_SPENT_SECONDS && seconds.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            HttpError::bad_request(format!(
                "malformed seconds: expected a whole number from 0 to {MAX_SPENT_SECONDS}"
            ))
        })?;
    let visit_id = app
        .slots
        .counted_visit(token)
        .ok_or_else(|| HttpError::not_found("unknown, expired or not yet counted token"))?;
    app.writer.set_spent_time(visit_id, seconds as i32).await?;
    Ok(no_store(http::text(StatusCode::OK, "stored\n")))
}

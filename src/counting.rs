//! The script endpoints: `/register`, `/post-sleep/TOKEN` and `/page-left/TOKEN/SECONDS`.

use std::net::{IpAddr, Ipv4Addr};

use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};

use crate::App;
use crate::clients::RetryAfter;
use crate::clock::{self, TICKS_PER_SEC};
use crate::db::writer::{NewVisit, WriteError};
use crate::forwarded::{self, Peer};
use crate::http::{self, Body, HttpError};
use crate::paths::{self, Refusal};
use crate::query;
use crate::referrer;
use crate::slots::{ClaimError, LookupError, Pending, Token};

/// Longest time on a page we accept: a day of visible time.
pub const MAX_SPENT_SECONDS: u32 = 86_400;

fn no_store(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 421: the token belongs to another instance, which the load balancer should have asked.
fn other_instance() -> HttpError {
    HttpError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "token issued by another instance",
    )
}

/// 429: the client holds as many pending registrations as it may.
fn too_many_pending(RetryAfter(seconds): RetryAfter) -> Response<Body> {
    let mut response = http::text(
        StatusCode::TOO_MANY_REQUESTS,
        "too many pending visits from this address\n",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    no_store(response)
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
pub async fn register<B>(app: &App, request: &Request<B>) -> Result<Response<Body>, HttpError> {
    let path = paths::path_from_query(request.uri().query())?;
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
    // No proxy is trusted yet (`trusted_proxies` is a setting to come): the peer is the
    // client. Requests that did not come through the server's accept loop share a bucket.
    let peer = request
        .extensions()
        .get::<Peer>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.0);
    let client = app
        .clients
        .bucket(forwarded::client_ip(peer, request.headers(), |_| false));
    let tick = app.clock.ticks_ceil();
    if let Err(retry_after) = app.clients.acquire(client, tick) {
        return Ok(too_many_pending(retry_after));
    }
    let pending = Pending {
        path: path_id as u32,
        tick,
        wall_secs: clock::wall_secs(),
        client,
    };
    let registered = app.slots.register(pending).map_err(|_| {
        app.clients.release(client, tick);
        HttpError::unavailable("too many visits are pending right now")
    })?;
    if let Some(evicted) = registered.evicted {
        app.clients.release(evicted, tick);
    }
    Ok(no_store(http::json(
        StatusCode::OK,
        Bytes::from(registered.token.get().to_string()),
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
            ClaimError::OtherInstance(_) => other_instance(),
        })?;
    let pending = claim.pending();
    let visit = NewVisit {
        token: token.get() as i64,
        path_id: pending.path as i32,
        registered_at: clock::wall_time(pending.wall_secs),
        referrer,
    };
    // On failure the claim is dropped and the token stays usable for the script's retry.
    let visit_id = app.writer.insert(visit).await?;
    claim.counted(visit_id);
    app.clients.release(pending.client, app.clock.ticks());
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
    let visit_id = app.slots.page_left(token).map_err(|error| match error {
        LookupError::NotFound => HttpError::not_found("unknown, expired or not yet counted token"),
        LookupError::OtherInstance(_) => other_instance(),
    })?;
    app.writer.set_spent_time(visit_id, seconds as i32).await?;
    Ok(no_store(http::text(StatusCode::OK, "stored\n")))
}

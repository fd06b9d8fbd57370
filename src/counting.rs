//! The script endpoints: `/register`, `/visitor`, `/post-sleep/TOKEN` and
//! `/page-left/TOKEN/SECONDS`.
//!
//! Visitors are counted with no identifier (SPEC §9): every browser receives the same day
//! marker, `Last-Modified: <start of the local day>`, with `Cache-Control: no-cache`, so it
//! asks again next time and sends the marker back as `If-Modified-Since`. A marker from today
//! means this browser was counted today already. `/register` carries the page's marker (its
//! URL names the page), `/visitor` the site's (one URL for every page).

use std::time::{Duration, SystemTime};

use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::App;
use crate::clock::TICKS_PER_SEC;
use crate::db::visits::{Campaign, NewVisit};
use crate::db::writer::WriteError;
use crate::forwarded::Peer;
use crate::http::{self, Body, HttpError};
use crate::metrics::{Registration, VisitorScope};
use crate::paths::{self, Refusal};
use crate::query;
use crate::referrer;
use crate::slots::{ClaimError, LookupError, Pending, Token};
use crate::time;
use crate::zone::LocalDay;

/// Longest time on a page we accept: a day of visible time.
pub const MAX_SPENT_SECONDS: u32 = 86_400;
/// Longest campaign parameter kept (SPEC §9).
pub const MAX_CAMPAIGN_CHARS: usize = 100;

fn no_store(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The day marker: stored by the browser (privately), revalidated every time.
fn day_marker(mut response: Response<Body>, today: LocalDay) -> Response<Body> {
    day_marker_headers(response.headers_mut(), today);
    response
}

fn day_marker_headers(headers: &mut HeaderMap, today: LocalDay) {
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    if let Some(marker) = last_modified(today) {
        headers.insert(header::LAST_MODIFIED, marker);
    }
}

thread_local! {
    /// The `Last-Modified` of the day last asked for on this thread: the same for every
    /// registration of a day, and formatting a date on each one was 3 % of `/register`'s CPU.
    static MARKER: std::cell::RefCell<Option<(i64, HeaderValue)>> =
        const { std::cell::RefCell::new(None) };
    /// Every header of a `/register` answer but the ones hyper writes, for the day and the
    /// tracked origin last asked for on this thread. Copying the set is a fifth of the
    /// instructions of building it header by header (Valgrind counted 1,800 a request for
    /// the seven insertions and their hashing).
    static REGISTERED: std::cell::RefCell<Option<(i64, HeaderValue, HeaderMap)>> =
        const { std::cell::RefCell::new(None) };
}

fn last_modified(today: LocalDay) -> Option<HeaderValue> {
    MARKER.with_borrow_mut(|cached| {
        if let Some((start, marker)) = cached.as_ref()
            && *start == today.start
        {
            return Some(marker.clone());
        }
        let marker = HeaderValue::from_str(&time::http_date(today.start)).ok()?;
        *cached = Some((today.start, marker.clone()));
        Some(marker)
    })
}

/// The headers of a `/register` answer on `today`: its type, the day marker, CORS for
/// `origin` and `nosniff`, all that the route layers would add, so they add nothing.
fn registered_headers(today: LocalDay, origin: &HeaderValue) -> HeaderMap {
    REGISTERED.with_borrow_mut(|cached| {
        if let Some((start, cached_origin, headers)) = cached.as_ref()
            && *start == today.start
            && cached_origin == origin
        {
            return headers.clone();
        }
        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(header::CONTENT_TYPE, http::APPLICATION_JSON);
        day_marker_headers(&mut headers, today);
        crate::cors::allow_headers(&mut headers, origin);
        http::nosniff(&mut headers);
        *cached = Some((today.start, origin.clone(), headers.clone()));
        headers
    })
}

/// Whether the browser's copy carries today's marker: it was counted today already.
fn seen_today(request: &HeaderMap, today: LocalDay) -> bool {
    request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|value| value.to_str().ok())
        .and_then(time::parse_http_date)
        .is_some_and(|since| since >= today.start)
}

/// A token as the decimal text count.js sends back.
fn decimal(n: u64) -> Bytes {
    Bytes::copy_from_slice(http::decimal_digits(n, &mut [0; 20]))
}

fn parse_token(text: &str) -> Result<Token, HttpError> {
    Token::parse(text).ok_or_else(|| {
        HttpError::bad_request("malformed token: expected the number /register returned")
    })
}

/// 421: the token belongs to another instance, which the load balancer should have asked.
fn other_instance(instance: u8) -> HttpError {
    HttpError::new(
        StatusCode::MISDIRECTED_REQUEST,
        format!("token of instance {instance}: send it to that instance"),
    )
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
/// validated) path, and a view.
pub async fn register<B>(
    app: &App,
    request: &Request<B>,
    peer: Peer,
) -> Result<Response<Body>, HttpError> {
    let outcome = register_view(app, request, peer).await;
    app.metrics.registration(match &outcome {
        Ok(_) => Registration::Ok,
        Err((outcome, _)) => *outcome,
    });
    outcome.map_err(|(_, error)| error)
}

async fn register_view<B>(
    app: &App,
    request: &Request<B>,
    peer: Peer,
) -> Result<Response<Body>, (Registration, HttpError)> {
    let path = paths::path_from_query(request.uri().query())
        .map_err(|error| (Registration::BadRequest, error))?;
    // A known path is answered from memory; a new one is checked with the site once.
    let path_index =
        app.registry
            .resolve(&path, &app.db)
            .await
            .map_err(|refusal| match refusal {
                Refusal::Excluded => (
                    Registration::Excluded,
                    HttpError::not_found("path excluded"),
                ),
                Refusal::NotOnSite => (
                    Registration::NotOnSite,
                    HttpError::not_found("path not found on the tracked site"),
                ),
                Refusal::LimitReached => (
                    Registration::PathLimit,
                    HttpError::not_found("path not tracked: the path limit is reached"),
                ),
                Refusal::Unavailable(reason) => {
                    (Registration::Unavailable, HttpError::unavailable(reason))
                }
            })?;
    // Taken now so that its slot is fetched into the cache while the client is checked.
    let ticket = app.slots.ticket();
    let client = app.client_bucket(request.headers(), peer);
    let now = app.clock.ticks_ceil();
    app.clients.acquire(client, now).map_err(|retry| {
        app.metrics.client_limited();
        (
            Registration::ClientLimit,
            HttpError::too_many("too many pending visits from this address", retry.0),
        )
    })?;
    // One read of the system clock for the visit's time and its day.
    let wall_secs = time::now_unix();
    let today = app.days.day_of(wall_secs);
    let registered = app
        .slots
        .register_with(
            ticket,
            Pending {
                path: path_index,
                tick: now,
                wall_secs: wall_secs as u32,
                client,
            },
        )
        .map_err(|_| {
            app.clients.release(client, now);
            (
                Registration::Busy,
                HttpError::unavailable("too many visits are pending right now"),
            )
        })?;
    if let Some(evicted) = registered.evicted {
        app.clients.release(evicted, now);
    }
    let new_visitor = !seen_today(request.headers(), today);
    app.views.view(path_index, today.day, new_visitor);
    app.metrics.view();
    if new_visitor {
        app.metrics.visitor(VisitorScope::Page);
    }
    app.registry.note_name(path_index, &path);
    let mut response = Response::new(Body::from(decimal(registered.token.get())));
    *response.headers_mut() = registered_headers(today, &app.cors_origin);
    Ok(response)
}

/// `GET /visitor`: the site's day marker. 200 counts a browser new to the site today; 304
/// (no body) says it was counted already.
pub fn visitor<B>(app: &App, request: &Request<B>) -> Response<Body> {
    let today = app.days.today();
    if seen_today(request.headers(), today) {
        return day_marker(http::empty(StatusCode::NOT_MODIFIED), today);
    }
    app.views.site_visitor(today.day);
    app.metrics.visitor(VisitorScope::Site);
    day_marker(http::text(StatusCode::OK, "counted\n"), today)
}

/// A campaign parameter as kept: at most 100 characters; anything malformed (a control
/// character, a broken escape, given twice, too long) drops the parameter, never the visit.
/// Public for the fuzz target (`tests/fuzz`).
pub fn campaign_part(query: Option<&str>, name: &str) -> Option<String> {
    let value = query::param(query, name).ok()??;
    let value = value.trim();
    (!value.is_empty() && value.chars().count() <= MAX_CAMPAIGN_CHARS).then(|| value.to_string())
}

/// `POST /post-sleep/TOKEN[?referrer=URL][&utm_source=…&utm_medium=…&utm_campaign=…]`:
/// counts the visit, once.
pub async fn post_sleep<B>(
    app: &App,
    token: &str,
    request: &Request<B>,
) -> Result<Response<Body>, HttpError> {
    let token = parse_token(token)?;
    let query = request.uri().query();
    let referrer = query::param(query, "referrer")?
        .and_then(|raw| referrer::clean(&raw, &app.config.tracked_origin));
    let campaign = Campaign {
        source: campaign_part(query, "utm_source"),
        medium: campaign_part(query, "utm_medium"),
        campaign: campaign_part(query, "utm_campaign"),
    };
    let min_delay = app.config.min_delay_secs * TICKS_PER_SEC;
    let now = app.clock.ticks();
    let claim = app
        .slots
        .claim(token, now, min_delay)
        .map_err(|error| match error {
            ClaimError::NotFound => {
                HttpError::not_found("unknown, expired or already counted token")
            }
            ClaimError::TooEarly { wait_ticks } => {
                HttpError::too_early(wait_ticks.div_ceil(TICKS_PER_SEC))
            }
            ClaimError::OtherInstance(instance) => other_instance(instance),
        })?;
    let pending = claim.pending();
    let path_id = app
        .registry
        .db_id(pending.path)
        .ok_or_else(|| HttpError::not_found("unknown, expired or already counted token"))?;
    let visit = NewVisit {
        token: token.get() as i64,
        path_id,
        registered_at: SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(pending.wall_secs)),
        referrer,
        campaign,
    };
    // On failure the claim is dropped and the token stays usable for the script's retry.
    let visit_id = app.writer.insert(visit).await?;
    claim.counted(visit_id);
    app.clients.release(pending.client, app.clock.ticks());
    app.metrics.visit();
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
        LookupError::OtherInstance(instance) => other_instance(instance),
    })?;
    app.writer.set_spent_time(visit_id, seconds as i32).await?;
    app.metrics.spent_time_report();
    Ok(no_store(http::text(StatusCode::OK, "stored\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_written_as_their_decimal_numbers() {
        for n in [0, 7, 10, 99, 1 << 48, (1 << 53) - 1, u64::MAX] {
            assert_eq!(decimal(n), Bytes::from(n.to_string()), "{n}");
        }
    }

    #[test]
    fn the_day_marker_is_the_day_start_and_follows_a_new_day() {
        let day = |start| LocalDay {
            day: crate::time::Day::from_days((start / 86_400) as i32),
            start,
            end: start + 86_400,
        };
        let first = last_modified(day(1_764_374_400)).unwrap();
        assert_eq!(first, "Sat, 29 Nov 2025 00:00:00 GMT");
        assert_eq!(last_modified(day(1_764_374_400)).unwrap(), first);
        assert_eq!(
            last_modified(day(1_764_460_800)).unwrap(),
            "Sun, 30 Nov 2025 00:00:00 GMT"
        );
    }

    #[test]
    fn campaign_parameters_are_kept_or_dropped_never_refused() {
        let query = Some("utm_source=news%20letter&utm_medium=%00x&utm_campaign=a&utm_campaign=b");
        assert_eq!(
            campaign_part(query, "utm_source").as_deref(),
            Some("news letter")
        );
        assert_eq!(
            campaign_part(query, "utm_medium"),
            None,
            "control character"
        );
        assert_eq!(campaign_part(query, "utm_campaign"), None, "given twice");
        let long = format!("utm_source={}", "é".repeat(101));
        assert_eq!(campaign_part(Some(&long), "utm_source"), None);
        let fits = format!("utm_source={}", "é".repeat(100));
        assert_eq!(
            campaign_part(Some(&fits), "utm_source").map(|s| s.chars().count()),
            Some(100)
        );
        assert_eq!(campaign_part(Some("utm_source=%zz"), "utm_source"), None);
        assert_eq!(campaign_part(Some("utm_source="), "utm_source"), None);
    }

    #[test]
    fn the_day_marker_is_the_start_of_the_local_day() {
        let today = LocalDay::at_offset(1_706_450_591, 3600);
        let mut headers = HeaderMap::new();
        assert!(!seen_today(&headers, today));
        headers.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_str(&time::http_date(today.start)).unwrap(),
        );
        assert!(seen_today(&headers, today));
        headers.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_str(&time::http_date(today.start - 1)).unwrap(),
        );
        assert!(!seen_today(&headers, today), "yesterday's marker");
        headers.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("garbage"),
        );
        assert!(!seen_today(&headers, today));
    }
}

//! The whole route table, and dispatch from a matched route to its handler.
//!
//! One row per route says everything about it besides its handler: the methods it answers
//! (the `Allow` header), whether it is a script endpoint called cross-origin by `count.js`
//! (CORS for the tracked origin only), who may see it (`access`), and how its errors are
//! written (an HTML page, a JSON object, or a line of text).

use std::time::Instant;

use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use matchit::Router;

use crate::App;
use crate::access::{self, Class};
use crate::cors;
use crate::forwarded::Peer;
use crate::http::{self, Body, HttpError};
use crate::{api, counting, dashboard};

/// Longest request target (path and query) we read; beyond it the answer is 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest request body accepted (the script sends none; `sendBeacon` may send an empty one).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Index,
    Stats,
    Style,
    ApiSummary,
    ApiDaily,
    ApiPages,
    ApiReferrers,
    ApiCampaigns,
    ApiLive,
    ApiExport,
    ApiOpenApi,
    ApiCounts,
    ApiCount,
    ApiHistory,
    Metrics,
    Health,
    Script,
    Register,
    Visitor,
    PostSleep,
    PageLeft,
}

/// How a route's errors are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errors {
    /// A complete dashboard page.
    Page,
    /// `{"error": "…"}`.
    Json,
    /// A line of plain text.
    Text,
}

pub struct Spec {
    pub pattern: &'static str,
    pub route: Route,
    /// Methods answered, as the `Allow` header lists them.
    pub allow: &'static str,
    /// The same as bits of [`method_bit`], to check without parsing `allow` per request.
    methods: u8,
    /// Called cross-origin by `count.js`: CORS headers, preflights, foreign origins refused.
    pub cors: bool,
    pub access: Class,
    pub errors: Errors,
}

const fn spec(
    pattern: &'static str,
    route: Route,
    allow: &'static str,
    cors: bool,
    access: Class,
    errors: Errors,
) -> Spec {
    Spec {
        pattern,
        route,
        allow,
        methods: method_bits(allow),
        cors,
        access,
        errors,
    }
}

/// The methods any route answers, in [`method_bit`]'s order.
const METHODS: [&str; 4] = ["GET", "HEAD", "POST", "OPTIONS"];

fn method_bit(method: &Method) -> u8 {
    match *method {
        Method::GET => 1,
        Method::HEAD => 2,
        Method::POST => 4,
        Method::OPTIONS => 8,
        _ => 0,
    }
}

/// The bits of an `Allow` list ("GET, HEAD"); a name outside [`METHODS`] fails the build.
const fn method_bits(allow: &str) -> u8 {
    let bytes = allow.as_bytes();
    let mut bits = 0;
    let mut start = 0;
    while start < bytes.len() {
        let mut end = start;
        while end < bytes.len() && bytes[end] != b',' {
            end += 1;
        }
        let mut known = 0;
        let mut bit = 1;
        while known < METHODS.len() {
            if same_bytes(bytes, start, end, METHODS[known].as_bytes()) {
                break;
            }
            known += 1;
            bit <<= 1;
        }
        assert!(
            known < METHODS.len(),
            "an Allow list names a method METHODS lacks"
        );
        bits |= bit;
        // Past the ", " separator.
        start = end + 2;
    }
    bits
}

const fn same_bytes(haystack: &[u8], start: usize, end: usize, name: &[u8]) -> bool {
    if end - start != name.len() {
        return false;
    }
    let mut i = 0;
    while i < name.len() {
        if haystack[start + i] != name[i] {
            return false;
        }
        i += 1;
    }
    true
}

const READ: &str = "GET, HEAD";
use Class::{Api, Dashboard, Public};
use Errors::{Json, Page, Text};

/// The whole URL space; matchit rejects conflicting patterns at start-up.
#[rustfmt::skip]
pub const TABLE: &[Spec] = &[
    //    pattern                         route                 methods               cors   access            errors
    spec("/",                             Route::Index,         READ,                 false, Dashboard,        Page),
    spec("/stats",                        Route::Stats,         READ,                 false, Dashboard,        Page),
    spec("/style.css",                    Route::Style,         READ,                 false, Public,           Text),
    spec("/api/summary",                  Route::ApiSummary,    READ,                 false, Api,              Json),
    spec("/api/daily",                    Route::ApiDaily,      READ,                 false, Api,              Json),
    spec("/api/pages",                    Route::ApiPages,      READ,                 false, Api,              Json),
    spec("/api/referrers",                Route::ApiReferrers,  READ,                 false, Api,              Json),
    spec("/api/campaigns",                Route::ApiCampaigns,  READ,                 false, Api,              Json),
    spec("/api/live",                     Route::ApiLive,       READ,                 false, Api,              Json),
    spec("/api/export",                   Route::ApiExport,     READ,                 false, Api,              Json),
    spec("/api/openapi.json",             Route::ApiOpenApi,    READ,                 false, Api,              Json),
    spec("/api/counts",                   Route::ApiCounts,     READ,                 false, Api,              Json),
    spec("/api/count",                    Route::ApiCount,      READ,                 false, Api,              Json),
    spec("/api/history",                  Route::ApiHistory,    READ,                 false, Api,              Json),
    spec("/metrics",                      Route::Metrics,       READ,                 false, Class::Metrics,   Text),
    spec("/health",                       Route::Health,        READ,                 false, Public,           Text),
    spec("/count.js",                     Route::Script,        READ,                 true,  Public,           Text),
    spec("/register",                     Route::Register,      "GET, OPTIONS",       true,  Public,           Text),
    spec("/visitor",                      Route::Visitor,       "GET, OPTIONS",       true,  Public,           Text),
    spec("/post-sleep/{token}",           Route::PostSleep,     "GET, POST, OPTIONS", true,  Public,           Text),
    spec("/page-left/{token}/{seconds}",  Route::PageLeft,      "GET, POST, OPTIONS", true,  Public,           Text),
];

/// The route labels of the metrics, in table order.
pub const NAMES: [&str; TABLE.len()] = {
    let mut names = [""; TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        names[i] = TABLE[i].pattern;
        i += 1;
    }
    names
};

pub fn names() -> &'static [&'static str] {
    &NAMES
}

impl Spec {
    fn allows(&self, method: &Method) -> bool {
        self.methods & method_bit(method) != 0
    }

    fn error_response(&self, app: &App, error: HttpError) -> Response<Body> {
        match self.errors {
            Errors::Page => dashboard::error_page(app, error),
            Errors::Json => api::error(error),
            Errors::Text => error.into_response(),
        }
    }
}

/// The table as a matchit router; values are indexes into [`TABLE`].
pub struct Routes(Router<usize>);

impl Routes {
    pub fn new() -> Routes {
        let mut router = Router::new();
        for (index, spec) in TABLE.iter().enumerate() {
            router
                .insert(spec.pattern, index)
                .expect("route patterns are valid and distinct");
        }
        Routes(router)
    }

    /// The table row for a request path, if any.
    pub fn at<'p>(&self, path: &'p str) -> Option<(usize, matchit::Params<'_, 'p>)> {
        self.0
            .at(path)
            .ok()
            .map(|matched| (*matched.value, matched.params))
    }
}

impl Default for Routes {
    fn default() -> Routes {
        Routes::new()
    }
}

/// Answers `request` from `peer` (its address is for the per-client limits only; never
/// stored or logged). Passed along rather than put in the request's extensions, which would
/// cost three allocations a request.
pub async fn dispatch(app: &App, request: Request<Incoming>, peer: Peer) -> Response<Body> {
    let started = Instant::now();
    // By reference: moved into `respond`, the request would be stored in both futures.
    let (route, mut response) = respond(app, &request, peer).await;
    // Every body is exactly the type it says it is, errors included.
    http::nosniff(response.headers_mut());
    if let Some(route) = route {
        app.metrics
            .record(route, response.status(), started.elapsed());
    }
    response
}

async fn respond(
    app: &App,
    request: &Request<Incoming>,
    peer: Peer,
) -> (Option<usize>, Response<Body>) {
    if request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len())
        > MAX_URI_BYTES
    {
        let error = HttpError::new(StatusCode::URI_TOO_LONG, "request target too long");
        return (None, error.into_response());
    }
    // No endpoint reads a body; a large one is refused rather than left to trickle in.
    if request.body().size_hint().lower() > MAX_BODY_BYTES as u64 {
        let error = HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        return (None, error.into_response());
    }
    let Some((index, params)) = app.routes.at(request.uri().path()) else {
        return (None, HttpError::not_found("not found").into_response());
    };
    let spec = &TABLE[index];
    let method = request.method();

    if spec.cors {
        if let Err(refused) = cors::check_origin(request.headers(), &app.cors_origin) {
            let mut response = refused.into_response();
            cors::allow(&mut response, &app.cors_origin);
            return (Some(index), response);
        }
        if method == Method::OPTIONS && spec.allows(method) {
            return (Some(index), cors::preflight(spec.allow, &app.cors_origin));
        }
    }
    let outcome = if !spec.allows(method) {
        Err(HttpError::method_not_allowed(spec.allow))
    } else {
        // Boxed for the same reason as the handlers (a password check is a large future);
        // public routes skip it.
        let allowed = if app.access.is_private(spec.access) {
            Box::pin(app.access.check(spec.access, request.headers())).await
        } else {
            Ok(())
        };
        match allowed {
            Ok(()) => handle(app, spec.route, &params, request, peer).await,
            Err(denied) => {
                let response = denied.finish(
                    spec.error_response(app, HttpError::new(denied.status(), denied.message())),
                );
                return (Some(index), response);
            }
        }
    };
    let mut response = outcome.unwrap_or_else(|error| spec.error_response(app, error));
    if spec.cors {
        cors::allow(&mut response, &app.cors_origin);
    }
    if app.access.is_private(spec.access) {
        access::mark_private(response.headers_mut());
    }
    (Some(index), response)
}

/// The script endpoints and `/health` run inline; every other handler is boxed. hyper keeps
/// room for a request's future for as long as its connection lives, so the largest handler
/// sets the size of every connection: with the dashboard's gathering inline that was 9.5 KB
/// per connection, a third of an idle keep-alive connection's memory. A box costs the pages
/// and the API one allocation per request, which their work dwarfs.
async fn handle(
    app: &App,
    route: Route,
    params: &matchit::Params<'_, '_>,
    request: &Request<Incoming>,
    peer: Peer,
) -> Result<Response<Body>, HttpError> {
    let param = |name| params.get(name).unwrap_or_default();
    match route {
        Route::Register => counting::register(app, request, peer).await,
        Route::Visitor => Ok(counting::visitor(app, request)),
        Route::PostSleep => counting::post_sleep(app, param("token"), request).await,
        Route::PageLeft => counting::page_left(app, param("token"), param("seconds")).await,
        Route::Script => Ok(app.script.respond(request.headers())),
        Route::Health => Ok(health(app).await),
        _ => Box::pin(handle_reads(app, route, request, peer)).await,
    }
}

/// The dashboard, the API and the metrics.
async fn handle_reads(
    app: &App,
    route: Route,
    request: &Request<Incoming>,
    peer: Peer,
) -> Result<Response<Body>, HttpError> {
    let uri = request.uri();
    match route {
        Route::Index => dashboard::index(app, uri).await,
        Route::Stats => dashboard::stats(app, uri).await,
        // Pages link it with its version, so it is cached for a year.
        Route::Style => Ok(app.dashboard.css.respond(request.headers())),
        Route::ApiSummary => api::summary(app, uri).await,
        Route::ApiDaily => api::daily(app, uri).await,
        Route::ApiPages => api::pages(app, uri).await,
        Route::ApiReferrers => api::referrers(app, uri).await,
        Route::ApiCampaigns => api::campaigns(app, uri).await,
        Route::ApiLive => api::live(app).await,
        Route::ApiExport => api::export(app, request, peer).await,
        Route::ApiOpenApi => Ok(app.openapi.respond(request.headers())),
        Route::ApiCounts => api::counts(app, request, peer).await,
        Route::ApiCount => api::count(app, uri).await,
        Route::ApiHistory => api::history(app, request, peer).await,
        Route::Metrics => Ok(metrics(app).await),
        Route::Register
        | Route::Visitor
        | Route::PostSleep
        | Route::PageLeft
        | Route::Script
        | Route::Health => unreachable!("handled inline by `handle`"),
    }
}

async fn health(app: &App) -> Response<Body> {
    if app.db.is_healthy().await {
        http::text(StatusCode::OK, "ok\n")
    } else {
        http::text(StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
    }
}

/// `GET /metrics`: the Prometheus text format.
async fn metrics(app: &App) -> Response<Body> {
    // The same test as `/health` (every connection up, a ping answered), so the two never
    // disagree; first, so the other gauges are read after its wait.
    let database_up = app.db.is_healthy().await;
    let now = app.clock.ticks();
    let mut live = 0;
    app.slots.live(
        now,
        crate::live::WINDOW.as_secs() as u32 * crate::clock::TICKS_PER_SEC,
        |_| live += 1,
    );
    let gauges = crate::metrics::Gauges {
        pending_visitors: app.slots.pending_count(now) as u64,
        live_visitors: live,
        writer_queue_depth: app.writer.queued() as u64,
        database_up,
        visitor_slots: app.slots.len() as u64,
        known_paths: app.registry.len() as u64,
    };
    let mut body = String::with_capacity(16 * 1024);
    app.metrics.render(&gauges, &mut body);
    let mut response = http::with_body(StatusCode::OK, crate::metrics::CONTENT_TYPE, body);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_reachable_and_nothing_else() {
        let routes = Routes::new();
        let route = |path: &str| routes.at(path).map(|(index, _)| TABLE[index].route);
        for spec in TABLE {
            let concrete = spec
                .pattern
                .replace("{token}", "123")
                .replace("{seconds}", "45");
            assert_eq!(
                route(concrete.as_str()),
                Some(spec.route),
                "{}",
                spec.pattern
            );
        }
        let (_, params) = routes.at("/page-left/123/45").unwrap();
        assert_eq!(
            (params.get("token"), params.get("seconds")),
            (Some("123"), Some("45"))
        );
        for path in [
            "/health/",
            "/healthz",
            "//health",
            "/HEALTH",
            "/post-sleep",
            "/post-sleep/1/2",
            "/page-left/1",
            "/api",
            "/api/",
        ] {
            assert!(routes.at(path).is_none(), "{path}");
        }
    }

    #[test]
    fn the_table_keeps_its_promises() {
        for spec in TABLE {
            let is_api = spec.pattern.starts_with("/api/");
            assert_eq!(is_api, spec.access == Class::Api, "{}", spec.pattern);
            assert_eq!(is_api, spec.errors == Errors::Json, "{}", spec.pattern);
            // Browsers send preflights to exactly the cross-origin endpoints.
            assert_eq!(
                spec.cors && spec.route != Route::Script,
                spec.allow.contains("OPTIONS"),
                "{}",
                spec.pattern
            );
            if spec.cors || spec.route == Route::Health {
                assert_eq!(
                    spec.access,
                    Class::Public,
                    "{} is always public",
                    spec.pattern
                );
            }
        }
        assert_eq!(NAMES[0], "/");
    }

    #[test]
    fn each_route_answers_exactly_the_methods_its_allow_header_names() {
        let every = [
            "GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "PATCH", "TRACE",
        ];
        for spec in TABLE {
            for name in every {
                let method = Method::from_bytes(name.as_bytes()).unwrap();
                assert_eq!(
                    spec.allows(&method),
                    spec.allow.split(", ").any(|listed| listed == name),
                    "{} {name}",
                    spec.pattern
                );
            }
        }
    }
}

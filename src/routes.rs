//! The whole route table, and dispatch from a matched route to its handler.

use hyper::body::{Body as _, Incoming};

use hyper::{Method, Request, Response, StatusCode};
use matchit::Router;

use hyper::header::{self, HeaderValue};

use crate::App;
use crate::cors;
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
    ApiCounts,
    ApiCount,
    ApiHistory,
    Health,
    Script,
    Register,
    PostSleep,
    PageLeft,
}

/// The whole URL space; matchit rejects conflicting patterns at start-up.
const TABLE: &[(&str, Route)] = &[
    ("/", Route::Index),
    ("/stats", Route::Stats),
    ("/style.css", Route::Style),
    ("/api/counts", Route::ApiCounts),
    ("/api/count", Route::ApiCount),
    ("/api/history", Route::ApiHistory),
    ("/health", Route::Health),
    ("/count.js", Route::Script),
    ("/register", Route::Register),
    ("/post-sleep/{token}", Route::PostSleep),
    ("/page-left/{token}/{seconds}", Route::PageLeft),
];

impl Route {
    /// What the `Allow` header (and a CORS preflight) says for this route.
    fn allowed_methods(self) -> &'static str {
        match self {
            Route::Index
            | Route::Stats
            | Route::Style
            | Route::ApiCounts
            | Route::ApiCount
            | Route::ApiHistory
            | Route::Health
            | Route::Script => "GET, HEAD",
            Route::Register => "GET, OPTIONS",
            Route::PostSleep | Route::PageLeft => "GET, POST, OPTIONS",
        }
    }

    /// How this route's errors are written: HTML pages, JSON objects, or plain text.
    fn error_response(self, app: &App, error: HttpError) -> Response<Body> {
        match self {
            Route::Index | Route::Stats => dashboard::error_page(app, error),
            Route::ApiCounts | Route::ApiCount | Route::ApiHistory => api::error(error),
            _ => error.into_response(),
        }
    }

    /// Script endpoints are called cross-origin by `count.js` and carry CORS headers.
    fn is_script_endpoint(self) -> bool {
        matches!(
            self,
            Route::Script | Route::Register | Route::PostSleep | Route::PageLeft
        )
    }
}

pub struct Routes(Router<Route>);

impl Routes {
    pub fn new() -> Routes {
        let mut router = Router::new();
        for &(pattern, route) in TABLE {
            router
                .insert(pattern, route)
                .expect("route patterns are valid and distinct");
        }
        Routes(router)
    }

    /// The route for a request path, if any.
    pub fn at<'p>(&self, path: &'p str) -> Option<(Route, matchit::Params<'_, 'p>)> {
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

pub async fn dispatch(app: &App, request: Request<Incoming>) -> Response<Body> {
    let mut response = respond(app, request).await;
    // Every body is exactly the type it says it is, errors included.
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn respond(app: &App, request: Request<Incoming>) -> Response<Body> {
    if request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len())
        > MAX_URI_BYTES
    {
        return HttpError::new(StatusCode::URI_TOO_LONG, "request target too long").into_response();
    }
    // No endpoint reads a body; a large one is refused rather than left to trickle in.
    if request.body().size_hint().lower() > MAX_BODY_BYTES as u64 {
        return HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            .into_response();
    }
    let Some((route, params)) = app.routes.at(request.uri().path()) else {
        return HttpError::not_found("not found").into_response();
    };
    let method = request.method();
    let read = method == Method::GET || method == Method::HEAD;
    let write = method == Method::GET || method == Method::POST;
    let param = |name| params.get(name).unwrap_or_default();

    let foreign_origin = match route.is_script_endpoint() {
        true => cors::check_origin(request.headers(), &app.cors_origin).err(),
        false => None,
    };
    if foreign_origin.is_none()
        && method == Method::OPTIONS
        && route.is_script_endpoint()
        && route != Route::Script
    {
        return cors::preflight(route.allowed_methods(), &app.cors_origin);
    }

    let outcome = if let Some(refused) = foreign_origin {
        Err(refused)
    } else {
        match route {
            Route::Index if read => dashboard::index(app).await,
            Route::Stats if read => dashboard::stats(app, request.uri()).await,
            // Pages link it with its version, so it is cached for a year.
            Route::Style if read => Ok(app.dashboard.css.respond(request.headers())),
            Route::ApiCounts if read => api::counts(app).await,
            Route::ApiCount if read => api::count(app, request.uri()).await,
            Route::ApiHistory if read => api::history(app, request.uri()).await,
            Route::Health if read => Ok(health(app).await),
            Route::Script if read => Ok(app.script.respond(request.headers())),
            Route::Register if method == Method::GET => counting::register(app, &request).await,
            Route::PostSleep if write => {
                counting::post_sleep(app, param("token"), request.uri()).await
            }
            Route::PageLeft if write => {
                counting::page_left(app, param("token"), param("seconds")).await
            }
            _ => Ok(http::method_not_allowed(route.allowed_methods())),
        }
    };
    let mut response = outcome.unwrap_or_else(|error| route.error_response(app, error));
    if route.is_script_endpoint() {
        cors::allow(&mut response, &app.cors_origin);
    }
    response
}

async fn health(app: &App) -> Response<Body> {
    if app.db.is_healthy().await {
        http::text(StatusCode::OK, "ok\n")
    } else {
        http::text(StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_reachable_and_nothing_else() {
        let routes = Routes::new();
        let route = |path| routes.at(path).map(|(r, _)| r);
        assert_eq!(route("/"), Some(Route::Index));
        assert_eq!(route("/stats"), Some(Route::Stats));
        assert_eq!(route("/api/history"), Some(Route::ApiHistory));
        assert_eq!(route("/health"), Some(Route::Health));
        assert_eq!(route("/count.js"), Some(Route::Script));
        assert_eq!(route("/register"), Some(Route::Register));
        assert_eq!(route("/post-sleep/123"), Some(Route::PostSleep));
        assert_eq!(route("/page-left/123/45"), Some(Route::PageLeft));
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
        ] {
            assert!(routes.at(path).is_none(), "{path}");
        }
    }
}

//! The whole route table, and dispatch from a matched route to its handler.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use matchit::Router;

use crate::App;
use crate::http::{self, Body, HttpError};

/// Longest request target (path and query) we read; beyond it the answer is 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Health,
}

impl Route {
    /// What the `Allow` header says for this route.
    fn allowed_methods(self) -> &'static str {
        match self {
            Route::Health => "GET, HEAD",
        }
    }
}

pub struct Routes(Router<Route>);

/// The whole URL space; matchit rejects conflicting patterns at start-up.
const TABLE: &[(&str, Route)] = &[("/health", Route::Health)];

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
    if request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len())
        > MAX_URI_BYTES
    {
        return HttpError::new(StatusCode::URI_TOO_LONG, "request target too long").into_response();
    }
    let Some((route, _params)) = app.routes.at(request.uri().path()) else {
        return HttpError::not_found("not found").into_response();
    };
    let method = request.method();
    let outcome = match route {
        Route::Health if is_read(method) => Ok(health(app).await),
        _ => return http::method_not_allowed(route.allowed_methods()),
    };
    outcome.unwrap_or_else(HttpError::into_response)
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
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
        assert_eq!(routes.at("/health").map(|(r, _)| r), Some(Route::Health));
        for path in ["/", "/health/", "/healthz", "//health", "/HEALTH"] {
            assert!(routes.at(path).is_none(), "{path}");
        }
    }
}

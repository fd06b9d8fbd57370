//! Cross-origin rules for the script endpoints: the tracked origin, and only it.
//!
//! Browsers enforce CORS on what a page may *read*, not on whether a request is sent, so a
//! request that carries an `Origin` header naming another site is refused outright (403,
//! nothing registered or counted). Requests without `Origin` (curl, server-side callers) are
//! served; they cannot read anything a browser page could not.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use crate::http::{self, Body, HttpError};

/// How long browsers may cache a preflight answer.
const PREFLIGHT_MAX_AGE: HeaderValue = HeaderValue::from_static("86400");

/// Refuses a request sent by a page of another origin.
pub fn check_origin(request: &HeaderMap, allowed: &HeaderValue) -> Result<(), HttpError> {
    match request.get(header::ORIGIN) {
        Some(origin) if origin != allowed => {
            Err(HttpError::new(StatusCode::FORBIDDEN, "origin not allowed"))
        }
        _ => Ok(()),
    }
}

/// Adds the CORS headers every script endpoint response carries.
pub fn allow(response: &mut Response<Body>, allowed: &HeaderValue) {
    allow_headers(response.headers_mut(), allowed);
}

/// [`allow`] on a header map. Once the origin is there, the rest is too (a cached set of
/// headers): one lookup then, no replacements.
pub fn allow_headers(headers: &mut HeaderMap, allowed: &HeaderValue) {
    let header::Entry::Vacant(origin) = headers.entry(header::ACCESS_CONTROL_ALLOW_ORIGIN) else {
        return;
    };
    origin.insert(allowed.clone());
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    // count.js waits as long as the tracker asks (425, 429, 503); a cross-origin script
    // only sees the headers it is allowed to.
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Retry-After"),
    );
}

/// The answer to an `OPTIONS` preflight for a script endpoint.
pub fn preflight(methods: &'static str, allowed: &HeaderValue) -> Response<Body> {
    let mut response = http::empty(StatusCode::NO_CONTENT);
    allow(&mut response, allowed);
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE);
    response
}

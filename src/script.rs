//! `count.js`, built once at start-up from `assets/count.js` with the tracker's base URL and
//! delay filled in, and served from memory with an `ETag` so browsers revalidate cheaply.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use crate::http::{self, Body};

const TEMPLATE: &str = include_str!("../assets/count.js");
const JAVASCRIPT: HeaderValue = HeaderValue::from_static("text/javascript; charset=utf-8");
/// Browsers reuse the script for five minutes, then revalidate with the ETag (a 304 with no
/// body); a changed configuration reaches every visitor within five minutes.
const CACHE_CONTROL: HeaderValue = HeaderValue::from_static("public, max-age=300");

pub struct Script {
    body: Bytes,
    etag: HeaderValue,
}

impl Script {
    /// `count.js` for a tracker at `base_url` that counts after `min_delay_secs`.
    pub fn new(base_url: &str, min_delay_secs: u32) -> Script {
        let base_url = serde_json::to_string(base_url).expect("a string serialises");
        let delay_ms = (u64::from(min_delay_secs) + 1) * 1000;
        let source = minify(TEMPLATE)
            .replace("\"__OXITRAFFIC_BASE_URL__\"", &base_url)
            .replace("__OXITRAFFIC_DELAY_MS__", &delay_ms.to_string());
        // Deterministic across restarts (fixed-key hash), so an unchanged script keeps its
        // ETag and browsers keep their copy.
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(&source);
        let etag =
            HeaderValue::from_str(&format!("\"{hash:016x}\"")).expect("hex is a valid header");
        Script {
            body: Bytes::from(source),
            etag,
        }
    }

    pub fn source(&self) -> &[u8] {
        &self.body
    }

    /// The script, or 304 when the browser's copy (`If-None-Match`) is current.
    pub fn respond(&self, request: &HeaderMap) -> Response<Body> {
        let fresh = request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == self.etag
            });
        let mut response = if fresh {
            http::empty(StatusCode::NOT_MODIFIED)
        } else {
            http::with_body(StatusCode::OK, JAVASCRIPT, self.body.clone())
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, self.etag.clone());
        headers.insert(header::CACHE_CONTROL, CACHE_CONTROL);

        response
    }
}

/// Drops full-line comments, indentation and blank lines; the code itself is untouched.
fn minify(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    for line in source
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
    {
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_is_a_safe_string_literal() {
        let script = Script::new("https://t.example/\"</script>", 19);
        let source = std::str::from_utf8(script.source()).unwrap();
        assert!(
            source.contains(r#"const base = "https://t.example/\"</script>";"#),
            "{source}"
        );
        assert!(source.contains("const delay = 20000;"));
        assert!(!source.contains("__OXITRAFFIC"));
        assert!(
            !source.contains("\n//") && !source.starts_with("//"),
            "comments are stripped"
        );
    }

    #[test]
    fn etags_revalidate() {
        let script = Script::new("https://t.example", 19);
        let etag = script.etag.to_str().unwrap().to_string();
        let mut headers = HeaderMap::new();
        assert_eq!(script.respond(&headers).status(), StatusCode::OK);
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{etag}")).unwrap(),
        );
        assert_eq!(script.respond(&headers).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            Script::new("https://t.example", 19).etag,
            script.etag,
            "stable across restarts"
        );
        assert_ne!(Script::new("https://t.example", 5).etag, script.etag);
    }
}

//! `count.js`, built once at start-up from `assets/count.js` with the tracker's base URL and
//! delay filled in, and served from memory with an `ETag` so browsers revalidate cheaply.

use hyper::header::HeaderValue;

use crate::http::Cached;

const TEMPLATE: &str = include_str!("../assets/count.js");
const JAVASCRIPT: HeaderValue = HeaderValue::from_static("text/javascript; charset=utf-8");
/// Browsers reuse the script for five minutes, then revalidate with the ETag (a 304 with no
/// body); a changed configuration reaches every visitor within five minutes.
const CACHE_CONTROL: HeaderValue = HeaderValue::from_static("public, max-age=300");

/// Builds `count.js` for a tracker at `base_url` that counts after `min_delay_secs`.
pub fn count_js(base_url: &str, min_delay_secs: u32) -> Cached {
    let base_url = serde_json::to_string(base_url).expect("a string serialises");
    let delay_ms = (u64::from(min_delay_secs) + 1) * 1000;
    let source = minify(TEMPLATE)
        .replace("\"__OXITRAFFIC_BASE_URL__\"", &base_url)
        .replace("__OXITRAFFIC_DELAY_MS__", &delay_ms.to_string());
    Cached::new(source, JAVASCRIPT, CACHE_CONTROL)
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
        let script = count_js("https://t.example/\"</script>", 19);
        let source = std::str::from_utf8(script.body()).unwrap();
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
    fn no_comment_is_served() {
        // Only full-line comments are dropped: one after code on the same line would ship.
        let script = count_js("https://t.example", 19);
        let source = std::str::from_utf8(script.body()).unwrap();
        for line in source.lines() {
            assert!(!line.contains(" //") && !line.contains("/*"), "{line}");
        }
        assert!(
            source.len() < TEMPLATE.len() * 3 / 4,
            "comments and indentation are most of the template"
        );
    }

    #[test]
    fn the_etag_follows_the_configuration() {
        let script = count_js("https://t.example", 19);
        assert_eq!(
            count_js("https://t.example", 19).version(),
            script.version()
        );
        assert_ne!(count_js("https://t.example", 5).version(), script.version());
    }
}

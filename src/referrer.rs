//! What we keep of a visit's referrer: where the visitor came from, and nothing that could
//! say who they are. Query and fragment go (they carry search terms, session ids, emails),
//! so does any `user:password@`; a link from the tracked site itself is no referrer at all.
//! Something that is not an absolute URL is dropped, never a reason to lose the visit.

use crate::config::{Origin, split_host_port};

/// Longest referrer we store; a longer one is cut back to its origin.
pub const MAX_REFERRER_BYTES: usize = 1024;

/// The referrer to store for `raw` (already percent-decoded), or `None`.
pub fn clean(raw: &str, site: &Origin) -> Option<String> {
    let without_query = raw.trim().split(['?', '#']).next().unwrap_or("");
    let (scheme, rest) = without_query.split_once("://")?;
    let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    let host_and_port = authority
        .rsplit('@')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let (host, port) = split_host_port(&host_and_port).ok()?;
    // `example.org.` is the same host as `example.org`.
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host == site.host {
        return None;
    }
    let default_port = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    let origin = match port {
        Some(port) if Some(port) != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    };
    if origin.len() + path.len() <= MAX_REFERRER_BYTES {
        Some(origin + path)
    } else if origin.len() < MAX_REFERRER_BYTES {
        Some(origin + "/")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Origin {
        Origin::parse("https://example.org").unwrap()
    }

    #[test]
    fn keeps_where_the_visitor_came_from_and_nothing_more() {
        let clean = |raw| clean(raw, &site());
        assert_eq!(
            clean("https://news.ycombinator.com/item?id=1#c").as_deref(),
            Some("https://news.ycombinator.com/item")
        );
        assert_eq!(
            clean("https://www.google.com/").as_deref(),
            Some("https://www.google.com/")
        );
        assert_eq!(
            clean("https://www.google.com").as_deref(),
            Some("https://www.google.com/")
        );
        assert_eq!(
            clean("HTTPS://Mail.Example.COM:443/inbox").as_deref(),
            Some("https://mail.example.com/inbox")
        );
        assert_eq!(
            clean("http://alice:secret@blog.example:8080/x").as_deref(),
            Some("http://blog.example:8080/x")
        );
        assert_eq!(
            clean("android-app://com.google.android.gm/").as_deref(),
            Some("android-app://com.google.android.gm/")
        );
        assert_eq!(
            clean("http://[2001:db8::1]:8080/a").as_deref(),
            Some("http://[2001:db8::1]:8080/a")
        );
    }

    #[test]
    fn a_link_from_the_tracked_site_is_no_referrer() {
        assert_eq!(clean("https://example.org/blog/", &site()), None);
        assert_eq!(
            clean("http://example.org:8080/", &site()),
            None,
            "scheme and port do not matter"
        );
        assert_eq!(clean("https://EXAMPLE.org", &site()), None);
        assert!(clean("https://example.org.evil.test/", &site()).is_some());
    }

    #[test]
    fn hosts_and_ports_must_be_well_formed() {
        // Found by fuzzing (tests/fuzz/regressions/referrer_clean).
        for raw in [
            "http://a.example:b c/",
            "http://:1:/",
            "http://example.org:80:/",
            "http://a:99999/",
            "http://[x]/",
        ] {
            assert_eq!(clean(raw, &site()), None, "{raw:?}");
        }
        assert_eq!(
            clean("https://example.org./x", &site()),
            None,
            "a trailing dot is the same host"
        );
        assert_eq!(
            clean("https://news.example./x", &site()).as_deref(),
            Some("https://news.example/x")
        );
    }

    #[test]
    fn drops_what_is_not_an_absolute_url() {
        for raw in [
            "",
            "   ",
            "hello",
            "/relative",
            "//host/x",
            "javascript:alert(1)",
            "1http://x/",
            "http:///path",
            "file:///etc/passwd",
        ] {
            assert_eq!(clean(raw, &site()), None, "{raw:?}");
        }
    }

    #[test]
    fn long_referrers_are_cut_to_their_origin_never_dropped_with_the_visit() {
        let long = format!("https://search.example/{}", "a".repeat(2000));
        assert_eq!(
            clean(&long, &site()).as_deref(),
            Some("https://search.example/")
        );
        let absurd = format!("https://{}.example/", "a".repeat(2000));
        assert_eq!(clean(&absurd, &site()), None);
        let fits = format!("https://s.example/{}", "a".repeat(MAX_REFERRER_BYTES - 18));
        assert_eq!(
            clean(&fits, &site()).map(|r| r.len()),
            Some(MAX_REFERRER_BYTES)
        );
    }
}

//! Path patterns for `exclude_paths`: which normalised paths are never checked, stored or
//! counted.
//!
//! Syntax: a pattern starts with `/` and is matched segment by segment against a normalised
//! path (decoded text starting with `/`). In a segment, `*` matches any run of characters,
//! never a `/`; a segment may hold several. A trailing `/**` matches the path before it and
//! everything below: `/admin/**` matches `/admin`, `/admin/` and `/admin/x/y`, not
//! `/administrator`. `**` anywhere else is refused, and so is anything a normalised path
//! never contains (a query, a fragment, `\`, `@`, control characters and bidi overrides,
//! dot segments, also with `;parameters`), since such a pattern could never match.
//!
//! Cost: no regular expressions and no backtracking. A segment pattern is literal pieces
//! separated by `*`; the first piece must start the segment, the last must end it, and each
//! piece in between is placed at its leftmost occurrence after the previous one. Leftmost is
//! always right when `*` is the only wildcard: any match could slide its pieces left to
//! those positions and still match, so if the greedy placement fails, nothing does. Each
//! piece is found with `str::find` (the two-way algorithm: linear, stopping at the first
//! occurrence), a found piece consumes the text searched up to it, and a piece not found
//! ends the match; nothing is ever searched twice. So a match costs time linear in the
//! lengths of the path and the pattern, whatever either holds, and allocates nothing.

use std::fmt;

/// Patterns are no longer than the paths they match.
pub const MAX_PATTERN_BYTES: usize = super::normalize::MAX_PATH_BYTES;

#[derive(Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: Box<str>,
    /// Whether the pattern ended in `/**` (not part of `text`'s segments in `segments()`).
    subtree: bool,
}

impl PathPattern {
    /// The error is the end of a sentence starting with the setting's name.
    pub fn parse(text: &str) -> Result<PathPattern, String> {
        let fail = |reason: &str| Err(format!("has a pattern (`{text}`) that {reason}"));
        if !text.starts_with('/') {
            return fail("does not start with /");
        }
        if text.len() > MAX_PATTERN_BYTES {
            return fail(&format!("is longer than {MAX_PATTERN_BYTES} bytes"));
        }
        // What `normalize` refuses in a path (bidi overrides too), so could never match.
        if text.chars().any(crate::query::is_forbidden_char) {
            return fail("contains a control character or a bidirectional override");
        }
        if text.contains(['?', '#']) {
            return fail("contains `?` or `#`: paths are matched without query or fragment");
        }
        if text.contains(['\\', '@']) || text.starts_with("//") {
            return fail("could never match: paths never contain `\\` or `@` or start with //");
        }
        let (body, subtree) = match text.strip_suffix("/**") {
            Some(body) => (body, true),
            None => (text, false),
        };
        if body.contains("**") {
            return fail("has `**` somewhere other than a trailing `/**`");
        }
        // As `normalize` reads them: `..;x` is a dot segment too.
        if body
            .split('/')
            .skip(1)
            .any(super::normalize::is_dot_segment)
        {
            return fail("could never match: paths never contain `.` or `..` segments");
        }
        Ok(PathPattern {
            text: text.into(),
            subtree,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the normalised `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        let Some(path) = path.strip_prefix('/') else {
            return false;
        };
        let body = if self.subtree {
            &self.text[..self.text.len() - 3]
        } else {
            &self.text[..]
        };
        let mut path_segments = path.split('/');
        // `/**`: the body is empty and matches the root and everything below it.
        if let Some(body) = body.strip_prefix('/') {
            for pattern in body.split('/') {
                match path_segments.next() {
                    Some(segment) if segment_matches(pattern, segment) => {}
                    _ => return false,
                }
            }
        }
        // Whatever remains is below the body: fine for `/**`, a mismatch otherwise.
        self.subtree || path_segments.next().is_none()
    }
}

/// `pattern` (literal pieces separated by `*`) against one segment; see the module docs.
fn segment_matches(pattern: &str, segment: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or("");
    let Some(mut rest) = segment.strip_prefix(first) else {
        return false;
    };
    let Some(last) = pieces.next_back() else {
        // No `*` at all: the whole segment is the literal.
        return rest.is_empty();
    };
    // The last piece must end the segment, and may not overlap the first one.
    let Some(middle) = rest.strip_suffix(last) else {
        return false;
    };
    rest = middle;
    for piece in pieces {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PathPattern({:?})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> PathPattern {
        PathPattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn check(text: &str, matching: &[&str], not_matching: &[&str]) {
        let pattern = pattern(text);
        for path in matching {
            assert!(pattern.matches(path), "{text} should match {path}");
        }
        for path in not_matching {
            assert!(!pattern.matches(path), "{text} should not match {path}");
        }
    }

    #[test]
    fn a_trailing_double_star_matches_the_path_and_everything_below() {
        check(
            "/admin/**",
            &["/admin", "/admin/", "/admin/x", "/admin/x/y", "/admin//z"],
            &["/administrator", "/admin.html", "/", "/x/admin", "/Admin"],
        );
        check("/**", &["/", "/a", "/a/b/c"], &[]);
        check(
            "/users/*/private/**",
            &["/users/ada/private", "/users/ada/private/notes/1"],
            &[
                "/users/private",
                "/users/ada/b/private",
                "/users/ada/privately",
            ],
        );
    }

    #[test]
    fn a_star_matches_within_one_segment_only() {
        check(
            "/blog/*",
            &["/blog/a", "/blog/", "/blog/long-title-2024"],
            &["/blog", "/blog/a/b", "/blogs/a"],
        );
        check(
            "/*.html",
            &["/index.html", "/.html", "/a.b.html"],
            &["/index.htm", "/a/index.html", "/index.html/"],
        );
        check(
            "/a*b*c",
            &["/abc", "/aXbYc", "/abbbc", "/acbc", "/abcbc"],
            &["/ab", "/bc", "/acb", "/a/b/c", "/abcx"],
        );
        check("/*/*", &["/a/b", "/a/", "//"], &["/a", "/a/b/c"]);
        check("/a*a", &["/aa", "/aaa", "/aXa"], &["/a", "/aX"]);
    }

    #[test]
    fn literal_patterns_match_exactly() {
        check("/", &["/"], &["/a", ""]);
        check(
            "/about",
            &["/about"],
            &["/about/", "/about/x", "/abou", "about"],
        );
        check("/about/", &["/about/"], &["/about"]);
        check("/café", &["/café"], &["/cafe"]);
    }

    #[test]
    fn malformed_patterns_are_refused_with_a_reason() {
        for (bad, reason) in [
            ("admin/**", "does not start with /"),
            ("", "does not start with /"),
            ("/a/**/b", "`**`"),
            ("/**/b", "`**`"),
            ("/a**", "`**`"),
            ("/a/***", "`**`"),
            ("/a/b**/**", "`**`"),
            ("/a?b=1", "query"),
            ("/a#top", "query"),
            ("/a\\b", "never match"),
            ("//a", "never match"),
            ("/a/../b", "`..` segments"),
            ("/a/./**", "`..` segments"),
            // Found by fuzzing (tests/fuzz/regressions/path_pattern): `normalize` refuses
            // such paths, so these patterns could never match.
            ("/a/..;x/b", "`..` segments"),
            ("/.;/**", "`..` segments"),
            ("/a\nb", "control"),
            // Found by fuzzing (tests/fuzz/regressions/path_pattern).
            ("/t\u{202e}ad/**", "bidirectional override"),
        ] {
            let error = PathPattern::parse(bad).unwrap_err();
            assert!(
                error.contains(reason) && error.starts_with("has a pattern ("),
                "{bad:?}: {error}"
            );
        }
        let long = format!("/{}", "a".repeat(MAX_PATTERN_BYTES));
        assert!(
            PathPattern::parse(&long)
                .unwrap_err()
                .contains("longer than 1024")
        );
        assert!(PathPattern::parse(&long[..MAX_PATTERN_BYTES]).is_ok());
    }

    #[test]
    fn adversarial_inputs_cost_time_linear_in_their_size() {
        // A backtracking matcher tries every way to split the a's among the stars: with
        // 20 stars and a 1 KiB segment that is more than 10^40 ways.
        let stars = format!("/{}b", "*a".repeat(20));
        let stars = pattern(&stars);
        let path = format!("/{}", "a".repeat(1023));
        let started = std::time::Instant::now();
        for _ in 0..1000 {
            assert!(!stars.matches(&path));
        }
        assert!(stars.matches(&format!("{path}b")));
        check("/*a*a*a*a*b", &["/aaaab", "/xaxaxaxaxb"], &[&path, "/aaab"]);
        // 1000 rejections of a 1 KiB path: microseconds each when linear.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );

        // As many one-star segments as fit: one pass over the path's segments.
        let pattern = pattern(&"/*".repeat(500));
        assert!(pattern.matches(&"/a".repeat(500)));
        assert!(!pattern.matches(&"/a".repeat(501)));
        assert!(!pattern.matches(&"/a".repeat(499)));
    }

    #[test]
    fn displays_as_written() {
        assert_eq!(pattern("/admin/**").to_string(), "/admin/**");
        assert_eq!(pattern("/a*").as_str(), "/a*");
        assert_eq!(format!("{:?}", pattern("/a")), "PathPattern(\"/a\")");
    }
}

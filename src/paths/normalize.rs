//! Turning the `path` a visitor's browser sent into the one canonical form we store, or
//! refusing it.
//!
//! The value is `location.pathname` after `encodeURIComponent` and our query decoding, so it
//! is still percent-encoded the way the browser encodes paths. We drop any query or
//! fragment, decode once, and then refuse anything that could be read two ways: no leading
//! `//` (a scheme-relative URL), no `\` (some parsers treat it as `/`), no `@` (userinfo
//! tricks), no `.` or `..` segments, also not with path parameters (`..;x`: Tomcat-style
//! servers resolve `/x/..;/admin` to `/admin`), no encoded `/` (decoding `%2F` would merge
//! `/a%2Fb` with `/a/b`, two different URLs for the site), no control characters, nothing
//! that is not UTF-8.
//! The stored form is readable text (`/blog/café`); [`request_target`] re-encodes it for the
//! check request.

use std::borrow::Cow;
use std::fmt;

use crate::query::{DecodeError, percent_decode};

/// Longest path we store, in bytes of UTF-8.
pub const MAX_PATH_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    Empty,
    NotAbsolute,
    SchemeRelative,
    TooLong,
    Encoding(DecodeError),
    Backslash,
    At,
    DotSegment,
    EncodedSlash,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Empty => f.write_str("path is empty"),
            PathError::NotAbsolute => f.write_str("path must start with /"),
            PathError::SchemeRelative => f.write_str("path must not start with //"),
            PathError::TooLong => write!(f, "path is longer than {MAX_PATH_BYTES} bytes"),
            PathError::Encoding(error) => write!(f, "path is {error}"),
            PathError::Backslash => f.write_str("path must not contain \\"),
            PathError::At => f.write_str("path must not contain @"),
            PathError::DotSegment => {
                f.write_str("path must not contain . or .. segments (with or without ;parameters)")
            }
            PathError::EncodedSlash => f.write_str("path must not contain an encoded / (%2F)"),
        }
    }
}

/// The canonical path for `raw`, or why there is none.
/// Borrows from `raw` when nothing needed decoding or dropping, as for most requests.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let without_query = raw.split(['?', '#']).next().unwrap_or("");
    if without_query.is_empty() {
        return Err(PathError::Empty);
    }
    // Checked before and after decoding: the encoded form bounds the work, the decoded
    // form is what we store.
    if without_query.len() > 3 * MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    // A browser's pathname starts with a literal `/`; an encoded one is not a path.
    if !without_query.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }

    if contains_encoded_slash(without_query) {
        return Err(PathError::EncodedSlash);
    }
    let path = percent_decode(without_query).map_err(PathError::Encoding)?;
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if path.starts_with("//") {
        return Err(PathError::SchemeRelative);
    }
    if path.contains('\\') {
        return Err(PathError::Backslash);
    }
    if path.contains('@') {
        return Err(PathError::At);
    }
    if path.split('/').any(is_dot_segment) {
        return Err(PathError::DotSegment);
    }
    Ok(path)
}

/// `.` or `..`, alone or followed by `;parameters`, the way servers that honour path
/// parameters read a segment.
pub(super) fn is_dot_segment(segment: &str) -> bool {
    let name = segment.split(';').next().unwrap_or(segment);
    name == "." || name == ".."
}

fn contains_encoded_slash(raw: &str) -> bool {
    raw.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'2' && (w[2] == b'F' || w[2] == b'f'))
}

/// Bytes that may appear literally in an origin-form request target's path; everything
/// else is percent-encoded, `%` `?` `#` and spaces included, so the target is exactly one
/// path on the callback origin.
fn is_literal(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
        )
        || matches!(byte, b';' | b'=' | b':' | b'/')
}

/// The request target that asks the tracked site for a normalised `path`.
pub fn request_target(path: &str) -> String {
    let mut target = String::with_capacity(path.len() + 16);
    for &byte in path.as_bytes() {
        if is_literal(byte) {
            target.push(byte as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            target.push('%');
            target.push(HEX[usize::from(byte >> 4)] as char);
            target.push(HEX[usize::from(byte & 15)] as char);
        }
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ordinary_paths_and_drops_query_and_fragment() {
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(
            normalize("/blog/rust-vs-julia").unwrap(),
            "/blog/rust-vs-julia"
        );
        assert_eq!(normalize("/blog/?utm_source=x#top").unwrap(), "/blog/");
        assert_eq!(normalize("/caf%C3%A9").unwrap(), "/café");
        assert_eq!(normalize("/100%25").unwrap(), "/100%");
        assert_eq!(
            normalize("/what%3F").unwrap(),
            "/what?",
            "an encoded ? is part of the path"
        );
        assert_eq!(normalize("/a//b").unwrap(), "/a//b");
        assert_eq!(normalize("/.well-known/x").unwrap(), "/.well-known/x");
        assert_eq!(
            normalize("/a;b/c").unwrap(),
            "/a;b/c",
            "parameters are fine"
        );
        assert_eq!(
            normalize("/...;x/y").unwrap(),
            "/...;x/y",
            "three dots are a name"
        );
    }

    #[test]
    fn refuses_paths_that_could_be_read_two_ways() {
        let cases = [
            ("", PathError::Empty),
            ("?x=1", PathError::Empty),
            ("blog", PathError::NotAbsolute),
            ("http://evil.example/", PathError::NotAbsolute),
            ("%2Fblog", PathError::NotAbsolute),
            ("//evil.example/x", PathError::SchemeRelative),
            ("/%2Fevil.example", PathError::EncodedSlash),
            ("/\\evil.example", PathError::Backslash),
            ("/%5C%5Cevil.example", PathError::Backslash),
            ("/@evil.example", PathError::At),
            ("/x%40evil.example", PathError::At),
            ("/a/../admin", PathError::DotSegment),
            ("/a/%2e%2e/admin", PathError::DotSegment),
            ("/a/.", PathError::DotSegment),
            ("/..", PathError::DotSegment),
            ("/x/..;/admin", PathError::DotSegment),
            ("/x/..%3B/admin", PathError::DotSegment),
            ("/x/%2e%2e;jsessionid=1/admin", PathError::DotSegment),
            ("/x/.;a=b/y", PathError::DotSegment),
            ("/a%2Fb", PathError::EncodedSlash),
            ("/a%2fb", PathError::EncodedSlash),
            ("/a%00b", PathError::Encoding(DecodeError::ControlCharacter)),
            (
                "/a%0d%0aHost:%20evil",
                PathError::Encoding(DecodeError::ControlCharacter),
            ),
            ("/a%ff", PathError::Encoding(DecodeError::NotUtf8)),
            ("/a%", PathError::Encoding(DecodeError::BadEscape)),
        ];
        for (raw, expected) in cases {
            assert_eq!(normalize(raw), Err(expected), "{raw:?}");
        }
        assert_eq!(
            normalize(&format!("/{}", "a".repeat(MAX_PATH_BYTES))),
            Err(PathError::TooLong)
        );
        assert_eq!(
            normalize(&format!("/{}", "%C3%A9".repeat(600))),
            Err(PathError::TooLong)
        );
        assert!(normalize(&format!("/{}", "a".repeat(MAX_PATH_BYTES - 1))).is_ok());
    }

    #[test]
    fn request_targets_are_a_single_encoded_path() {
        assert_eq!(request_target("/blog/rust"), "/blog/rust");
        assert_eq!(request_target("/café"), "/caf%C3%A9");
        assert_eq!(request_target("/what?#"), "/what%3F%23");
        assert_eq!(request_target("/100% sure"), "/100%25%20sure");
        assert_eq!(request_target("/a\"<b>"), "/a%22%3Cb%3E");
    }

    #[test]
    fn normalising_the_request_target_gives_the_path_back() {
        for path in ["/", "/café", "/what?", "/100% sure", "/a;b=c", "/ü/ß/€"] {
            assert_eq!(normalize(&request_target(path)).unwrap(), path);
        }
    }
}

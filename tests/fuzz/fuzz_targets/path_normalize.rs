//! `paths::normalize::normalize` and `request_target`.
//!
//! The path decides which URL the tracker requests from the tracked site, so besides "no
//! panic" we check the whole contract from the module documentation:
//! - every accepted path has exactly the shape the SSRF defence relies on (no dot segment,
//!   also not with `;parameters`, and no `%2F`, which would merge two distinct paths);
//! - every refusal is justified by the input (so, with the first point, the accepted set
//!   is exactly the documented one, without copying the code's order of checks);
//! - the request target is one encoded path that normalises back to the same path;
//! - the dashboard's `/stats?path=` link for a stored path leads back to that path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxitraffic::dashboard::html::Html;
use oxitraffic::paths::normalize::{MAX_PATH_BYTES, PathError, normalize, request_target};
use oxitraffic::query;
use oxitraffic_fuzz::{
    decode_escapes, escapes_are_canonical, forbidden, reference_decode, utf8_prefix,
};

/// `.` or `..` as a whole segment, or before the segment's first `;` (`..;x`): what a
/// Tomcat-style server resolves as a dot segment.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let name = match segment.find(';') {
            Some(at) => &segment[..at],
            None => segment,
        };
        matches!(name, "." | "..")
    })
}

/// `%2F` in either case: decoding it would make `/a%2Fb` the same stored path as `/a/b`.
fn has_encoded_slash(text: &str) -> bool {
    text.to_ascii_lowercase().contains("%2f")
}

/// A request target must be a single origin-form path: nothing that ends the path (`?`,
/// `#`), splits the request line (space, controls), or reads as another authority.
fn check_request_target(source: &str, target: &str) {
    assert!(target.is_ascii(), "{source:?} -> {target:?}: not ASCII");
    assert!(
        !target.contains(['?', '#', ' ', '\\', '@'])
            && !target.bytes().any(|b| b.is_ascii_control()),
        "{source:?} -> {target:?}: ends the path or splits the request line"
    );
    assert!(
        escapes_are_canonical(target),
        "{source:?} -> {target:?}: stray %"
    );
    assert_eq!(
        decode_escapes(target).as_deref(),
        Some(source.as_bytes()),
        "{target:?} does not decode to {source:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let raw = utf8_prefix(data);
    let result = normalize(raw);

    // What the browser sent before any query or fragment, and its decoded form.
    let before_query = raw.split(['?', '#']).next().unwrap_or("");
    let decoded = reference_decode(before_query);

    match &result {
        Ok(path) => {
            assert_eq!(
                Ok(path.as_ref()),
                decoded.as_deref(),
                "{raw:?}: not the decoded input"
            );
            assert!(!has_encoded_slash(before_query), "{raw:?}: %2F accepted");
            assert!(
                path.starts_with('/') && !path.starts_with("//"),
                "{raw:?} -> {path:?}: not exactly one leading /"
            );
            assert!(!path.contains(['\\', '@']), "{raw:?} -> {path:?}: \\ or @");
            assert!(
                !path.chars().any(|c| c.is_control() || forbidden(c)),
                "{raw:?} -> {path:?}: control character"
            );
            assert!(!has_dot_segment(path), "{raw:?} -> {path:?}: dot segment");
            assert!(
                path.len() <= MAX_PATH_BYTES,
                "{raw:?}: {} bytes",
                path.len()
            );

            let target = request_target(path);
            check_request_target(path, &target);
            assert!(
                target.starts_with('/') && !target.starts_with("//"),
                "{target:?}"
            );
            assert_eq!(
                normalize(&target).as_deref(),
                Ok(path.as_ref()),
                "request_target({path:?}) = {target:?} does not normalise back"
            );

            // The dashboard links to `/stats?path=` + url_component(request_target(path));
            // the stats handler reads it with query::param and normalize.
            let mut link = Html::new();
            link.url_component(&target);
            let query = format!("path={}&range=30d", link.as_str());
            let param = query::param(Some(&query), "path");
            let param = param.unwrap_or_else(|e| panic!("{query:?}: {e}"));
            let back = param.as_deref().map(normalize);
            assert_eq!(
                back.as_ref().map(|b| b.as_deref()),
                Some(Ok(path.as_ref())),
                "dashboard link {query:?}"
            );
        }
        Err(error) => {
            // The message becomes a 400 body; it must format and stay on one line.
            let message = error.to_string();
            assert!(
                !message.is_empty() && !message.contains(['\n', '\r']),
                "{message:?}"
            );
            let justified = match error {
                PathError::Empty => before_query.is_empty(),
                PathError::NotAbsolute => !before_query.starts_with('/'),
                PathError::TooLong => {
                    before_query.len() > 3 * MAX_PATH_BYTES
                        || decoded.as_ref().is_ok_and(|p| p.len() > MAX_PATH_BYTES)
                }
                PathError::Encoding(reason) => decoded == Err(*reason),
                PathError::SchemeRelative => decoded.as_ref().is_ok_and(|p| p.starts_with("//")),
                PathError::Backslash => decoded.as_ref().is_ok_and(|p| p.contains('\\')),
                PathError::At => decoded.as_ref().is_ok_and(|p| p.contains('@')),
                PathError::DotSegment => decoded.as_ref().is_ok_and(|p| has_dot_segment(p)),
                PathError::EncodedSlash => has_encoded_slash(before_query),
            };
            assert!(justified, "{raw:?} refused as {error:?} without reason");
        }
    }

    // request_target is only ever given normalised paths, but it is total: whatever it is
    // given, the result must still be one path that decodes back to its input.
    check_request_target(raw, &request_target(raw));
});

//! `paths::exclude::PathPattern`: the `exclude_paths` patterns, parsed from the
//! configuration and matched against every new path a visitor registers.
//!
//! Input format: NUL-separated text fields. Field 0 is the pattern, fields 1.. are paths
//! matched against it.
//!
//! Checked:
//! - `parse` never panics, accepts exactly the patterns the module documentation allows
//!   (a reference written from it), and its errors are one line;
//! - an accepted pattern could match something: with each `*` read as `x` it is a path that
//!   `normalize` stores unchanged, and the pattern matches it (so no pattern is accepted
//!   that could never match, which the documentation promises);
//! - `matches` agrees with a dynamic-programming glob matcher (`*` is any run of
//!   characters other than `/`; a trailing `/**` matches the path before it and everything
//!   below), on the input paths, on the pattern's own text and on paths derived from it,
//!   when both are at most 256 bytes (the reference is quadratic).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxitraffic::paths::exclude::{MAX_PATTERN_BYTES, PathPattern};
use oxitraffic::paths::normalize::{normalize, request_target};
use oxitraffic_fuzz::{fields, forbidden};

/// The pattern without a trailing `/**`, and whether it had one.
fn body_of(text: &str) -> (&str, bool) {
    match text.strip_suffix("/**") {
        Some(body) => (body, true),
        None => (text, false),
    }
}

/// The rules of the module documentation, one by one.
fn reference_accepts(text: &str) -> bool {
    let (body, _) = body_of(text);
    text.starts_with('/')
        && text.len() <= MAX_PATTERN_BYTES
        && !text.chars().any(forbidden)
        && !text.contains(['?', '#', '\\', '@'])
        && !text.starts_with("//")
        && !body.contains("**")
        && !body.split('/').any(|segment| {
            // `.` or `..`, also with `;parameters`: paths never hold those (`normalize`).
            let name = segment.split(';').next().unwrap_or(segment);
            name == "." || name == ".."
        })
}

/// Whether `glob` (only `*` special, never matching `/`) matches all of `text`.
fn glob(glob: &[char], text: &[char]) -> bool {
    // matched[j]: glob[i..] matches text[j..], computed from the end of the glob.
    let mut matched = vec![false; text.len() + 1];
    matched[text.len()] = true;
    for &g in glob.iter().rev() {
        let mut next = vec![false; text.len() + 1];
        for j in (0..=text.len()).rev() {
            next[j] = if g == '*' {
                matched[j] || (j < text.len() && text[j] != '/' && next[j + 1])
            } else {
                j < text.len() && text[j] == g && matched[j + 1]
            };
        }
        matched = next;
    }
    matched[0]
}

fn reference_matches(pattern: &str, path: &str) -> bool {
    if !path.starts_with('/') {
        return false;
    }
    let (body, subtree) = body_of(pattern);
    let body: Vec<char> = body.chars().collect();
    let path: Vec<char> = path.chars().collect();
    if !subtree {
        return glob(&body, &path);
    }
    // The body matches the whole path or a part of it that ends before a `/`.
    (0..=path.len()).any(|end| (end == path.len() || path[end] == '/') && glob(&body, &path[..end]))
}

/// Inputs the quadratic reference is run on; longer ones are only matched (no panic), which
/// keeps executions fast without losing the interesting shapes (they are all small).
const REFERENCE_CHARS: usize = 256;

fn check_match(pattern: &PathPattern, path: &str) {
    let matched = pattern.matches(path);
    if pattern.as_str().len() <= REFERENCE_CHARS && path.len() <= REFERENCE_CHARS {
        assert_eq!(
            matched,
            reference_matches(pattern.as_str(), path),
            "{pattern:?} against {path:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let fields = fields(data);
    let text = fields[0];
    let parsed = PathPattern::parse(text);
    assert_eq!(
        parsed.is_ok(),
        reference_accepts(text),
        "{text:?}: {parsed:?}"
    );
    let pattern = match parsed {
        Ok(pattern) => pattern,
        Err(error) => {
            // Shown after the setting's name; the configuration escapes control characters
            // when it shows the error (the `config` target checks that).
            assert!(error.starts_with("has a pattern ("), "{error:?}");
            if !text.contains(['\n', '\r']) {
                assert!(!error.contains(['\n', '\r']), "{error:?}");
            }
            return;
        }
    };
    assert_eq!(pattern.as_str(), text);
    assert_eq!(pattern.to_string(), text);

    // A path the pattern was written for: `*` as `x`, `/**` as nothing.
    let (body, subtree) = body_of(text);
    let witness = match body.replace('*', "x") {
        empty if empty.is_empty() => "/".to_string(),
        witness => witness,
    };
    let stored = normalize(&request_target(&witness)).map(|p| p.into_owned());
    assert_eq!(
        stored.as_deref(),
        Ok(witness.as_str()),
        "{text:?} can never match: {witness:?} is no stored path"
    );
    assert!(pattern.matches(&witness), "{text:?} against {witness:?}");
    if subtree {
        assert!(pattern.matches(&format!("{witness}/below/it")));
    }

    check_match(&pattern, text);
    check_match(&pattern, &witness);
    check_match(&pattern, &format!("{witness}x"));
    check_match(&pattern, &format!("{witness}/x"));
    for path in fields.iter().skip(1) {
        check_match(&pattern, path);
        check_match(&pattern, &format!("/{path}"));
    }
});

//! `referrer::clean`, which decides what of a visitor's referrer is stored.
//!
//! Input format: the referrer, optionally followed by a NUL and the tracked origin (which
//! defaults to `https://example.org` when absent or invalid).
//!
//! The stored referrer must never carry what the privacy section of the spec strips: no
//! query, no fragment, no `user:password@`, and it is bounded in length. A link from the
//! tracked site itself is no referrer. It is checked both on arbitrary text and on what
//! the real pipeline gives it (the decoded `referrer` query parameter).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxitraffic::config::Origin;
use oxitraffic::query;
use oxitraffic::referrer::{MAX_REFERRER_BYTES, clean};
use oxitraffic_fuzz::{fields, tolerated};

/// `authority` (no userinfo) split into host and port, minding IPv6 brackets.
fn host_and_port(authority: &str) -> (&str, Option<&str>) {
    let colon = match authority.rfind(']') {
        Some(bracket) => authority[bracket..].find(':').map(|i| bracket + i),
        None => authority.rfind(':'),
    };
    match colon {
        Some(i) => (&authority[..i], Some(&authority[i + 1..])),
        None => (authority, None),
    }
}

/// Whether `authority` reads as a URL's host and port: a host without stray `:` (outside
/// IPv6 brackets) or spaces, and a port of digits.
fn well_formed(authority: &str) -> bool {
    let (host, port) = host_and_port(authority);
    !host.is_empty()
        && !host.chars().any(|c| c.is_whitespace() || c == '\\')
        && (host.starts_with('[') || !host.contains(':'))
        && port.is_none_or(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
}

/// The authority of the URL in `raw` after any userinfo, read the plain way.
fn input_authority(raw: &str) -> Option<&str> {
    let url = raw.trim().split(['?', '#']).next()?;
    let (_, rest) = url.split_once("://")?;
    rest.split('/').next()?.rsplit('@').next()
}

fn check(raw: &str, site: &Origin) {
    let Some(stored) = clean(raw, site) else {
        return;
    };
    assert!(
        stored.len() <= MAX_REFERRER_BYTES,
        "{raw:?}: {} bytes",
        stored.len()
    );
    assert!(
        !stored.contains(['?', '#']),
        "{raw:?} -> {stored:?}: query or fragment"
    );
    let (scheme, rest) = stored
        .split_once("://")
        .unwrap_or_else(|| panic!("{raw:?} -> {stored:?}: not absolute"));
    assert!(
        scheme.starts_with(|c: char| c.is_ascii_lowercase())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b)),
        "{raw:?} -> {stored:?}: scheme"
    );
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    assert!(
        !authority.contains('@'),
        "{raw:?} -> {stored:?}: userinfo kept"
    );
    assert_eq!(
        authority.to_ascii_lowercase(),
        authority,
        "{raw:?} -> {stored:?}: host not lower-cased"
    );
    assert!(path.starts_with('/'), "{raw:?} -> {stored:?}: no path");
    // The path is the input's own (or `/` when cut back to the origin), never invented.
    assert!(
        raw.contains(path),
        "{raw:?} -> {stored:?}: path not from the input"
    );

    // What is stored must read back as a host and port; anything else means the input was
    // not a URL, which the module says is dropped.
    let stored_ok = well_formed(authority);
    if !stored_ok && !tolerated("referrer-authority") {
        panic!("{raw:?} -> {stored:?}: authority is not a host and port");
    }
    // The tracked site's own pages are no referrer, whatever the scheme or port. When
    // malformed authorities are tolerated, only well-formed inputs are held to this: a
    // malformed one (`example.org:80:`) can be stored as what reads back as the site.
    let input_ok = input_authority(raw).is_some_and(well_formed);
    if stored_ok && (input_ok || !tolerated("referrer-authority")) {
        let (host, _) = host_and_port(authority);
        assert_ne!(host, site.host, "{raw:?} -> {stored:?}: the site itself");
    }
}

fuzz_target!(|data: &[u8]| {
    let fields = fields(data);
    let raw = fields[0];
    let site = fields
        .get(1)
        .and_then(|origin| Origin::parse(origin).ok())
        .unwrap_or_else(|| Origin::parse("https://example.org").expect("a valid origin"));

    check(raw, &site);
    // As `/post-sleep` does it: the `referrer` parameter, decoded, then cleaned.
    let query = format!("referrer={raw}");
    if let Ok(Some(decoded)) = query::param(Some(&query), "referrer") {
        check(&decoded, &site);
    }
});

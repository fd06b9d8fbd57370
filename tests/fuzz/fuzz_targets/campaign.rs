//! `counting::campaign_part`: the `utm_source`, `utm_medium` and `utm_campaign` parameters
//! of `/post-sleep`, which are stored with the visit and shown on the dashboard.
//!
//! Input format: NUL-separated text fields. Field 0 is the query string; field 1, when
//! present, is one more parameter name to look up; fields 2.. are values that are encoded
//! (as `count.js` does, with `encodeURIComponent`) into a query of their own.
//!
//! What is kept never panics the handler, has at most `MAX_CAMPAIGN_CHARS` characters, no
//! control character or bidi override, no surrounding whitespace, and is never empty;
//! anything else (a broken escape, a repeat, too long) drops the parameter, never the visit.
//! The kept value agrees exactly with a reference built on the reference query splitter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxitraffic::counting::{MAX_CAMPAIGN_CHARS, campaign_part};
use oxitraffic_fuzz::{encode_component, fields, forbidden, reference_param};

const NAMES: [&str; 3] = ["utm_source", "utm_medium", "utm_campaign"];

/// The documented rule: the decoded value, trimmed, if it is well-formed, given once, not
/// empty and at most 100 characters.
fn reference(query: &str, name: &str) -> Option<String> {
    let value = reference_param(query, name).ok()??;
    let trimmed = value.trim_matches(char::is_whitespace);
    let length = trimmed.chars().count();
    (1..=MAX_CAMPAIGN_CHARS)
        .contains(&length)
        .then(|| trimmed.to_string())
}

fn check(query: &str, name: &str) {
    let kept = campaign_part(Some(query), name);
    if let Some(value) = &kept {
        assert!(
            !value.is_empty() && value.chars().count() <= MAX_CAMPAIGN_CHARS,
            "{query:?}: {value:?}"
        );
        assert!(
            !value.chars().any(|c| c.is_control() || forbidden(c)),
            "{query:?}: {value:?} has a control character"
        );
        assert_eq!(value.trim(), value, "{query:?}: not trimmed");
    }
    assert_eq!(kept, reference(query, name), "{query:?} [{name}]");
}

fuzz_target!(|data: &[u8]| {
    let fields = fields(data);
    let query = fields[0];
    for name in NAMES {
        check(query, name);
    }
    if let Some(name) = fields.get(1) {
        check(query, name);
    }
    // No query at all: nothing kept.
    assert_eq!(campaign_part(None, "utm_source"), None);

    // What count.js sends: each value encoded with encodeURIComponent, after the referrer.
    let values: Vec<&str> = fields.iter().skip(2).copied().collect();
    if !values.is_empty() {
        let mut built = String::from("referrer=https%3A%2F%2Fexample.net%2F");
        for (name, value) in NAMES.iter().zip(&values) {
            built.push_str(&format!("&{name}={}", encode_component(value, false)));
        }
        for (name, value) in NAMES.iter().zip(&values) {
            let kept = campaign_part(Some(&built), name);
            let trimmed = value.trim();
            let keepable = !trimmed.is_empty()
                && trimmed.chars().count() <= MAX_CAMPAIGN_CHARS
                && !value.chars().any(forbidden);
            assert_eq!(
                kept.as_deref(),
                keepable.then_some(trimmed),
                "{value:?} sent as {built:?}"
            );
        }
    }
});

//! `query::percent_decode` and `query::param`, which every parameter a client sends goes
//! through (path, referrer, range).
//!
//! Input format: NUL-separated text fields. Field 0 is decoded and used as a query string;
//! field 1 is the parameter name looked up in it; fields 2.. are name/value pairs that are
//! encoded into a query and must be found again.
//!
//! - decoding agrees exactly (value or error kind) with a naive reference;
//! - accepted output never contains a control character or bidi override;
//! - `param` agrees with a reference that splits the query the documented way;
//! - encoding then decoding gives a valid string back, whichever hex case the encoder used.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use oxitraffic::query::{self, DecodeError, is_forbidden_char};
use oxitraffic_fuzz::{encode_component, fields, forbidden, reference_decode, reference_param};

fn check_decoded(input: &str, decoded: &str) {
    assert!(
        !decoded
            .chars()
            .any(|c| c.is_control() || is_forbidden_char(c)),
        "{input:?} -> {decoded:?}: control character"
    );
}

fuzz_target!(|data: &[u8]| {
    let fields = fields(data);
    let text = fields[0];
    let name = fields.get(1).copied().unwrap_or("path");

    // The predicate the decoder uses must match the documented set.
    for c in text.chars() {
        assert_eq!(is_forbidden_char(c), forbidden(c), "{c:?}");
    }

    let decoded = query::percent_decode(text);
    assert_eq!(
        decoded.as_deref().map_err(|e| *e),
        reference_decode(text).as_deref().map_err(|e| *e),
        "{text:?}"
    );
    if let Ok(decoded) = &decoded {
        check_decoded(text, decoded);
        // Nothing to decode borrows; the handlers rely on that being cheap, not on it
        // being exact, so only check the documented direction.
        if !text.contains('%') {
            assert!(matches!(decoded, Cow::Borrowed(_)), "{text:?}");
        }
    }
    for message in [DecodeError::BadEscape, DecodeError::NotUtf8].map(|e| e.to_string()) {
        assert!(!message.contains('\n'));
    }

    // `param` over field 0 as a whole query string.
    let found = query::param(Some(text), name);
    assert_eq!(
        found.as_ref().map(|v| v.as_deref()).map_err(|e| *e),
        reference_param(text, name)
            .as_ref()
            .map(|v| v.as_deref())
            .map_err(|e| *e),
        "{name:?} in {text:?}"
    );
    if let Ok(Some(value)) = &found {
        check_decoded(text, value);
    }
    // No query at all has no parameters. (The empty name is excluded: an absent query
    // reads like the empty query, whose one empty pair has the empty name. The handlers
    // only ask for fixed, non-empty names.)
    if !name.is_empty() {
        assert_eq!(query::param(None, name), Ok(None), "{name:?}");
    }

    // Round trips: whatever the browser's encodeURIComponent (or a lower-case encoder)
    // produces from a string we accept must decode to exactly that string.
    for (i, field) in fields.iter().enumerate() {
        let lowercase = i % 2 == 1;
        let encoded = encode_component(field, lowercase);
        let back = query::percent_decode(&encoded);
        if field.chars().any(forbidden) {
            assert_eq!(
                back.as_deref(),
                Err(&DecodeError::ControlCharacter),
                "{field:?}"
            );
        } else {
            assert_eq!(back.as_deref(), Ok(*field), "{field:?} via {encoded:?}");
        }
    }

    // A query built from the pairs in fields 2.., plus noise parameters, must give back
    // the value of `name` (or Repeated when it occurs more than once).
    let pairs: Vec<(&str, &str)> = fields[2.min(fields.len())..]
        .chunks(2)
        .map(|pair| (pair[0], pair.get(1).copied().unwrap_or("")))
        .collect();
    if pairs
        .iter()
        .all(|(k, v)| !k.chars().chain(v.chars()).any(forbidden))
        && !name.chars().any(forbidden)
    {
        let mut query = String::from("utm_source=x");
        for (k, v) in &pairs {
            query.push('&');
            query.push_str(&encode_component(k, false));
            query.push('=');
            query.push_str(&encode_component(v, true));
        }
        query.push_str("&flag");
        let matching: Vec<&str> = pairs
            .iter()
            .filter(|(k, _)| k == &name)
            .map(|(_, v)| *v)
            .collect();
        let expected = match (name, matching.as_slice()) {
            // The noise parameters take part in the lookup too.
            ("utm_source" | "flag", []) => Ok(Some(if name == "flag" { "" } else { "x" })),
            ("utm_source" | "flag", _) => Err(DecodeError::Repeated),
            (_, []) => Ok(None),
            (_, [value]) => Ok(Some(*value)),
            (_, _) => Err(DecodeError::Repeated),
        };
        let got = query::param(Some(&query), name);
        assert_eq!(
            got.as_ref().map(|v| v.as_deref()).map_err(|e| *e),
            expected,
            "{name:?} in {query:?}"
        );
    }
});

//! `slots::Token::parse`, the first thing `/post-sleep/TOKEN` and `/page-left/TOKEN/…` do
//! with the URL, compared with a reference written from its documentation ("digits only,
//! below 2^53"), and the route table that extracts TOKEN from the request path.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use oxitraffic::routes::{Route, Routes, TABLE};
use oxitraffic::slots::{TOKEN_BITS, Token};
use oxitraffic_fuzz::utf8_prefix;

/// 2^53 has 16 decimal digits; the parser bounds its work there and so does the reference.
const MAX_DIGITS: usize = 16;

/// The token value `text` names, computed in `u128` digit by digit.
fn reference(text: &str) -> Option<u64> {
    // The form the tracker writes: no leading zero, so one token has one spelling.
    if text.is_empty() || text.len() > MAX_DIGITS || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    let mut value: u128 = 0;
    for c in text.chars() {
        value = value * 10 + u128::from(c.to_digit(10).filter(|_| c.is_ascii_digit())?);
    }
    (value < 1 << TOKEN_BITS).then_some(value as u64)
}

static ROUTES: LazyLock<Routes> = LazyLock::new(Routes::new);

fuzz_target!(|data: &[u8]| {
    let text = utf8_prefix(data);
    let parsed = Token::parse(text);
    assert_eq!(parsed.map(Token::get), reference(text), "{text:?}");

    if let Some(token) = parsed {
        assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
        assert!(token.get() < 1 << TOKEN_BITS, "{text:?}");
        // What /register sends is the decimal form; it must parse to the same token.
        let canonical = token.get().to_string();
        assert_eq!(Token::parse(&canonical), Some(token), "{canonical:?}");
        assert_eq!(canonical, text);
    }

    // The router hands the handlers the raw path segment: any text must route without a
    // panic, and a non-empty segment without `/` must reach its handler unchanged.
    let _ = ROUTES.at(text);
    let segment = !text.is_empty() && !text.contains('/');
    for (path, expected) in [
        (format!("/post-sleep/{text}"), Route::PostSleep),
        (format!("/page-left/{text}/60"), Route::PageLeft),
    ] {
        let matched = ROUTES.at(&path);
        if segment {
            let (index, params) = matched.unwrap_or_else(|| panic!("{path:?} not routed"));
            assert_eq!(TABLE[index].route, expected, "{path:?}");
            assert_eq!(params.get("token"), Some(text), "{path:?}");
        }
    }
});

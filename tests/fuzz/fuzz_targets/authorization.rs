//! `access::parse_authorization`, `access::decode_base64` and `access::constant_time_eq`:
//! what a private dashboard, API or `/metrics` reads from every request's `Authorization`
//! header before anything is verified.
//!
//! Input: raw bytes, used whole as a header value, as base64 text and as bytes to encode;
//! split at the first NUL into two byte strings for the comparison.
//!
//! Checked:
//! - `decode_base64` agrees with a reference that decodes leniently and then insists that
//!   the reference encoder gives back exactly the input: so the standard alphabet only,
//!   padding to a multiple of four, `=` only at the end, unused bits zero, one spelling per
//!   byte string; and anything encoded by the reference decodes back to itself;
//! - `parse_authorization` agrees with a reference written from RFC 9110 §11 (a
//!   case-insensitive scheme, one or more spaces, a token68 and nothing else, at most
//!   `MAX_AUTHORIZATION_BYTES`), Basic credentials decoded and split at the first `:`;
//! - a Basic header built from any `user:password` (user without `:`) reads back as that
//!   user and password, whatever the scheme's case and the number of spaces;
//! - `constant_time_eq` is `==`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxitraffic::access::{
    Authorization, MAX_AUTHORIZATION_BYTES, constant_time_eq, decode_base64, parse_authorization,
};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// RFC 4648 §4 with padding, by bit accumulation.
fn encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for &byte in bytes {
        buffer = buffer << 8 | u32::from(byte);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[(buffer >> bits & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[(buffer << (6 - bits) & 63) as usize] as char);
    }
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

/// Decodes whatever can be decoded (alphabet characters, trailing `=` ignored, leftover
/// bits dropped), then keeps the result only if it is the one encoding of it.
fn reference_decode(text: &[u8]) -> Option<Vec<u8>> {
    let body = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for &char in body {
        let value = ALPHABET.iter().position(|&c| c == char)? as u32;
        buffer = (buffer << 6 | value) & 0xFFFF;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    (encode(&out).as_bytes() == text).then_some(out)
}

#[derive(Debug, PartialEq)]
enum Expected<'a> {
    Basic(String, String),
    Bearer(&'a [u8]),
}

fn reference_authorization(value: &[u8]) -> Option<Expected<'_>> {
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return None;
    }
    let space = value.iter().position(|&b| b == b' ')?;
    let scheme = value[..space].to_ascii_lowercase();
    // One or more spaces (no tabs: `1*SP`) before the credential.
    let rest = &value[space..];
    let credential = &rest[rest.iter().take_while(|&&b| b == b' ').count()..];
    // token68: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let padding = credential.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &credential[..credential.len() - padding];
    let token68 = !body.is_empty()
        && body
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !token68 {
        return None;
    }
    match scheme.as_slice() {
        b"bearer" => Some(Expected::Bearer(credential)),
        b"basic" => {
            let decoded = String::from_utf8(reference_decode(credential)?).ok()?;
            let (user, password) = decoded.split_once(':')?;
            Some(Expected::Basic(user.to_string(), password.to_string()))
        }
        _ => None,
    }
}

fn check_header(value: &[u8]) {
    let parsed = parse_authorization(value).map(|authorization| match authorization {
        Authorization::Basic(credentials) => Expected::Basic(
            credentials.user().to_string(),
            credentials.password().to_string(),
        ),
        Authorization::Bearer(token) => Expected::Bearer(token),
    });
    assert_eq!(
        parsed,
        reference_authorization(value),
        "{:?}",
        String::from_utf8_lossy(value)
    );
}

fuzz_target!(|data: &[u8]| {
    // Base64, both ways.
    assert_eq!(decode_base64(data), reference_decode(data), "{data:?}");
    let encoded = encode(data);
    assert_eq!(
        decode_base64(encoded.as_bytes()).as_deref(),
        Some(data),
        "{encoded}"
    );

    // The header value as sent, and headers built from the input's text.
    check_header(data);
    let text = String::from_utf8_lossy(data);
    let (user, password) = text.split_once(':').unwrap_or((&text, ""));
    let credentials = encode(format!("{user}:{password}").as_bytes());
    let spaces = " ".repeat(1 + data.first().map_or(0, |b| usize::from(b % 3)));
    for scheme in ["Basic", "basic", "BASIC"] {
        let header = format!("{scheme}{spaces}{credentials}");
        check_header(header.as_bytes());
        if header.len() <= MAX_AUTHORIZATION_BYTES {
            match parse_authorization(header.as_bytes()) {
                Some(Authorization::Basic(parsed)) => {
                    assert_eq!((parsed.user(), parsed.password()), (user, password));
                }
                other => panic!("{header:?}: {other:?}"),
            }
        }
    }
    for scheme in ["Bearer", "bEARER"] {
        check_header(format!("{scheme}{spaces}{encoded}").as_bytes());
    }

    // The comparison: equal inputs, the two halves, and one flipped bit.
    let (a, b) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    assert_eq!(constant_time_eq(a, b), a == b);
    assert!(constant_time_eq(data, data));
    if let Some(&last) = data.last() {
        let mut flipped = data.to_vec();
        *flipped.last_mut().expect("not empty") = last ^ 1 << (data.len() % 8);
        assert!(!constant_time_eq(data, &flipped));
    }
});

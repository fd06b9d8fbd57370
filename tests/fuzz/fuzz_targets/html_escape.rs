//! `dashboard::html::Html`: the only way visitor-supplied text reaches a page.
//!
//! - `text` output can neither open a tag nor close a quoted attribute, every `&` in it
//!   starts one of the five entities, and unescaping gives the input back (nothing lost,
//!   nothing doubled);
//! - `url_component` output is only unreserved characters, `/` and `%XX`, and decodes back
//!   to the input bytes;
//! - `number` and `count` (formatting, the other way values enter a page) never produce
//!   markup and read back as the value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxitraffic::dashboard::html::Html;
use oxitraffic_fuzz::{decode_escapes, escapes_are_canonical, utf8_prefix};

const ENTITIES: [(&str, char); 5] = [
    ("&amp;", '&'),
    ("&lt;", '<'),
    ("&gt;", '>'),
    ("&quot;", '"'),
    ("&#39;", '\''),
];

/// Reverses entity escaping, refusing any `&` that does not start a known entity (it would
/// be ambiguous to a browser).
fn unescape(html: &str) -> Option<String> {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let (entity, c) = ENTITIES
            .iter()
            .find(|(entity, _)| rest[amp..].starts_with(entity))?;
        out.push(*c);
        rest = &rest[amp + entity.len()..];
    }
    out.push_str(rest);
    Some(out)
}

fn word(data: &[u8], at: usize) -> [u8; 8] {
    let mut bytes = [0; 8];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = data.get(at + i).copied().unwrap_or(0);
    }
    bytes
}

fuzz_target!(|data: &[u8]| {
    let text = utf8_prefix(data);

    let mut html = Html::new();
    html.text(text);
    let escaped = html.as_str();
    assert!(
        !escaped.contains(['<', '>', '"', '\'']),
        "{text:?} -> {escaped:?}"
    );
    assert_eq!(unescape(escaped).as_deref(), Some(text), "{escaped:?}");

    // In context: only our own quotes and brackets remain.
    let mut attribute = Html::new();
    attribute
        .raw("<a title=\"")
        .text(text)
        .raw("\">")
        .text(text)
        .raw("</a>");
    let out = attribute.as_str();
    assert_eq!(out.matches('"').count(), 2, "{out:?}");
    assert_eq!(
        out.matches('<').count() + out.matches('>').count(),
        4,
        "{out:?}"
    );

    let mut url = Html::new();
    url.url_component(text);
    let encoded = url.as_str();
    assert!(
        encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~/%".contains(&b)),
        "{text:?} -> {encoded:?}"
    );
    assert!(escapes_are_canonical(encoded), "{encoded:?}");
    assert_eq!(
        decode_escapes(encoded).as_deref(),
        Some(text.as_bytes()),
        "{encoded:?}"
    );

    // Numbers from the first bytes (they overlap the text; that is fine for a fuzzer).
    let integer = i64::from_le_bytes(word(data, 0));
    let mut count = Html::new();
    count.count(integer);
    let digits: String = count
        .as_str()
        .chars()
        .filter(|&c| c != '\u{202F}')
        .collect();
    assert_eq!(
        digits.parse::<i64>().ok(),
        Some(integer),
        "{:?}",
        count.as_str()
    );
    assert!(
        !count.as_str().starts_with('\u{202F}'),
        "{:?}",
        count.as_str()
    );

    let float = f64::from_le_bytes(word(data, 8));
    let mut number = Html::new();
    number.number(float);
    let shown = number.as_str();
    let value: f64 = shown
        .parse()
        .unwrap_or_else(|_| panic!("{float:?} shown as {shown:?}"));
    assert!(value.is_finite(), "{float:?} shown as {shown:?}");
    if float.is_finite() {
        // One decimal place, or exact for whole numbers below 1e15.
        assert!(
            (value - float).abs() <= 0.05 + float.abs() * 1e-15,
            "{float:?} -> {shown:?}"
        );
    }
    let _ = number.number(integer as f64).number(text.len() as u32);
});

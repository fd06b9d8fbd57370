//! Helpers shared by the fuzz targets: turning libFuzzer's bytes into the strings the
//! tracker receives, and small, deliberately naive reference implementations that the
//! targets compare the real code against.
//!
//! The references are written differently from the code under test on purpose (splitting
//! instead of indexing, `u128` arithmetic instead of `str::parse`): a differential check
//! against a copy of the same code would only find bugs the copy does not share.

use oxitraffic::query::DecodeError;

/// The longest valid UTF-8 prefix of `data`.
///
/// Every string the tracker handles has already been checked to be UTF-8 (hyper's URI, our
/// query decoding, `read_to_string` for the config file), so non-UTF-8 bytes would only be
/// rejected before reaching the code under test. Taking the prefix, rather than discarding
/// the whole input, keeps every mutation useful.
pub fn utf8_prefix(data: &[u8]) -> &str {
    match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(error) => std::str::from_utf8(&data[..error.valid_up_to()]).expect("valid up to here"),
    }
}

/// `data` split at NUL bytes into UTF-8 fields (each cut at its first invalid byte).
///
/// NUL is the field separator because it cannot occur in the values it separates: not in
/// environment variables, and anything with a NUL is refused before parsing elsewhere. This
/// keeps multi-field inputs as plain text, so seeds can be written by hand and libFuzzer's
/// text mutations (and dictionaries) apply.
pub fn fields(data: &[u8]) -> Vec<&str> {
    data.split(|&b| b == 0).map(utf8_prefix).collect()
}

/// The characters the tracker must never store or echo in a path or referrer: C0/C1
/// controls, DEL and the bidirectional overrides. Written from the module documentation of
/// `oxitraffic::query`, not from its code.
pub fn forbidden(c: char) -> bool {
    let code = c as u32;
    code < 0x20
        || (0x7F..=0x9F).contains(&code)
        || (0x202A..=0x202E).contains(&code)
        || (0x2066..=0x2069).contains(&code)
}

/// `%XX` escapes decoded to bytes, or `None` if an escape is malformed. No UTF-8 or
/// character checks: those are layered on top by [`reference_decode`].
pub fn decode_escapes(text: &str) -> Option<Vec<u8>> {
    let mut pieces = text.split('%');
    let mut out = pieces.next().unwrap_or("").as_bytes().to_vec();
    for piece in pieces {
        let hex = piece.get(..2)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        out.push(u8::from_str_radix(hex, 16).ok()?);
        out.extend_from_slice(&piece.as_bytes()[2..]);
    }
    Some(out)
}

/// What `query::percent_decode` should return, by the rules in its documentation: escapes
/// first, then UTF-8, then forbidden characters.
pub fn reference_decode(text: &str) -> Result<String, DecodeError> {
    let bytes = decode_escapes(text).ok_or(DecodeError::BadEscape)?;
    let decoded = String::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
    if decoded.chars().any(forbidden) {
        return Err(DecodeError::ControlCharacter);
    }
    Ok(decoded)
}

/// `name`'s value in `query` by the documented rules of `query::param`: `&`-separated
/// pairs, the name and value each percent-decoded, a missing `=` meaning an empty value, a
/// repeat an error.
pub fn reference_param(query: &str, name: &str) -> Result<Option<String>, DecodeError> {
    let mut found = None;
    for pair in query.split('&') {
        let mut halves = pair.splitn(2, '=');
        let key = reference_decode(halves.next().unwrap_or(""))?;
        if key != name {
            continue;
        }
        // A repeat is an error whatever the second value holds.
        if found.is_some() {
            return Err(DecodeError::Repeated);
        }
        found = Some(reference_decode(halves.next().unwrap_or(""))?);
    }
    Ok(found)
}

/// `encodeURIComponent`-style encoding: every byte other than ASCII letters, digits and
/// `-_.!~*'()` becomes `%XX`, in upper or lower case hex.
pub fn encode_component(text: &str, lowercase: bool) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
            out.push(byte as char);
        } else if lowercase {
            out.push_str(&format!("%{byte:02x}"));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// True if every `%` in `text` starts an escape with two upper-case hex digits.
pub fn escapes_are_canonical(text: &str) -> bool {
    text.split('%').skip(1).all(|piece| {
        piece
            .get(..2)
            .is_some_and(|hex| hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')))
    })
}

/// Known findings a long campaign may be told to tolerate, so that one reported bug does
/// not stop the fuzzer from exploring everything behind it. Set
/// `OXITRAFFIC_FUZZ_TOLERATE=id1,id2`; by default nothing is tolerated and every invariant
/// is enforced. The ids are listed in README.md.
pub fn tolerated(id: &str) -> bool {
    use std::sync::OnceLock;
    static LIST: OnceLock<Vec<String>> = OnceLock::new();
    LIST.get_or_init(|| {
        std::env::var("OXITRAFFIC_FUZZ_TOLERATE")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
    .iter()
    .any(|known| known == id)
}

//! Strict reading of query strings and percent-encoded text.
//!
//! Anything that is not well-formed is refused with a reason the client can act on, never
//! repaired: a stray `%`, bytes that are not UTF-8 once decoded (no silent U+FFFD), control
//! characters (NUL included), or the same parameter given twice. `+` is kept as `+`: query
//! strings here come from `encodeURIComponent`, not from HTML forms.

use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    BadEscape,
    NotUtf8,
    ControlCharacter,
    Repeated,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::BadEscape => "malformed percent-encoding",
            DecodeError::NotUtf8 => "not valid UTF-8 once decoded",
            DecodeError::ControlCharacter => "contains a control character",
            DecodeError::Repeated => "given more than once",
        })
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Characters that never belong in a path or referrer we store: C0 and C1 controls, DEL,
/// and the Unicode bidirectional overrides that make text display differently from what
/// it is.
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Decodes `%XX` escapes once; borrows when there is nothing to decode.
pub fn percent_decode(text: &str) -> Result<Cow<'_, str>, DecodeError> {
    let decoded = if text.contains('%') {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let high = bytes.get(i + 1).copied().and_then(hex_value);
                let low = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(DecodeError::BadEscape);
                };
                out.push(high << 4 | low);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        Cow::Owned(String::from_utf8(out).map_err(|_| DecodeError::NotUtf8)?)
    } else {
        Cow::Borrowed(text)
    };
    if decoded.chars().any(is_forbidden_char) {
        return Err(DecodeError::ControlCharacter);
    }
    Ok(decoded)
}

/// The decoded value of parameter `name` in `query` (the part after `?`), if present.
pub fn param<'q>(query: Option<&'q str>, name: &str) -> Result<Option<Cow<'q, str>>, DecodeError> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(key)? != name {
            continue;
        }
        if found.is_some() {
            return Err(DecodeError::Repeated);
        }
        found = Some(percent_decode(value)?);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_keeps_plus() {
        assert_eq!(percent_decode("/caf%C3%A9").unwrap(), "/café");
        assert_eq!(percent_decode("/a+b%2Bc").unwrap(), "/a+b+c");
        assert!(matches!(
            percent_decode("/plain").unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn refuses_what_is_not_well_formed() {
        assert_eq!(percent_decode("%"), Err(DecodeError::BadEscape));
        assert_eq!(percent_decode("%4"), Err(DecodeError::BadEscape));
        assert_eq!(percent_decode("%zz"), Err(DecodeError::BadEscape));
        assert_eq!(percent_decode("%C3"), Err(DecodeError::NotUtf8));
        assert_eq!(percent_decode("%FF%FE"), Err(DecodeError::NotUtf8));
        assert_eq!(percent_decode("a%00b"), Err(DecodeError::ControlCharacter));
        assert_eq!(percent_decode("a%0Ab"), Err(DecodeError::ControlCharacter));
        assert_eq!(percent_decode("a%7Fb"), Err(DecodeError::ControlCharacter));
        assert_eq!(
            percent_decode("a%C2%85b"),
            Err(DecodeError::ControlCharacter),
            "C1 NEL"
        );
        assert_eq!(
            percent_decode("a%E2%80%AEb"),
            Err(DecodeError::ControlCharacter),
            "right-to-left override"
        );
    }

    #[test]
    fn finds_one_parameter() {
        let query = Some("x=1&path=%2Fblog%2F&empty=&flag");
        assert_eq!(param(query, "path").unwrap().as_deref(), Some("/blog/"));
        assert_eq!(param(query, "empty").unwrap().as_deref(), Some(""));
        assert_eq!(param(query, "flag").unwrap().as_deref(), Some(""));
        assert_eq!(param(query, "missing").unwrap(), None);
        assert_eq!(param(None, "path").unwrap(), None);
        assert_eq!(
            param(Some("p%61th=/x"), "path").unwrap().as_deref(),
            Some("/x"),
            "encoded names match"
        );
        assert_eq!(
            param(Some("path=/a&path=/b"), "path"),
            Err(DecodeError::Repeated)
        );
        assert_eq!(param(Some("path=%ZZ"), "path"), Err(DecodeError::BadEscape));
    }
}

//! Safe HTML by construction.
//!
//! [`Html`] only grows through methods that say what context a value goes into: literal
//! markup must be a `&'static str` (so it is written in this program, never received), text
//! and attribute values are entity-escaped, URL components are percent-encoded, numbers are
//! formatted. A visitor-supplied string has no way in unescaped. Templates in `assets/` are
//! filled with `Html` values only.

use std::fmt::{self, Write};

/// Markup known to be safe to send.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Html(String);

impl fmt::Debug for Html {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Html {
    pub fn new() -> Html {
        Html(String::new())
    }

    pub fn with_capacity(capacity: usize) -> Html {
        Html(String::with_capacity(capacity))
    }

    /// Markup written in this program.
    pub fn raw(&mut self, markup: &'static str) -> &mut Html {
        self.0.push_str(markup);
        self
    }

    /// Text content or a double-quoted attribute value, entity-escaped.
    pub fn text(&mut self, text: &str) -> &mut Html {
        escape_into(&mut self.0, text);
        self
    }

    /// A value inside a URL's query or path, percent-encoded (and so also attribute-safe).
    pub fn url_component(&mut self, component: &str) -> &mut Html {
        for byte in component.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
                self.0.push(byte as char);
            } else {
                let _ = write!(self.0, "%{byte:02X}");
            }
        }
        self
    }

    /// A number; formatting cannot produce markup.
    pub fn number(&mut self, value: impl Into<f64>) -> &mut Html {
        let value: f64 = value.into();
        if value.fract() == 0.0 && value.abs() < 1e15 {
            let _ = write!(self.0, "{}", value as i64);
        } else if value.is_finite() {
            let _ = write!(self.0, "{value:.1}");
        } else {
            self.0.push('0');
        }
        self
    }

    /// A number with at most `places` (≤ 6) decimals, trailing zeros dropped: SVG
    /// coordinates, where [`Html::number`]'s single decimal would misplace a year of thin
    /// bars. Fixed-point by hand: a chart writes thousands of these, and float formatting
    /// costs several times more.
    pub fn decimal(&mut self, value: f64, places: u32) -> &mut Html {
        let places = places.min(6);
        let scale = 10i64.pow(places);
        let scaled = (value * scale as f64).round();
        if !scaled.is_finite() || scaled.abs() >= 1e15 {
            self.0.push('0');
            return self;
        }
        let scaled = scaled as i64;
        if scaled < 0 {
            self.0.push('-');
        }
        let (whole, mut fraction) = (
            scaled.unsigned_abs() / scale as u64,
            scaled.unsigned_abs() % scale as u64,
        );
        let _ = write!(self.0, "{whole}");
        if fraction != 0 {
            let mut digits = places;
            while fraction % 10 == 0 {
                fraction /= 10;
                digits -= 1;
            }
            let _ = write!(self.0, ".{fraction:0width$}", width = digits as usize);
        }
        self
    }

    /// A whole number with thin-space thousands separators: `12 345`.
    pub fn count(&mut self, value: i64) -> &mut Html {
        group_digits(&mut self.0, value);
        self
    }

    /// Room for `additional` more bytes, so a large part is written without regrowing.
    pub fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }

    pub fn append(&mut self, other: &Html) -> &mut Html {
        self.0.push_str(&other.0);
        self
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Appends a whole number with narrow no-break spaces between groups of three digits
/// (`12 345`): the separator reads the same in every language and never wraps.
pub fn group_digits(out: &mut String, value: i64) {
    let mut buffer = [0; 20];
    let digits = crate::http::decimal_digits(value.unsigned_abs(), &mut buffer);
    if value < 0 {
        out.push('-');
    }
    for (i, &digit) in digits.iter().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202F}');
        }
        out.push(char::from(digit));
    }
}

/// [`group_digits`] as a new string, for text that is escaped later (tooltips).
pub fn grouped(value: i64) -> String {
    let mut out = String::with_capacity(24);
    group_digits(&mut out, value);
    out
}

/// Escapes the five characters that matter in text and in quoted attribute values.
pub fn escape_into(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(position) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..position]);
        out.push_str(match rest.as_bytes()[position] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        });
        rest = &rest[position + 1..];
    }
    out.push_str(rest);
}

/// An HTML file from `assets/` with `{{name}}` placeholders, split once at start-up.
pub struct Template {
    parts: Vec<Part>,
}

enum Part {
    Literal(&'static str),
    Slot(&'static str),
}

impl Template {
    pub fn parse(source: &'static str) -> Template {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            let end = rest[start..]
                .find("}}")
                .map(|e| start + e)
                .expect("an unclosed {{ in a template");
            parts.push(Part::Literal(&rest[..start]));
            parts.push(Part::Slot(rest[start + 2..end].trim()));
            rest = &rest[end + 2..];
        }
        parts.push(Part::Literal(rest));
        Template { parts }
    }

    /// The placeholders, in order (for checking a template against what fills it).
    pub fn slots(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.parts.iter().filter_map(|part| match part {
            Part::Slot(name) => Some(*name),
            Part::Literal(_) => None,
        })
    }

    /// Fills every placeholder; a placeholder without a value is a bug, caught by tests.
    pub fn render(&self, values: &[(&str, &Html)]) -> Html {
        let mut out = Html::with_capacity(4096);
        self.render_with(&mut out, |name, out| {
            let value = values.iter().find(|(key, _)| *key == name);
            debug_assert!(
                value.is_some(),
                "template placeholder {{{{{name}}}}} has no value"
            );
            if let Some((_, value)) = value {
                out.append(value);
            }
        });
        out
    }

    /// Appends the template to `out`, `fill` writing each placeholder's value in place: a
    /// whole page is written into one buffer, no part of it built apart and copied.
    pub fn render_with(&self, out: &mut Html, mut fill: impl FnMut(&'static str, &mut Html)) {
        for part in &self.parts {
            match part {
                Part::Literal(literal) => {
                    out.raw(literal);
                }
                Part::Slot(name) => fill(name, out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOADS: &[&str] = &[
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "' onmouseover='alert(1)",
        "javascript:alert(1)",
        "</title><script>x</script>",
        "&lt;already&gt;",
        "/a?b=c&d=e#f",
    ];

    #[test]
    fn text_and_attributes_cannot_break_out() {
        for payload in PAYLOADS {
            let mut html = Html::new();
            html.raw("<a title=\"")
                .text(payload)
                .raw("\">")
                .text(payload)
                .raw("</a>");
            let out = html.as_str();
            assert_eq!(out.matches('<').count(), 2, "only our two tags: {out}");
            assert_eq!(out.matches('>').count(), 2, "only our two tags: {out}");
            assert_eq!(
                out.matches('"').count(),
                2,
                "only our attribute quotes: {out}"
            );
            assert!(!out.contains('\''), "{out}");
        }
        let mut html = Html::new();
        html.text("a & b < c > d \" e ' f");
        assert_eq!(html.as_str(), "a &amp; b &lt; c &gt; d &quot; e &#39; f");
    }

    #[test]
    fn url_components_are_percent_encoded() {
        for payload in PAYLOADS {
            let mut html = Html::new();
            html.url_component(payload);
            assert!(
                html.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~/%".contains(&b)),
                "{html:?}"
            );
        }
        let mut html = Html::new();
        html.url_component("/café?x=1&y");
        assert_eq!(html.as_str(), "/caf%C3%A9%3Fx%3D1%26y");
    }

    #[test]
    fn numbers_and_counts() {
        let mut html = Html::new();
        html.number(3)
            .raw(" ")
            .number(2.25)
            .raw(" ")
            .number(f64::NAN)
            .raw(" ")
            .count(1234567)
            .raw(" ")
            .count(999);
        assert_eq!(html.as_str(), "3 2.2 0 1\u{202F}234\u{202F}567 999");
        let mut html = Html::new();
        html.decimal(12.5, 3)
            .raw(" ")
            .decimal(0.27397, 3)
            .raw(" ")
            .decimal(3.0, 3)
            .raw(" ")
            .decimal(-0.0001, 2)
            .raw(" ")
            .decimal(-2.5, 2)
            .raw(" ")
            .decimal(0.05, 3)
            .raw(" ")
            .decimal(f64::INFINITY, 2);
        assert_eq!(html.as_str(), "12.5 0.274 3 0 -2.5 0.05 0");
        assert_eq!(grouped(-1234), "-1\u{202F}234");
        assert_eq!(grouped(0), "0");
        assert_eq!(
            grouped(i64::MIN),
            "-9\u{202F}223\u{202F}372\u{202F}036\u{202F}854\u{202F}775\u{202F}808"
        );
    }

    #[test]
    fn templates_fill_every_slot() {
        let template = Template::parse("<h1>{{ title }}</h1><p>{{body}}</p>");
        assert_eq!(template.slots().collect::<Vec<_>>(), vec!["title", "body"]);
        let mut title = Html::new();
        title.text("<b>");
        let mut body = Html::new();
        body.raw("<em>ok</em>");
        let out = template.render(&[("title", &title), ("body", &body)]);
        assert_eq!(out.as_str(), "<h1>&lt;b&gt;</h1><p><em>ok</em></p>");
    }
}

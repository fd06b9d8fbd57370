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

    /// A whole number with thin-space thousands separators: `12 345`.
    pub fn count(&mut self, value: i64) -> &mut Html {
        let digits = value.unsigned_abs().to_string();
        if value < 0 {
            self.0.push('-');
        }
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                self.0.push('\u{202F}');
            }
            self.0.push(digit);
        }
        self
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

    /// Moves the markup written so far out, leaving this empty (for streaming in chunks).
    pub fn take(&mut self) -> String {
        std::mem::take(&mut self.0)
    }
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

    /// Renders everything before and everything after the placeholder `split`, so the part
    /// in between can be streamed.
    pub fn render_around(&self, values: &[(&str, &Html)], split: &str) -> (Html, Html) {
        let position = self
            .parts
            .iter()
            .position(|part| matches!(part, Part::Slot(name) if *name == split))
            .expect("the template has the placeholder to split at");
        let render = |parts: &[Part]| Template::render_parts(parts, values);
        (
            render(&self.parts[..position]),
            render(&self.parts[position + 1..]),
        )
    }

    /// Fills every placeholder; a placeholder without a value is a bug, caught by tests.
    pub fn render(&self, values: &[(&str, &Html)]) -> Html {
        Template::render_parts(&self.parts, values)
    }

    fn render_parts(parts: &[Part], values: &[(&str, &Html)]) -> Html {
        let mut out = Html::with_capacity(4096);
        for part in parts {
            match part {
                Part::Literal(literal) => {
                    out.raw(literal);
                }
                Part::Slot(name) => {
                    let value = values.iter().find(|(key, _)| key == name);
                    debug_assert!(
                        value.is_some(),
                        "template placeholder {{{{{name}}}}} has no value"
                    );
                    if let Some((_, value)) = value {
                        out.append(value);
                    }
                }
            }
        }
        out
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

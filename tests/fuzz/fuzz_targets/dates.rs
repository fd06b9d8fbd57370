//! Dates: `time::Day::parse` (the `from`/`to` of every range), `time::parse_http_date` and
//! `time::http_date` (the day marker, `If-Modified-Since` / `Last-Modified`), and
//! `insights::Range::from_query`, which turns a request's query into the days read.
//!
//! Input format: NUL-separated text fields. Field 0 is parsed as a day, as an HTTP date and
//! as a query string for a range; field 1 is "today" for the range (`YYYY-MM-DD`, default
//! 2024-03-31); the first 8 bytes of the input also name an instant for the HTTP date
//! round trip, so the fuzzer explores both directions.
//!
//! The references count days from 0001-01-01 year by year and month by month (not with the
//! era arithmetic `time` uses), and read the fixed-width formats field by field:
//! - `Day::parse` accepts exactly the real dates `YYYY-MM-DD` of years 0001–9999, and a
//!   parsed day prints back as its input;
//! - `parse_http_date` accepts exactly the IMF-fixdates `http_date` writes (a leap second
//!   `:60` reads as the next second), and `http_date` of any instant in those years parses
//!   back to that instant;
//! - `Range::from_query` never panics, is 400 for malformed or repeated dates, `from` after
//!   `to` and ranges over `MAX_RANGE_DAYS`, and otherwise gives exactly the documented range.
#![no_main]

use hyper::StatusCode;
use libfuzzer_sys::fuzz_target;
use oxitraffic::insights::{DEFAULT_RANGE_DAYS, MAX_RANGE_DAYS, Range};
use oxitraffic::time::{Day, http_date, parse_http_date};
use oxitraffic_fuzz::{fields, reference_param};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn month_length(year: i64, month: i64) -> i64 {
    [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][(month - 1) as usize]
}

/// Days from 0001-01-01 (day 0) to a valid date, by whole years and months.
fn ordinal(year: i64, month: i64, day: i64) -> i64 {
    let y = year - 1;
    let before_year = 365 * y + y / 4 - y / 100 + y / 400;
    let before_month: i64 = (1..month).map(|m| month_length(year, m)).sum();
    before_year + before_month + day - 1
}

/// 1970-01-01 counted from 0001-01-01.
fn epoch_ordinal() -> i64 {
    ordinal(1970, 1, 1)
}

/// The number in `text[range]` if it is all ASCII digits.
fn digits(text: &[u8], range: std::ops::Range<usize>) -> Option<i64> {
    let part = text.get(range)?;
    if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(part.iter().fold(0, |n, b| n * 10 + i64::from(b - b'0')))
}

/// `(year, month, day)` of a real date written `YYYY-MM-DD`, years 0001–9999.
fn reference_day(text: &str) -> Option<(i64, i64, i64)> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(b, 0..4)?, digits(b, 5..7)?, digits(b, 8..10)?);
    let valid = year >= 1 && (1..=12).contains(&month) && day >= 1;
    (valid && day <= month_length(year, month)).then_some((year, month, day))
}

/// Days since 1970-01-01 of a valid `YYYY-MM-DD`.
fn reference_day_number(text: &str) -> Option<i64> {
    let (year, month, day) = reference_day(text)?;
    Some(ordinal(year, month, day) - epoch_ordinal())
}

/// The instant of an IMF-fixdate as `http_date` writes it, field by field: the weekday must
/// be the date's, seconds may be 60 (a leap second, read as the next second).
fn reference_http_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 29 || !text.is_ascii() {
        return None;
    }
    let literal = |at: usize, s: &str| text.get(at..at + s.len()) == Some(s);
    if !(literal(3, ", ")
        && literal(7, " ")
        && literal(11, " ")
        && literal(16, " ")
        && literal(19, ":")
        && literal(22, ":")
        && literal(25, " GMT"))
    {
        return None;
    }
    let day = digits(b, 5..7)?;
    let month = MONTHS.iter().position(|m| literal(8, m))? as i64 + 1;
    let year = digits(b, 12..16)?;
    let (hour, minute, second) = (digits(b, 17..19)?, digits(b, 20..22)?, digits(b, 23..25)?);
    if year < 1 || day < 1 || day > month_length(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = ordinal(year, month, day) - epoch_ordinal();
    // 0001-01-01 was a Monday.
    let weekday = WEEKDAYS[ordinal(year, month, day).rem_euclid(7) as usize];
    if !literal(0, weekday) {
        return None;
    }
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// The first and last instants `http_date` writes with a four-digit year.
fn supported_instants() -> std::ops::RangeInclusive<i64> {
    let first = -epoch_ordinal() * 86_400;
    let last = (ordinal(9999, 12, 31) - epoch_ordinal()) * 86_400 + 86_399;
    first..=last
}

fn check_day(text: &str) {
    let parsed = Day::parse(text);
    assert_eq!(
        parsed.map(|d| i64::from(d.days())),
        reference_day_number(text),
        "Day::parse({text:?})"
    );
    if let Some(day) = parsed {
        assert_eq!(day.to_string(), text, "prints back");
        let date = day.date();
        let (year, month, d) = reference_day(text).expect("agreed above");
        assert_eq!(
            (
                i64::from(date.year),
                i64::from(date.month),
                i64::from(date.day)
            ),
            (year, month, d)
        );
    }
}

fn check_http_date(text: &str) {
    let parsed = parse_http_date(text);
    assert_eq!(
        parsed,
        reference_http_date(text),
        "parse_http_date({text:?})"
    );
    if let Some(instant) = parsed {
        if &text[23..25] == "60" {
            // 23:59:60 is 00:00:00 of the next day: written back as that.
            assert_eq!(parse_http_date(&http_date(instant)), Some(instant));
        } else {
            assert_eq!(http_date(instant), text, "writes back as read");
        }
    }
}

fn check_instant(instant: i64) {
    // Total: any instant formats without a panic.
    let text = http_date(instant);
    if supported_instants().contains(&instant) {
        assert_eq!(text.len(), 29, "{instant}: {text:?}");
        assert_eq!(parse_http_date(&text), Some(instant), "{instant}: {text:?}");
        assert_eq!(
            reference_http_date(&text),
            Some(instant),
            "{instant}: {text:?}"
        );
    }
}

/// What `Range::from_query` must answer, from the documentation: `Ok(first, last)` as day
/// numbers, or `Err(())` for a 400.
fn reference_range(query: &str, today: i64) -> Result<(i64, i64), ()> {
    let date = |name: &str| -> Result<Option<i64>, ()> {
        match reference_param(query, name) {
            Err(_) => Err(()),
            Ok(None) => Ok(None),
            Ok(Some(text)) => reference_day_number(&text).map(Some).ok_or(()),
        }
    };
    let (from, to) = (date("from")?, date("to")?);
    let days = i64::from(DEFAULT_RANGE_DAYS);
    let (first, last) = match (from, to) {
        (Some(first), Some(last)) => (first, last),
        (Some(first), None) => (first, today),
        (None, Some(last)) => (last - days + 1, last),
        (None, None) => (today - days + 1, today),
    };
    if first > last || last - first + 1 > i64::from(MAX_RANGE_DAYS) {
        return Err(());
    }
    Ok((first, last))
}

fn check_range(query: &str, today: Day) {
    let result = Range::from_query(Some(query), today);
    let expected = reference_range(query, i64::from(today.days()));
    match (&result, expected) {
        (Ok(range), Ok((first, last))) => {
            assert_eq!(
                (i64::from(range.first.days()), i64::from(range.last.days())),
                (first, last),
                "{query:?} (today {today})"
            );
            assert!(range.days() >= 1 && range.days() <= MAX_RANGE_DAYS);
            assert_eq!(range.previous().days(), range.days());
            assert_eq!(range.previous().last.plus(1), range.first);
        }
        (Err(error), Err(())) => {
            assert_eq!(
                error.status,
                StatusCode::BAD_REQUEST,
                "{query:?}: {error:?}"
            );
            assert!(
                !error.message.is_empty() && !error.message.contains(['\n', '\r']),
                "{query:?}: {:?}",
                error.message
            );
        }
        _ => panic!("{query:?} (today {today}): {result:?}, expected {expected:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let fields = fields(data);
    let text = fields[0];
    let today = fields
        .get(1)
        .and_then(|t| Day::parse(t))
        .unwrap_or_else(|| Day::parse("2024-03-31").expect("a valid date"));

    check_day(text);
    check_http_date(text);
    let mut instant = [0u8; 8];
    let head = &data[..data.len().min(8)];
    instant[..head.len()].copy_from_slice(head);
    check_instant(i64::from_le_bytes(instant));
    // Near the supported years, where the edge cases are.
    let span = supported_instants();
    let width = (span.end() - span.start() + 1) as u64;
    check_instant(span.start() + (u64::from_le_bytes(instant) % width) as i64);

    check_range(text, today);
    // The same dates as a whole range, and the longest range from `from`, both ways.
    if let Some(from) = Day::parse(text) {
        let longest = from.plus(MAX_RANGE_DAYS - 1);
        check_range(&format!("from={from}&to={longest}"), today);
        check_range(&format!("from={from}&to={}", longest.plus(1)), today);
        check_range(&format!("to={from}"), today);
        check_range(&format!("from={from}&from={from}"), today);
    }
});

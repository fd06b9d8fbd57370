//! Calendar arithmetic for dates shown to people: local days, RFC 3339 timestamps and short
//! labels. A [`Day`] is a local date counted from 1970-01-01; the database exchanges days in
//! that form (`day - DATE '1970-01-01'`), so no date type crosses the wire. Which instant
//! belongs to which local day is the zone's business (see `zone`); nothing here knows zones.

use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
/// By day number modulo 7: 1970-01-01 (day 0) was a Thursday.
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

/// A local date, as days since 1970-01-01 (day 0). PostgreSQL's `date` spans about ±5.8
/// million years; a `Day` is kept well inside it by [`Day::parse`] (years 1–9999).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(i32);

impl Day {
    pub const fn from_days(days: i32) -> Day {
        Day(days)
    }

    pub const fn days(self) -> i32 {
        self.0
    }

    /// The day `n` days later (earlier when negative).
    pub const fn plus(self, n: i32) -> Day {
        Day(self.0 + n)
    }

    /// Days from `earlier` to `self`.
    pub const fn since(self, earlier: Day) -> i32 {
        self.0 - earlier.0
    }

    /// `YYYY-MM-DD`, strictly: four-digit year from 0001, real months and days.
    pub fn parse(text: &str) -> Option<Day> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<u32> {
            let part = &bytes[range];
            part.iter()
                .all(u8::is_ascii_digit)
                .then(|| part.iter().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Day(days_of(Date {
            year: year as i32,
            month,
            day,
        }) as i32))
    }

    pub fn date(self) -> Date {
        date_of(i64::from(self.0))
    }

    /// The first day of this day's month.
    pub fn month_start(self) -> Day {
        let date = self.date();
        Day(days_of(Date { day: 1, ..date }) as i32)
    }

    /// `Jan 28`, for chart axes.
    pub fn short_label(self) -> String {
        let date = self.date();
        format!("{} {}", MONTHS[date.month as usize - 1], date.day)
    }

    /// `Jan 2024`, for month buckets.
    pub fn month_label(self) -> String {
        let date = self.date();
        format!("{} {}", MONTHS[date.month as usize - 1], date.year)
    }
}

/// `2024-01-28`.
impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let date = self.date();
        write!(f, "{:04}-{:02}-{:02}", date.year, date.month, date.day)
    }
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The date of a day number (days since 1970-01-01), proleptic Gregorian.
pub fn date_of(days: i64) -> Date {
    // Howard Hinnant's civil_from_days: eras of 400 years, March-based years so leap days
    // fall at the end.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    Date {
        year: year as i32,
        month,
        day,
    }
}

/// The day number of a date.
pub fn days_of(date: Date) -> i64 {
    let year = i64::from(date.year) - i64::from(date.month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(date.month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(date.day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Seconds since the Unix epoch (negative before it).
pub fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        Err(before) => -(before.duration().as_secs_f64().ceil() as i64),
    }
}

/// The system clock now, in Unix seconds.
pub fn now_unix() -> i64 {
    unix_seconds(SystemTime::now())
}

/// The day containing the instant `unix_secs` at a fixed offset of `offset_secs`.
pub fn day_at_offset(unix_secs: i64, offset_secs: i32) -> Day {
    Day((unix_secs + i64::from(offset_secs)).div_euclid(86_400) as i32)
}

/// Appends `+02:00`, `-03:30` or `+00:00`.
pub fn write_offset(out: &mut String, offset_secs: i32) {
    let sign = if offset_secs < 0 { '-' } else { '+' };
    let minutes = offset_secs.unsigned_abs() / 60;
    let _ = write!(out, "{sign}{:02}:{:02}", minutes / 60, minutes % 60);
}

/// Appends `2024-01-28T14:03:11+02:00` for the instant `unix_secs` seen at `offset_secs`.
pub fn write_rfc3339(out: &mut String, unix_secs: i64, offset_secs: i32) {
    let local = unix_secs + i64::from(offset_secs);
    let date = date_of(local.div_euclid(86_400));
    let second_of_day = local.rem_euclid(86_400);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        date.year,
        date.month,
        date.day,
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    write_offset(out, offset_secs);
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110's IMF-fixdate), for `Last-Modified`.
pub fn http_date(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let date = date_of(days);
    let second_of_day = unix_secs.rem_euclid(86_400);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        date.day,
        MONTHS[date.month as usize - 1],
        date.year,
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// The instant of an IMF-fixdate (the only form we send; browsers send back exactly what they
/// received), or `None` for anything else, a weekday that is not the date's included.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    // ASCII first: the fixed positions below slice the text.
    if bytes.len() != 29 || !text.is_ascii() || &text[3..5] != ", " || !text.ends_with(" GMT") {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = bytes.get(range)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
    };
    let day = number(5..7)?;
    let month = MONTHS.iter().position(|m| *m == &text[8..11])? as u32 + 1;
    let year = number(12..16)?;
    let (hour, minute, second) = (number(17..19)?, number(20..22)?, number(23..25)?);
    let separators = [(7, b' '), (11, b' '), (16, b' '), (19, b':'), (22, b':')];
    if separators.iter().any(|&(i, c)| bytes[i] != c)
        || year == 0
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_of(Date {
        year: year as i32,
        month,
        day,
    });
    if bytes[..3] != *WEEKDAYS[days.rem_euclid(7) as usize].as_bytes() {
        return None;
    }
    Some(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_round_trip_across_centuries_and_leap_days() {
        assert_eq!(
            date_of(0),
            Date {
                year: 1970,
                month: 1,
                day: 1
            }
        );
        assert_eq!(
            date_of(-1),
            Date {
                year: 1969,
                month: 12,
                day: 31
            }
        );
        assert_eq!(
            date_of(19_750),
            Date {
                year: 2024,
                month: 1,
                day: 28
            }
        );
        assert_eq!(
            date_of(11_016),
            Date {
                year: 2000,
                month: 2,
                day: 29
            }
        );
        for days in (-800_000..800_000).step_by(97) {
            assert_eq!(days_of(date_of(days)), days);
        }
        let mut previous = date_of(-1000);
        for days in -999..1000 {
            let date = date_of(days);
            assert!(date > previous, "{date:?} after {previous:?}");
            previous = date;
        }
    }

    #[test]
    fn days_parse_strictly_and_print_back() {
        assert_eq!(Day::parse("2024-01-28"), Some(Day(19_750)));
        assert_eq!(Day::parse("2000-02-29").unwrap().to_string(), "2000-02-29");
        assert_eq!(Day::parse("1970-01-01"), Some(Day(0)));
        assert_eq!(Day::parse("0001-01-01").unwrap().to_string(), "0001-01-01");
        assert_eq!(Day::parse("9999-12-31").unwrap().to_string(), "9999-12-31");
        for bad in [
            "",
            "2024-1-28",
            "2024-01-28 ",
            "2024/01/28",
            "2023-02-29",
            "1900-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-04-31",
            "0000-01-01",
            "+024-01-01",
            "2024-01-2x",
            "٢٠٢٤-01-28",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_with_the_instants_own_offset() {
        let instant = 1_706_450_591; // 2024-01-28T14:03:11Z
        let format = |offset_secs| {
            let mut out = String::new();
            write_rfc3339(&mut out, instant, offset_secs);
            out
        };
        assert_eq!(format(0), "2024-01-28T14:03:11+00:00");
        assert_eq!(format(7200), "2024-01-28T16:03:11+02:00");
        assert_eq!(format(-12_600), "2024-01-28T10:33:11-03:30");
        assert_eq!(format(36_000), "2024-01-29T00:03:11+10:00");
        let mut before_epoch = String::new();
        write_rfc3339(&mut before_epoch, -1, 0);
        assert_eq!(before_epoch, "1969-12-31T23:59:59+00:00");
    }

    #[test]
    fn local_days_change_at_local_midnight() {
        let late_utc = 19_750 * 86_400 + 23 * 3600 + 30 * 60; // 2024-01-28 23:30 UTC
        assert_eq!(day_at_offset(late_utc, 0), Day(19_750));
        assert_eq!(
            day_at_offset(late_utc, 3600),
            Day(19_751),
            "00:30 at +01:00"
        );
        assert_eq!(day_at_offset(late_utc, -3600), Day(19_750));
        let early_utc = 19_750 * 86_400 + 30 * 60;
        assert_eq!(
            day_at_offset(early_utc, -3600),
            Day(19_749),
            "23:30 at -01:00"
        );
    }

    #[test]
    fn labels_and_months() {
        let day = Day(19_750);
        assert_eq!(day.short_label(), "Jan 28");
        assert_eq!(day.month_label(), "Jan 2024");
        assert_eq!(day.month_start().to_string(), "2024-01-01");
        let new_years_eve = Day::parse("2023-12-31").unwrap();
        assert_eq!(new_years_eve.month_start().to_string(), "2023-12-01");
        assert_eq!(
            new_years_eve.plus(1).month_start().to_string(),
            "2024-01-01"
        );
        assert_eq!(new_years_eve.plus(1).since(new_years_eve), 1);
    }

    #[test]
    fn http_dates_round_trip() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        for instant in [0, 784_111_777, 1_706_450_591, 1_706_400_000, 4_102_444_800] {
            assert_eq!(parse_http_date(&http_date(instant)), Some(instant));
        }
        for bad in [
            "",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 06 Xyz 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMTX",
            // Found by fuzzing (tests/fuzz/regressions/dates): any weekday was accepted.
            "Sat, 31 Dec 4032 23:59:60 GMT",
            "Mon, 06 Nov 1994 08:49:37 GMT",
            // Also found by fuzzing: a character across a fixed position panicked.
            "20ԍMayӐ1Sat, 31 Dec 2016 23",
            "Sun,é6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Noé1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }
}

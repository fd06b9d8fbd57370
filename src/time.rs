//! Calendar arithmetic in a fixed UTC offset, for dates shown to people: local days, RFC 3339
//! timestamps and short labels. Days are counted from 1970-01-01 (day 0), the form the
//! database returns (`day - DATE '1970-01-01'`).

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::UtcOffset;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
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

/// The local day (in `offset`) that contains the instant `unix_secs`.
pub fn local_day(unix_secs: i64, offset: UtcOffset) -> i64 {
    (unix_secs + offset.total_seconds()).div_euclid(86_400)
}

/// Today in `offset`.
pub fn today(offset: UtcOffset) -> i64 {
    local_day(unix_seconds(SystemTime::now()), offset)
}

/// Appends `2024-01-28T14:03:11+02:00` for the instant `unix_secs` seen in `offset`.
pub fn write_rfc3339(out: &mut String, unix_secs: i64, offset: UtcOffset) {
    let local = unix_secs + offset.total_seconds();
    let date = date_of(local.div_euclid(86_400));
    let second_of_day = local.rem_euclid(86_400);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{offset}",
        date.year,
        date.month,
        date.day,
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
}

/// `2024-01-28`.
pub fn iso_date(days: i64) -> String {
    let date = date_of(days);
    format!("{:04}-{:02}-{:02}", date.year, date.month, date.day)
}

/// `Jan 28`, for chart axes.
pub fn short_date(days: i64) -> String {
    let date = date_of(days);
    format!("{} {}", MONTHS[date.month as usize - 1], date.day)
}

/// `Jan 2024`, for month buckets.
pub fn month_label(days: i64) -> String {
    let date = date_of(days);
    format!("{} {}", MONTHS[date.month as usize - 1], date.year)
}

/// The first day of the month containing `days`.
pub fn month_start(days: i64) -> i64 {
    let date = date_of(days);
    days_of(Date { day: 1, ..date })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(minutes: i32) -> UtcOffset {
        UtcOffset::from_minutes(minutes)
    }

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
    fn rfc3339_in_the_configured_offset() {
        let instant = 1_706_450_591; // 2024-01-28T14:03:11Z
        let format = |minutes| {
            let mut out = String::new();
            write_rfc3339(&mut out, instant, offset(minutes));
            out
        };
        assert_eq!(format(0), "2024-01-28T14:03:11+00:00");
        assert_eq!(format(120), "2024-01-28T16:03:11+02:00");
        assert_eq!(format(-210), "2024-01-28T10:33:11-03:30");
        assert_eq!(format(600), "2024-01-29T00:03:11+10:00");
        let mut before_epoch = String::new();
        write_rfc3339(&mut before_epoch, -1, offset(0));
        assert_eq!(before_epoch, "1969-12-31T23:59:59+00:00");
    }

    #[test]
    fn local_days_change_at_local_midnight() {
        let late_utc = 19_750 * 86_400 + 23 * 3600 + 30 * 60; // 2024-01-28 23:30 UTC
        assert_eq!(local_day(late_utc, offset(0)), 19_750);
        assert_eq!(
            local_day(late_utc, offset(60)),
            19_751,
            "00:30 on the 29th at +01:00"
        );
        assert_eq!(local_day(late_utc, offset(-60)), 19_750);
        let early_utc = 19_750 * 86_400 + 30 * 60; // 00:30 UTC
        assert_eq!(
            local_day(early_utc, offset(-60)),
            19_749,
            "23:30 on the 27th at -01:00"
        );
    }

    #[test]
    fn labels_and_months() {
        assert_eq!(iso_date(19_750), "2024-01-28");
        assert_eq!(short_date(19_750), "Jan 28");
        assert_eq!(month_label(19_750), "Jan 2024");
        assert_eq!(iso_date(month_start(19_750)), "2024-01-01");
        let new_years_eve = days_of(Date {
            year: 2023,
            month: 12,
            day: 31,
        });
        assert_eq!(iso_date(month_start(new_years_eve)), "2023-12-01");
        assert_eq!(iso_date(month_start(new_years_eve + 1)), "2024-01-01");
    }
}

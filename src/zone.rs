//! Which local day it is: the configured zone, and a clock of local days.
//!
//! A fixed `utc_offset` is plain arithmetic. An IANA `time_zone` (daylight saving included)
//! is PostgreSQL's business: its zone database buckets the roll-ups, so the tracker asks it
//! where the current local day starts and ends instead of shipping a second copy of the zone
//! data that could disagree with it. [`DayClock`] keeps that answer in one atomic word, read
//! on every registration without a lock; it is refreshed at each local midnight.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::time::{self, Day};

/// The zone days are counted in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Zone {
    /// A fixed offset east of UTC, in seconds.
    Fixed(i32),
    /// An IANA name such as `Europe/Berlin`, resolved by PostgreSQL.
    Named(String),
}

impl Zone {
    /// The name PostgreSQL knows it by, or `None` for a fixed offset.
    pub fn name(&self) -> Option<&str> {
        match self {
            Zone::Fixed(_) => None,
            Zone::Named(name) => Some(name),
        }
    }

    /// Minutes of the fixed offset (0 for a named zone), as the `settings` table stores it.
    pub fn fixed_minutes(&self) -> i32 {
        match self {
            Zone::Fixed(seconds) => seconds / 60,
            Zone::Named(_) => 0,
        }
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Zone::Fixed(seconds) => {
                let mut text = String::from("UTC");
                time::write_offset(&mut text, *seconds);
                f.write_str(&text)
            }
            Zone::Named(name) => f.write_str(name),
        }
    }
}

/// One local day: its number and the instants (Unix seconds) where it starts and ends. A day
/// is 23, 24 or 25 hours long where daylight saving changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalDay {
    pub day: Day,
    pub start: i64,
    pub end: i64,
}

impl LocalDay {
    /// The local day of `instant` at a fixed offset.
    pub fn at_offset(instant: i64, offset_secs: i32) -> LocalDay {
        let day = time::day_at_offset(instant, offset_secs);
        let start = i64::from(day.days()) * 86_400 - i64::from(offset_secs);
        LocalDay {
            day,
            start,
            end: start + 86_400,
        }
    }

    /// The day after, assuming the offset does not change (a stopgap until PostgreSQL says).
    fn next(self) -> LocalDay {
        LocalDay {
            day: self.day.plus(1),
            start: self.end,
            end: self.end + 86_400,
        }
    }

    /// Offsets at the start and the end of the day, in minutes: together with the day number
    /// they fit one atomic word.
    fn pack(self) -> u64 {
        let midnight = i64::from(self.day.days()) * 86_400;
        let start_offset = ((midnight - self.start) / 60) as i16;
        let end_offset = ((midnight + 86_400 - self.end) / 60) as i16;
        u64::from(self.day.days() as u32) << 32
            | u64::from(start_offset as u16) << 16
            | u64::from(end_offset as u16)
    }

    fn unpack(word: u64) -> LocalDay {
        let day = Day::from_days((word >> 32) as u32 as i32);
        let start_offset = i64::from((word >> 16) as u16 as i16) * 60;
        let end_offset = i64::from(word as u16 as i16) * 60;
        let midnight = i64::from(day.days()) * 86_400;
        LocalDay {
            day,
            start: midnight - start_offset,
            end: midnight + 86_400 - end_offset,
        }
    }
}

/// The current local day, lock-free to read.
pub struct DayClock {
    zone: Zone,
    /// A packed [`LocalDay`]; 0 until a named zone's first answer from PostgreSQL.
    current: AtomicU64,
}

impl DayClock {
    pub fn new(zone: Zone) -> DayClock {
        let clock = DayClock {
            current: AtomicU64::new(0),
            zone,
        };
        if let Zone::Fixed(offset) = clock.zone {
            clock.set(LocalDay::at_offset(time::now_unix(), offset));
        }
        clock
    }

    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// Records what PostgreSQL says about a named zone's current day.
    pub fn set(&self, day: LocalDay) {
        // Relaxed: the word is self-contained; nothing else is published with it.
        self.current.store(day.pack(), Ordering::Relaxed);
    }

    /// The local day containing `instant` (normally now). Past the end of the known day it
    /// moves on by itself: exactly for a fixed offset, assuming an unchanged offset for a
    /// named zone until the next refresh corrects it.
    pub fn day_of(&self, instant: i64) -> LocalDay {
        if let Zone::Fixed(offset) = self.zone {
            return LocalDay::at_offset(instant, offset);
        }
        let word = self.current.load(Ordering::Relaxed);
        if word == 0 {
            // Not heard from PostgreSQL yet: UTC until it answers.
            return LocalDay::at_offset(instant, 0);
        }
        let mut day = LocalDay::unpack(word);
        while instant >= day.end {
            day = day.next();
        }
        day
    }

    pub fn today(&self) -> LocalDay {
        self.day_of(time::now_unix())
    }

    /// Whether the named zone's current day must be asked for again.
    pub fn needs_refresh(&self, instant: i64) -> bool {
        match self.zone {
            Zone::Fixed(_) => false,
            Zone::Named(_) => {
                let word = self.current.load(Ordering::Relaxed);
                word == 0 || instant >= LocalDay::unpack(word).end
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_offsets_need_no_database() {
        let clock = DayClock::new(Zone::Fixed(2 * 3600));
        // 2024-01-28 23:30 UTC is 01:30 on the 29th at +02:00.
        let instant = 19_750 * 86_400 + 23 * 3600 + 30 * 60;
        let day = clock.day_of(instant);
        assert_eq!(day.day.to_string(), "2024-01-29");
        assert_eq!(day.start, 19_751 * 86_400 - 7200);
        assert_eq!(day.end - day.start, 86_400);
        assert!(!clock.needs_refresh(instant));
    }

    #[test]
    fn a_daylight_saving_day_packs_exactly() {
        // 2024-03-31 in Europe/Berlin: starts at +01:00, ends at +02:00 (23 hours).
        let day = Day::parse("2024-03-31").unwrap();
        let midnight = i64::from(day.days()) * 86_400;
        let dst = LocalDay {
            day,
            start: midnight - 3600,
            end: midnight + 86_400 - 7200,
        };
        assert_eq!(dst.end - dst.start, 23 * 3600);
        assert_eq!(LocalDay::unpack(dst.pack()), dst);
        let west = LocalDay::at_offset(midnight + 5 * 3600, -9 * 3600 - 1800);
        assert_eq!(LocalDay::unpack(west.pack()), west);
    }

    #[test]
    fn a_named_zone_moves_on_until_postgresql_answers_again() {
        let clock = DayClock::new(Zone::Named("Europe/Berlin".into()));
        let day = Day::parse("2024-03-30").unwrap();
        let midnight = i64::from(day.days()) * 86_400;
        assert!(clock.needs_refresh(midnight));
        assert_eq!(clock.day_of(midnight).day, day, "UTC until known");
        clock.set(LocalDay {
            day,
            start: midnight - 3600,
            end: midnight + 86_400 - 3600,
        });
        assert!(!clock.needs_refresh(midnight));
        let next = clock.day_of(midnight + 86_400);
        assert_eq!(next.day, day.plus(1));
        assert_eq!(next.start, midnight + 86_400 - 3600);
        assert!(clock.needs_refresh(midnight + 86_400));
    }
}

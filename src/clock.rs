//! Time for pending visits.
//!
//! Delays are measured in *ticks*, tenths of a second on the monotonic clock, so that a
//! system clock step (NTP, a suspended VM) cannot make a pending visit look older or younger
//! than it is. The tick count starts at one day ([`START_TICKS`]) rather than zero, so that
//! visits restored after a restart, which registered before this process started, keep
//! their true age: up to a day back they still have a tick of their own. A `u32` of ticks
//! lasts 13 years of uptime.
//!
//! The time a visit happened is wall-clock time, read from the system clock when it
//! registers ([`wall_secs`]) and never derived from ticks, so visit timestamps follow the
//! system clock, also across a suspend or a clock correction (SPEC §12).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Ticks per second.
pub const TICKS_PER_SEC: u32 = 10;
/// The tick count when the clock starts: one day.
pub const START_TICKS: u32 = 24 * 3600 * TICKS_PER_SEC;

#[derive(Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    fn ticks_f(&self) -> f64 {
        f64::from(START_TICKS) + self.origin.elapsed().as_secs_f64() * f64::from(TICKS_PER_SEC)
    }

    /// Ticks elapsed, rounded down.
    pub fn ticks(&self) -> u32 {
        self.ticks_f().floor().min(f64::from(u32::MAX)) as u32
    }

    /// Ticks elapsed, rounded up. Registrations are stamped with this and compared against
    /// [`Clock::ticks`], so "at least N seconds later" holds despite the tick resolution.
    pub fn ticks_ceil(&self) -> u32 {
        self.ticks_f().ceil().min(f64::from(u32::MAX)) as u32
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// Now, in whole seconds since the Unix epoch, from the system clock (a `u32` lasts until
/// 2106). A system clock set before 1970 reads as 0.
pub fn wall_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs().min(u64::from(u32::MAX)) as u32)
}

/// The `SystemTime` of a [`wall_secs`] reading.
pub fn wall_time(secs: u32) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_secs(u64::from(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_start_a_day_in_and_ceil_is_never_below_floor() {
        let clock = Clock::new();
        let (floor, ceil) = (clock.ticks(), clock.ticks_ceil());
        assert!(ceil >= floor && ceil - floor <= 1);
        assert!((START_TICKS..START_TICKS + 10 * TICKS_PER_SEC).contains(&floor));
    }

    #[test]
    fn wall_seconds_are_the_system_clock() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let secs = u64::from(wall_secs());
        assert!(secs >= before && secs <= before + 1);
        assert_eq!(
            wall_time(1_706_450_591)
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            1_706_450_591
        );
    }
}

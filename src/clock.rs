//! Time for pending visits: tenths of a second since the tracker started, on the monotonic
//! clock, so that a system clock step (NTP, a suspended VM) cannot make a pending visit look
//! older or younger than it is. Wall-clock time is derived from it only when a visit is
//! written. A `u32` of ticks lasts 13 years of uptime.

use std::time::{Duration, Instant, SystemTime};

/// Ticks per second.
pub const TICKS_PER_SEC: u32 = 10;
const TICK: Duration = Duration::from_millis(1000 / TICKS_PER_SEC as u64);

#[derive(Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_wall: SystemTime,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            origin: Instant::now(),
            origin_wall: SystemTime::now(),
        }
    }

    fn ticks_f(&self) -> f64 {
        self.origin.elapsed().as_secs_f64() * f64::from(TICKS_PER_SEC)
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

    /// The wall-clock time of a tick.
    pub fn wall_time(&self, ticks: u32) -> SystemTime {
        self.origin_wall + TICK * ticks
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_is_never_below_floor_and_wall_time_advances_by_ticks() {
        let clock = Clock::new();
        let (floor, ceil) = (clock.ticks(), clock.ticks_ceil());
        assert!(ceil >= floor && ceil - floor <= 1);
        assert_eq!(
            clock
                .wall_time(25)
                .duration_since(clock.wall_time(5))
                .unwrap(),
            Duration::from_secs(2)
        );
    }
}

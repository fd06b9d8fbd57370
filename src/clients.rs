//! At most `max_pending` pending registrations per client (SPEC §11, §12), so that a flood
//! from one address can neither fill the visitor slots nor push other visitors out.
//!
//! A fixed table of 16,384 leaky buckets, one word each, indexed by a keyed hash of the
//! client's address: an IPv4 address, or the /64 prefix of an IPv6 address (the block one
//! subscriber usually gets); an IPv4-mapped IPv6 address counts as its IPv4 address. The
//! address itself is never stored, and the key is secret, so nobody can aim a flood at
//! somebody else's bucket. Two clients sharing a bucket share its budget; with the keyed
//! hash that is chance, not choice.
//!
//! A bucket's level is the number of its client's pending visits, approximately:
//! registering adds one (refused if the level would exceed `max_pending`), counting the
//! visit or evicting it once expired takes one away, and the level drains by itself at
//! `max_pending` per `drain_window`, so registrations that are never claimed (bounces,
//! bots) free their client's budget by the time they expire. The level never goes below
//! zero, so a release for a visit registered before a restart is harmless.
//!
//! Time is passed in as clock ticks (`clock::TICKS_PER_SEC`), so tests are exact.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::TICKS_PER_SEC;
use crate::keyed::Key;

/// Buckets in the table: 128 KiB of memory, touched only where clients hash to.
pub const BUCKETS: usize = 16_384;
/// The largest `max_pending` a bucket's fixed-point level can hold.
pub const MAX_PENDING_LIMIT: u32 = u16::MAX as u32;
/// Fixed point: the level is counted in 1/65,536 of a registration, so slow drain rates
/// (256 per five minutes is under one per tick) lose nothing to rounding.
const FRACTION_BITS: u32 = 16;
const ONE: u64 = 1 << FRACTION_BITS;
const LEVEL_MASK: u64 = u32::MAX as u64;

/// Seconds until the client may register again (for `Retry-After`), at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u32);

pub struct ClientLimiter {
    /// Each word is `last_update_tick << 32 | level` (level in units of `1 / ONE`).
    table: Box<[AtomicU64]>,
    max_pending: u32,
    drain_window_ticks: u32,
    key: Key,
}

impl ClientLimiter {
    /// A limiter allowing `max_pending` (1 to 65,535) pending registrations per client,
    /// draining completely in `drain_window` (at least one tick).
    pub fn new(max_pending: u32, drain_window: Duration, key: Key) -> ClientLimiter {
        let ticks = drain_window.as_millis() * u128::from(TICKS_PER_SEC) / 1000;
        // SAFETY: an AtomicU64 is a plain integer, for which all-zero bytes are valid (level
        // 0, never updated). Zeroed allocation leaves pages untouched until first used.
        let table = unsafe { Box::<[AtomicU64]>::new_zeroed_slice(BUCKETS).assume_init() };
        ClientLimiter {
            table,
            max_pending: max_pending.clamp(1, MAX_PENDING_LIMIT),
            drain_window_ticks: ticks.clamp(1, u128::from(u32::MAX)) as u32,
            key,
        }
    }

    /// The bucket of a client address.
    pub fn bucket(&self, address: IpAddr) -> u16 {
        // SipHash mixes the length in, so a 4-byte IPv4 address and an 8-byte IPv6 prefix
        // never hash alike by construction.
        let hash = match address.to_canonical() {
            IpAddr::V4(v4) => self.key.hash_bytes(&v4.octets()),
            IpAddr::V6(v6) => self.key.hash_bytes(&v6.octets()[..8]),
        };
        (hash % BUCKETS as u64) as u16
    }

    fn entry(&self, bucket: u16) -> &AtomicU64 {
        // Buckets come from `bucket`, or from a restored slot snapshot whose limiter had
        // another key: any u16 lands somewhere, which is harmless for a release.
        &self.table[usize::from(bucket) % BUCKETS]
    }

    fn capacity(&self) -> u64 {
        u64::from(self.max_pending) * ONE
    }

    /// The level `elapsed` ticks after it was `level`.
    fn drained(&self, level: u64, elapsed: u32) -> u64 {
        if elapsed >= self.drain_window_ticks {
            return 0;
        }
        // Below 2^32 · 2^32: no overflow.
        let drained = u64::from(elapsed) * self.capacity() / u64::from(self.drain_window_ticks);
        level.saturating_sub(drained)
    }

    /// Applies `change` to the bucket's drained level at `now`, in one compare-and-swap
    /// loop. `change` returns the new level, or `Err` to leave the bucket as it was.
    fn update<E>(
        &self,
        bucket: u16,
        now: u32,
        change: impl Fn(u64) -> Result<u64, E>,
    ) -> Result<(), E> {
        let entry = self.entry(bucket);
        // Relaxed throughout: the word is the whole state of the bucket and publishes
        // nothing else; the CAS alone makes each update atomic.
        let mut word = entry.load(Ordering::Relaxed);
        loop {
            let last = (word >> 32) as u32;
            // Threads read the clock at slightly different moments; time never runs
            // backwards for a bucket, so an older `now` drains nothing more.
            let now = now.max(last);
            let level = change(self.drained(word & LEVEL_MASK, now - last))?;
            let new = u64::from(now) << 32 | level;
            match entry.compare_exchange_weak(word, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(actual) => word = actual,
            }
        }
    }

    /// Takes one pending registration from `bucket`'s budget at tick `now`, or says how
    /// long until one is free again.
    pub fn acquire(&self, bucket: u16, now: u32) -> Result<(), RetryAfter> {
        let capacity = self.capacity();
        self.update(bucket, now, |level| {
            let wanted = level + ONE;
            if wanted <= capacity {
                return Ok(wanted);
            }
            // The drain frees `capacity` per window: the wait for the excess to drain.
            let excess = u128::from(wanted - capacity);
            let ticks = (excess * u128::from(self.drain_window_ticks)).div_ceil(capacity.into());
            let seconds = ticks.div_ceil(u128::from(TICKS_PER_SEC)).max(1);
            Err(RetryAfter(seconds.min(u128::from(u32::MAX)) as u32))
        })
    }

    /// Gives one pending registration back to `bucket`: its visit was counted, or it
    /// expired and was evicted.
    pub fn release(&self, bucket: u16, now: u32) {
        let _ = self.update(bucket, now, |level| {
            Ok::<_, std::convert::Infallible>(level.saturating_sub(ONE))
        });
    }

    /// The bucket's level at `now`, in registrations (rounded up).
    pub fn pending(&self, bucket: u16, now: u32) -> u32 {
        let word = self.entry(bucket).load(Ordering::Relaxed);
        let last = (word >> 32) as u32;
        let level = self.drained(word & LEVEL_MASK, now.saturating_sub(last));
        level.div_ceil(ONE) as u32
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const FIVE_MINUTES: Duration = Duration::from_secs(300);
    const WINDOW_TICKS: u32 = 300 * TICKS_PER_SEC;

    fn v4(text: &str) -> IpAddr {
        IpAddr::V4(text.parse::<Ipv4Addr>().unwrap())
    }

    fn v6(text: &str) -> IpAddr {
        IpAddr::V6(text.parse::<Ipv6Addr>().unwrap())
    }

    /// Two addresses whose buckets differ (with a random key they collide one time in
    /// 16,384; pick another then).
    fn two_clients(limiter: &ClientLimiter) -> (u16, u16) {
        let a = limiter.bucket(v4("192.0.2.1"));
        let b = (2..=254)
            .map(|i| limiter.bucket(v4(&format!("198.51.100.{i}"))))
            .find(|b| *b != a)
            .unwrap();
        (a, b)
    }

    #[test]
    fn one_client_is_capped_and_others_are_not() {
        let limiter = ClientLimiter::new(256, FIVE_MINUTES, Key::random());
        let (flooder, other) = two_clients(&limiter);
        for i in 0..256 {
            assert_eq!(limiter.acquire(flooder, 1_000), Ok(()), "registration {i}");
        }
        // One registration drains in 300 s / 256 = 1.17 s: 12 ticks, so 2 seconds.
        assert_eq!(limiter.acquire(flooder, 1_000), Err(RetryAfter(2)));
        assert_eq!(limiter.pending(flooder, 1_000), 256);
        for _ in 0..256 {
            assert_eq!(limiter.acquire(other, 1_000), Ok(()));
        }
        assert!(limiter.acquire(other, 1_000).is_err());
    }

    #[test]
    fn a_release_makes_room_at_once() {
        let limiter = ClientLimiter::new(3, FIVE_MINUTES, Key::random());
        let client = limiter.bucket(v4("203.0.113.9"));
        for _ in 0..3 {
            limiter.acquire(client, 50).unwrap();
        }
        assert!(limiter.acquire(client, 50).is_err());
        limiter.release(client, 50);
        assert_eq!(limiter.pending(client, 50), 2);
        assert_eq!(limiter.acquire(client, 50), Ok(()));
        assert!(limiter.acquire(client, 50).is_err());
        // Releasing more than was taken floors at zero instead of granting credit.
        for _ in 0..10 {
            limiter.release(client, 50);
        }
        assert_eq!(limiter.pending(client, 50), 0);
        for _ in 0..3 {
            limiter.acquire(client, 50).unwrap();
        }
        assert!(limiter.acquire(client, 50).is_err());
    }

    #[test]
    fn the_level_drains_over_the_window() {
        let limiter = ClientLimiter::new(10, FIVE_MINUTES, Key::random());
        let client = limiter.bucket(v4("203.0.113.9"));
        for _ in 0..10 {
            limiter.acquire(client, 0).unwrap();
        }
        // 10 per 300 s: one registration drains every 30 s (300 ticks).
        assert_eq!(limiter.acquire(client, 0), Err(RetryAfter(30)));
        assert_eq!(limiter.acquire(client, 150), Err(RetryAfter(15)));
        assert_eq!(limiter.acquire(client, 299), Err(RetryAfter(1)));
        assert_eq!(limiter.acquire(client, 300), Ok(()));
        assert!(limiter.acquire(client, 300).is_err());
        assert_eq!(limiter.pending(client, 300 + WINDOW_TICKS / 2), 5);
        assert_eq!(limiter.pending(client, 300 + WINDOW_TICKS), 0);
        for _ in 0..10 {
            limiter.acquire(client, 300 + WINDOW_TICKS).unwrap();
        }
        assert!(limiter.acquire(client, 300 + WINDOW_TICKS).is_err());
    }

    #[test]
    fn an_older_clock_reading_drains_nothing_twice() {
        let limiter = ClientLimiter::new(2, FIVE_MINUTES, Key::random());
        let client = limiter.bucket(v4("203.0.113.9"));
        limiter.acquire(client, 1_000).unwrap();
        limiter.acquire(client, 1_000).unwrap();
        // Another thread read the clock a tick earlier: not a reason to drain a whole window.
        assert!(limiter.acquire(client, 999).is_err());
        assert_eq!(limiter.pending(client, 1_000), 2);
    }

    #[test]
    fn an_ipv6_64_is_one_client() {
        let limiter = ClientLimiter::new(256, FIVE_MINUTES, Key::random());
        let a = limiter.bucket(v6("2001:db8:1:2:aaaa::1"));
        assert_eq!(a, limiter.bucket(v6("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        assert_eq!(a, limiter.bucket(v6("2001:db8:1:2::")));
        // Other /64s spread over the table instead of sharing one bucket.
        let neighbours: std::collections::HashSet<u16> = (0..64u16)
            .map(|i| limiter.bucket(v6(&format!("2001:db8:1:{:x}::1", 3 + i))))
            .collect();
        assert!(neighbours.len() > 60, "{}", neighbours.len());
    }

    #[test]
    fn a_mapped_ipv4_address_is_that_ipv4_client() {
        let limiter = ClientLimiter::new(256, FIVE_MINUTES, Key::random());
        assert_eq!(
            limiter.bucket(v6("::ffff:192.0.2.7")),
            limiter.bucket(v4("192.0.2.7"))
        );
        // Different IPv4 addresses are different clients, even in one /24.
        let spread: std::collections::HashSet<u16> = (1..=64)
            .map(|i| limiter.bucket(v4(&format!("192.0.2.{i}"))))
            .collect();
        assert!(spread.len() > 60, "{}", spread.len());
    }

    #[test]
    fn the_key_decides_the_bucket() {
        let (a, b) = (
            ClientLimiter::new(1, FIVE_MINUTES, Key::random()),
            ClientLimiter::new(1, FIVE_MINUTES, Key::random()),
        );
        let same = (1..=200)
            .map(|i| v4(&format!("10.0.0.{}", i % 250 + 1)))
            .filter(|ip| a.bucket(*ip) == b.bucket(*ip))
            .count();
        assert!(same < 5, "{same} of 200 addresses in the same bucket");
    }

    #[test]
    fn racing_threads_never_exceed_the_cap() {
        let limiter = std::sync::Arc::new(ClientLimiter::new(100, FIVE_MINUTES, Key::random()));
        let client = limiter.bucket(v4("192.0.2.1"));
        let granted: u32 = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || {
                    (0..1_000)
                        .filter(|_| limiter.acquire(client, 7).is_ok())
                        .count() as u32
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(granted, 100);
    }
}

//! Answers of the costlier insights queries (referrers and campaigns over long ranges), kept
//! while the roll-ups are unchanged.
//!
//! Each answer is stored with the roll-ups' version it was computed at; a request reads the
//! current version (one tiny query) and gets the stored answer when nothing changed since.
//! While visits arrive the version changes every second, so the same rule as the pages
//! table applies: an answer that took [`SLOW`] or more to compute may serve for up to
//! [`STALE_FACTOR`] times that long after a change, then is recomputed; a cheap answer is
//! always recomputed, so a small site's figures are always exact. Entries are bounded in
//! number and in bytes, least recently used go first.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Range;
use crate::db::rollups::Scope;

/// Answers kept at most, and their total size.
const ENTRIES: usize = 16;
const MAX_BYTES: usize = 512 * 1024;
/// Answers computed faster than this are never served stale.
const SLOW: Duration = Duration::from_millis(20);
pub const STALE_FACTOR: u32 = 10;

/// What an answer is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Referrers {
        scope: Scope,
        range: Range,
        hosts: i64,
        per_host: i64,
    },
    Campaigns {
        scope: Scope,
        range: Range,
        limit: i64,
    },
}

struct Entry {
    key: Key,
    version: i64,
    computed: Instant,
    cost: Duration,
    bytes: usize,
    value: Arc<dyn Any + Send + Sync>,
}

impl Entry {
    fn answers(&self, key: Key, version: i64) -> bool {
        self.key == key
            && (self.version == version
                || (self.cost >= SLOW && self.computed.elapsed() < self.cost * STALE_FACTOR))
    }
}

#[derive(Default)]
pub struct ResultCache {
    /// Most recently used last.
    entries: Mutex<Vec<Entry>>,
}

impl ResultCache {
    /// The stored answer for `key` at `version`, if one may serve.
    pub fn get<T: Any + Send + Sync>(&self, key: Key, version: i64) -> Option<Arc<T>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let at = entries.iter().rposition(|e| e.answers(key, version))?;
        let entry = entries.remove(at);
        let value = entry.value.clone().downcast::<T>().ok();
        entries.push(entry);
        value
    }

    /// Stores an answer that took `cost` to compute and takes about `bytes` of memory.
    pub fn put<T: Any + Send + Sync>(
        &self,
        key: Key,
        version: i64,
        cost: Duration,
        bytes: usize,
        value: Arc<T>,
    ) {
        if bytes > MAX_BYTES {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.key != key);
        let mut total: usize = entries.iter().map(|e| e.bytes).sum();
        while !entries.is_empty() && (entries.len() >= ENTRIES || total + bytes > MAX_BYTES) {
            total -= entries.remove(0).bytes;
        }
        entries.push(Entry {
            key,
            version,
            computed: Instant::now(),
            cost,
            bytes,
            value,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Day;

    fn key(limit: i64) -> Key {
        Key::Campaigns {
            scope: Scope::Site,
            range: Range::ending(Day::from_days(20_000), 30),
            limit,
        }
    }

    #[test]
    fn answers_serve_while_the_version_holds_and_slow_ones_a_while_longer() {
        let cache = ResultCache::default();
        cache.put(key(1), 7, Duration::from_millis(1), 10, Arc::new(42u32));
        assert_eq!(cache.get::<u32>(key(1), 7).as_deref(), Some(&42));
        assert!(cache.get::<u32>(key(1), 8).is_none(), "cheap: exact only");
        assert!(cache.get::<u32>(key(2), 7).is_none(), "another key");
        cache.put(key(2), 7, Duration::from_millis(300), 10, Arc::new(1u32));
        assert_eq!(
            cache.get::<u32>(key(2), 8).as_deref(),
            Some(&1),
            "slow: serves a while"
        );
    }

    #[test]
    fn the_cache_is_bounded_least_recently_used_first() {
        let cache = ResultCache::default();
        for i in 0..ENTRIES as i64 + 4 {
            cache.put(key(i), 1, Duration::ZERO, 100, Arc::new(i));
        }
        assert!(cache.get::<i64>(key(0), 1).is_none());
        assert!(cache.get::<i64>(key(ENTRIES as i64 + 3), 1).is_some());
        cache.put(key(100), 1, Duration::ZERO, MAX_BYTES - 50, Arc::new(0i64));
        let kept = cache.entries.lock().unwrap().len();
        assert!(kept <= 2, "{kept} entries beside a large one");
        cache.put(key(101), 1, Duration::ZERO, MAX_BYTES + 1, Arc::new(0i64));
        assert!(cache.get::<i64>(key(101), 1).is_none(), "too large to keep");
    }
}

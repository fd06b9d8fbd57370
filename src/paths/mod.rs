//! Which paths of the tracked site count: normalisation, the in-memory registry of known
//! paths, and the check that admits a new one.
//!
//! Known and rejected paths are remembered by a keyed 64-bit hash (SipHash with a random
//! per-process key) rather than by their text: the registry costs about 16 bytes per path,
//! whatever its length, and nobody can craft a colliding path without the key. A miss asks
//! the site once: concurrent requests for the same new path share one check, checks in
//! flight are capped, and a rejected path is remembered (boundedly) so a flood of made-up
//! paths costs the site one request each and nothing on repeat.

pub mod check;
pub mod exclude;
pub mod normalize;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{OnceCell, Semaphore};

use crate::db::{Db, Unavailable};
use crate::http::HttpError;
use check::{CheckFailed, PathChecker, Verdict};

/// The normalised `path` query parameter, or the 400 that says why there is none. No
/// allocation beyond decoding the parameter when the path needed no change.
pub fn path_from_query(query: Option<&str>) -> Result<String, HttpError> {
    let raw = crate::query::param(query, "path")?
        .ok_or_else(|| HttpError::bad_request("missing query parameter: path"))?;
    let path = normalize::normalize(&raw).map_err(|e| HttpError::bad_request(e.to_string()))?;
    if matches!(path, Cow::Borrowed(unchanged) if unchanged.len() == raw.len()) {
        drop(path);
        return Ok(raw.into_owned());
    }
    Ok(path.into_owned())
}

/// Checks in flight at once; more wait briefly, then get a 503.
const MAX_CHECKS_IN_FLIGHT: usize = 16;
const CHECK_SLOT_WAIT: Duration = Duration::from_secs(3);
/// Rejected paths remembered, and for how long (a page published later is then admitted).
pub const REJECTED_CAPACITY: usize = 16_384;
const REJECTED_TTL: Duration = Duration::from_secs(3600);
/// At most one "path limit reached" warning per this interval.
const LIMIT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Why a path cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The site says it has no such page.
    NotOnSite,
    /// `max_paths` paths are registered already.
    LimitReached,
    /// No verdict now (site unreachable, database down); worth retrying later.
    Unavailable(String),
}

/// Keys are already uniformly distributed hashes; hashing them again would waste time.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type HashKeyed<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

/// Rejected paths: a set with first-in-first-out eviction and an expiry.
#[derive(Default)]
struct Rejected {
    expires: HashKeyed<Instant>,
    order: VecDeque<u64>,
}

impl Rejected {
    fn contains(&self, key: u64, now: Instant) -> bool {
        self.expires.get(&key).is_some_and(|&until| until > now)
    }

    /// Expired entries stay until evicted; re-inserting one only renews its expiry.
    fn insert(&mut self, key: u64, now: Instant) {
        while self.order.len() >= REJECTED_CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.expires.remove(&oldest);
            }
        }
        if self.expires.insert(key, now + REJECTED_TTL).is_none() {
            self.order.push_back(key);
        }
    }
}

type CheckOutcome = Result<i32, Refusal>;

pub struct Registry {
    key: RandomState,
    /// Path hash → database id.
    known: RwLock<HashKeyed<i32>>,
    rejected: Mutex<Rejected>,
    /// One shared check per new path.
    in_flight: Mutex<HashKeyed<Arc<OnceCell<CheckOutcome>>>>,
    check_slots: Semaphore,
    checker: PathChecker,
    max_paths: usize,
    last_limit_warning: Mutex<Option<Instant>>,
}

impl Registry {
    pub fn new(checker: PathChecker, max_paths: usize) -> Registry {
        Registry {
            key: RandomState::new(),
            known: RwLock::new(HashKeyed::default()),
            rejected: Mutex::new(Rejected::default()),
            in_flight: Mutex::new(HashKeyed::default()),
            check_slots: Semaphore::new(MAX_CHECKS_IN_FLIGHT),
            checker,
            max_paths,
            last_limit_warning: Mutex::new(None),
        }
    }

    fn key_of(&self, path: &str) -> u64 {
        self.key.hash_one(path)
    }

    pub fn len(&self) -> usize {
        self.known.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The database id of a known path, without asking anybody.
    pub fn lookup(&self, path: &str) -> Option<i32> {
        self.known_id(self.key_of(path))
    }

    fn known_id(&self, key: u64) -> Option<i32> {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied()
    }

    /// Remembers paths read from the database.
    pub fn remember<'a>(&self, paths: impl IntoIterator<Item = (&'a str, i32)>) {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        for (path, id) in paths {
            known.insert(self.key_of(path), id);
        }
    }

    /// The database id for a normalised path, checking the site and registering the path
    /// the first time it is seen.
    pub async fn resolve(&self, path: &str, db: &Db) -> CheckOutcome {
        let key = self.key_of(path);
        if let Some(id) = self.known_id(key) {
            return Ok(id);
        }
        if self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key, Instant::now())
        {
            return Err(Refusal::NotOnSite);
        }
        if self.len() >= self.max_paths {
            self.warn_limit();
            return Err(Refusal::LimitReached);
        }
        let cell = self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let _forget = InFlightEntry {
            registry: self,
            key,
            cell: &cell,
        };
        cell.get_or_init(|| self.check_and_register(path, key, db))
            .await
            .clone()
    }

    async fn check_and_register(&self, path: &str, key: u64, db: &Db) -> CheckOutcome {
        let Ok(_slot) = tokio::time::timeout(CHECK_SLOT_WAIT, self.check_slots.acquire()).await
        else {
            return Err(Refusal::Unavailable(
                "too many new paths are being checked".into(),
            ));
        };
        // The database must be able to take the path before the site is bothered.
        let conn = db
            .reads()
            .map_err(|Unavailable| Refusal::Unavailable("database unavailable".into()))?;
        match self.checker.check(path).await {
            Ok(Verdict::Exists) => {}
            Ok(Verdict::Missing) => {
                self.rejected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, Instant::now());
                return Err(Refusal::NotOnSite);
            }
            Err(CheckFailed(reason)) => {
                tracing::warn!(%reason, "could not check a new path with the tracked site");
                return Err(Refusal::Unavailable(
                    "the tracked site could not be asked".into(),
                ));
            }
        }
        let row = conn
            .client
            .query_one(&conn.statements.insert_path, &[&path])
            .await
            .map_err(|error| {
                tracing::warn!(error = %crate::logging::Chain(&error), "could not store a new path");
                Refusal::Unavailable("database unavailable".into())
            })?;
        let id: i32 = row.get(0);
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, id);
        tracing::info!(path, "registered a new path");
        Ok(id)
    }

    fn warn_limit(&self) {
        let mut last = self
            .last_limit_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| at.elapsed() >= LIMIT_WARNING_INTERVAL) {
            *last = Some(Instant::now());
            tracing::warn!(
                max_paths = self.max_paths,
                "path limit reached: new paths are refused; raise max_paths if the site really has more pages"
            );
        }
    }
}

/// Removes a shared check from the in-flight table when its requester finishes or goes
/// away (a client that disconnects cancels the request), so the table cannot grow with
/// abandoned checks. The outcome itself is kept in `known` or `rejected`.
struct InFlightEntry<'a> {
    registry: &'a Registry,
    key: u64,
    cell: &'a Arc<OnceCell<CheckOutcome>>,
}

impl Drop for InFlightEntry<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .registry
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if in_flight
            .get(&self.key)
            .is_some_and(|current| Arc::ptr_eq(current, self.cell))
        {
            in_flight.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_paths_are_bounded_and_expire() {
        let mut rejected = Rejected::default();
        let now = Instant::now();
        for key in 0..(REJECTED_CAPACITY as u64 + 100) {
            rejected.insert(key, now);
        }
        assert_eq!(rejected.order.len(), REJECTED_CAPACITY);
        assert_eq!(rejected.expires.len(), REJECTED_CAPACITY);
        assert!(!rejected.contains(0, now), "the oldest were evicted");
        assert!(rejected.contains(REJECTED_CAPACITY as u64 + 99, now));
        assert!(!rejected.contains(
            REJECTED_CAPACITY as u64 + 99,
            now + REJECTED_TTL + Duration::from_secs(1)
        ));
    }
}

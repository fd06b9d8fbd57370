//! Which paths of the tracked site count: normalisation, exclusions, the in-memory registry
//! of known paths, and the check that admits a new one.
//!
//! Known and rejected paths are remembered by a keyed 64-bit hash (SipHash with a random
//! per-process key) rather than by their text: the registry costs 16 bytes per path,
//! whatever its length, and nobody can craft a colliding path without the key. Each known
//! path gets a dense index in this process (slots and the views tally refer to paths by it)
//! mapped to its database id. A miss first asks the database (another instance may have
//! registered the path), then the site, once: concurrent requests for the same new path
//! share one check, checks in flight are capped, and a rejected path is remembered
//! (boundedly) so a flood of made-up paths costs the site one request each and nothing on
//! repeat. Excluded paths are refused before any of this.

pub mod check;
pub mod exclude;
mod known;
pub mod normalize;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{OnceCell, Semaphore};

use crate::db::Db;
use crate::http::HttpError;
use crate::keyed::HashKeyed;
use crate::metrics::{Metrics, PathCheck};
use check::{CheckFailed, PathChecker, Verdict};
use exclude::PathPattern;
use known::Known;

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

/// Path texts remembered for the live view (pages open now are pages registered in the last
/// minutes); beyond this many, the memory is cleared and refills as visitors come.
const RECENT_NAMES: usize = 4096;

/// Why a path cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `exclude_paths` names it: never checked, stored or counted.
    Excluded,
    /// The site says it has no such page.
    NotOnSite,
    /// `max_paths` paths are registered already.
    LimitReached,
    /// No verdict now (site unreachable, database down); worth retrying later.
    Unavailable(String),
}

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

type CheckOutcome = Result<u32, Refusal>;

/// Entries of each thread's memory of recent lookups ([`RECENT`], [`NOTED`]).
const RECENT_ENTRIES: usize = 64;

thread_local! {
    /// Known paths this thread looked up lately, `(registry, key, index)` at `key % 64`. A
    /// known path keeps its index for the registry's life, so an entry never goes stale and
    /// a hit takes no lock: the registry's read lock was two atomic writes a `/register` on
    /// a cache line that every core took in turn.
    static RECENT: RefCell<[(u32, u64, u32); RECENT_ENTRIES]> =
        const { RefCell::new([(0, 0, 0); RECENT_ENTRIES]) };
    /// Path indexes whose names this thread saw noted: `(registry, names generation, index
    /// + 1 at index % 64)`. A new generation (the names were cleared) forgets them all.
    static NOTED: RefCell<(u32, u32, [u32; RECENT_ENTRIES])> =
        const { RefCell::new((0, 0, [0; RECENT_ENTRIES])) };
}

/// Tells registries apart in the per-thread memories (tests run several in one process).
static REGISTRIES: AtomicU32 = AtomicU32::new(1);

pub struct Registry {
    /// This registry's number in the per-thread memories; never 0.
    id: u32,
    key: RandomState,
    known: RwLock<Known>,
    /// Index → text of paths registered lately, for the live view.
    names: RwLock<HashMap<u32, Box<str>>>,
    /// Bumped each time `names` is cleared.
    names_generation: AtomicU32,
    exclude: Vec<PathPattern>,
    metrics: Arc<Metrics>,
    rejected: Mutex<Rejected>,
    /// One shared check per new path.
    in_flight: Mutex<HashKeyed<Arc<OnceCell<CheckOutcome>>>>,
    check_slots: Semaphore,
    checker: PathChecker,
    max_paths: usize,
    last_limit_warning: Mutex<Option<Instant>>,
}

impl Registry {
    pub fn new(
        checker: PathChecker,
        max_paths: usize,
        exclude: Vec<PathPattern>,
        metrics: Arc<Metrics>,
    ) -> Registry {
        Registry {
            id: REGISTRIES.fetch_add(1, Ordering::Relaxed),
            key: RandomState::new(),
            known: RwLock::new(Known::default()),
            names: RwLock::default(),
            names_generation: AtomicU32::new(0),
            exclude,
            metrics,
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

    /// Whether `exclude_paths` names this (normalised) path.
    pub fn is_excluded(&self, path: &str) -> bool {
        self.exclude.iter().any(|pattern| pattern.matches(path))
    }

    /// The index of a known path, without asking anybody.
    pub fn lookup(&self, path: &str) -> Option<u32> {
        self.known_index(self.key_of(path))
    }

    fn known_index(&self, key: u64) -> Option<u32> {
        let entry = (key % RECENT_ENTRIES as u64) as usize;
        let recent = RECENT.with_borrow(|recent| {
            let (registry, recent_key, index) = recent[entry];
            (registry == self.id && recent_key == key).then_some(index)
        });
        if recent.is_some() {
            return recent;
        }
        let index = self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .index_of(key)?;
        RECENT.with_borrow_mut(|recent| recent[entry] = (self.id, key, index));
        Some(index)
    }

    /// The database id of a path index.
    pub fn db_id(&self, index: u32) -> Option<i32> {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .id(index)
    }

    /// Every `(database id, index)`, for translating ids read back from the database (a
    /// restart's saved slots).
    pub fn indexes_by_id(&self) -> Vec<(i32, u32)> {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .ids()
            .collect()
    }

    /// Remembers a path read from the database (or registered here) and returns its index;
    /// a path known already keeps its index.
    pub fn remember(&self, path: &str, id: i32) -> u32 {
        let key = self.key_of(path);
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, id)
    }

    /// Remembers many `(id, path)` read from the database at once.
    pub fn remember_all(&self, paths: &[(i32, String)]) {
        let mut keyed: Vec<(u64, i32)> = paths
            .iter()
            .map(|(id, path)| (self.key_of(path), *id))
            .collect();
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert_many(&mut keyed);
    }

    /// Remembers the text of a path just registered by a visitor, for the live view.
    pub fn note_name(&self, index: u32, path: &str) {
        // Read before the names: a clear after this read bumps the generation, so what is
        // remembered below under this one is forgotten at the next call.
        let generation = self.names_generation.load(Ordering::Acquire);
        let entry = index as usize % RECENT_ENTRIES;
        let seen = NOTED.with_borrow(|&(registry, noted_generation, ref noted)| {
            registry == self.id && noted_generation == generation && noted[entry] == index + 1
        });
        if seen {
            return;
        }
        let known = self
            .names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&index);
        if !known {
            let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
            if names.len() >= RECENT_NAMES {
                names.clear();
                self.names_generation.fetch_add(1, Ordering::Release);
            }
            names.insert(index, path.into());
        }
        NOTED.with_borrow_mut(|noted| {
            if (noted.0, noted.1) != (self.id, generation) {
                *noted = (self.id, generation, [0; RECENT_ENTRIES]);
            }
            noted.2[entry] = index + 1;
        });
    }

    /// The text of a path registered lately, if still remembered.
    pub fn name(&self, index: u32) -> Option<Box<str>> {
        self.names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&index)
            .cloned()
    }

    /// The index of a normalised path, checking the site and registering the path the first
    /// time it is seen.
    pub async fn resolve(&self, path: &str, db: &Db) -> CheckOutcome {
        if self.is_excluded(path) {
            return Err(Refusal::Excluded);
        }
        let key = self.key_of(path);
        if let Some(index) = self.known_index(key) {
            return Ok(index);
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
        // Boxed: the check (an HTTP request to the site) is a large future, and a request
        // that needs it is rare; inline, it would make every request's future that large.
        cell.get_or_init(|| Box::pin(self.check_and_register(path, key, db)))
            .await
            .clone()
    }

    async fn check_and_register(&self, path: &str, key: u64, db: &Db) -> CheckOutcome {
        let unavailable = |_| Refusal::Unavailable("database unavailable".into());
        // The database must be able to take the path before the site is bothered; and
        // another instance may have registered it already.
        let conn = db.writes().map_err(unavailable)?;
        let stored = conn.find_path(path).await.map_err(|error| {
            tracing::warn!(error = %crate::logging::Chain(&error), "could not look a path up");
            Refusal::Unavailable("database unavailable".into())
        })?;
        if let Some(found) = stored {
            return Ok(self.known_insert(key, found.id));
        }
        let Ok(_slot) = tokio::time::timeout(CHECK_SLOT_WAIT, self.check_slots.acquire()).await
        else {
            return Err(Refusal::Unavailable(
                "too many new paths are being checked".into(),
            ));
        };
        let started = Instant::now();
        let verdict = self.checker.check(path).await;
        self.metrics.path_check(
            match verdict {
                Ok(Verdict::Exists) => PathCheck::Exists,
                Ok(Verdict::Missing) => PathCheck::Missing,
                Err(_) => PathCheck::Failed,
            },
            started.elapsed(),
        );
        match verdict {
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
        let id = conn.insert_path(path).await.map_err(|error| {
            tracing::warn!(error = %crate::logging::Chain(&error), "could not store a new path");
            Refusal::Unavailable("database unavailable".into())
        })?;
        tracing::info!(path, "registered a new path");
        Ok(self.known_insert(key, id))
    }

    fn known_insert(&self, key: u64, id: i32) -> u32 {
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, id)
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

    fn registry() -> Registry {
        let origin = crate::config::origin::Origin::parse("http://127.0.0.1:9").unwrap();
        let checker = PathChecker::new(origin, Duration::from_secs(1));
        let metrics = Arc::new(Metrics::new(&["/register"]));
        Registry::new(checker, 1000, Vec::new(), metrics)
    }

    #[test]
    fn a_thread_remembers_lookups_per_registry() {
        let (first, second) = (registry(), registry());
        first.remember("/zero", 10);
        let one = first.remember("/one", 11);
        assert_eq!(first.lookup("/one"), Some(one));
        // Twice: the second answer comes from this thread's memory.
        assert_eq!(first.lookup("/one"), Some(one));
        // Another registry has its own paths and indexes, whatever this thread remembers.
        assert_eq!(second.lookup("/one"), None);
        assert_eq!(second.remember("/one", 11), 0);
        assert_eq!(second.lookup("/one"), Some(0));
        assert_eq!(first.lookup("/one"), Some(one));
    }

    #[test]
    fn names_noted_before_a_clear_are_noted_again() {
        let registry = registry();
        registry.note_name(0, "/first");
        registry.note_name(0, "/first");
        assert_eq!(registry.name(0).as_deref(), Some("/first"));
        // Fill the memory until it is cleared; index 0 went with it.
        for index in 1..=RECENT_NAMES as u32 {
            registry.note_name(index, "/other");
        }
        assert_eq!(registry.name(0), None);
        // This thread noted index 0 before the clear: the note is made again, not skipped.
        registry.note_name(0, "/first");
        assert_eq!(registry.name(0).as_deref(), Some("/first"));
    }

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

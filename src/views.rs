//! Views and visitors, tallied in memory on the registration hot path and added to the
//! roll-ups about once a second in one statement (SPEC §8, §9).
//!
//! A registration adds to one atomic counter of its path (views in the low half, new page
//! visitors in the high half): no lock, no allocation, no database. Counters come in two
//! generations chosen by the parity of the local day, so a count made just before midnight
//! stays with its day even if the flush runs just after. The flush swaps counters to zero,
//! keeps what it took until the database has it (an outage loses nothing; a failed flush is
//! retried with the next one), and runs once more at shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::db::rollups::ViewTally;
use crate::time::Day;

/// Counters per allocated chunk: 32 KiB, allocated the first time a path in it is viewed.
const CHUNK: usize = 4096;

type Chunk = Box<[AtomicU64]>;

/// One counter word: views in the low 32 bits, visitors in the high 32 bits. A second's views
/// of one path never come near 2^32.
const VIEW: u64 = 1;
const VISITOR: u64 = 1 << 32;

struct Generation {
    paths: Box<[OnceLock<Chunk>]>,
    /// Views of the whole site are the sum of its paths'; this counts site visitors only.
    site_visitors: AtomicU64,
}

impl Generation {
    fn new(max_paths: usize) -> Generation {
        Generation {
            paths: (0..max_paths.div_ceil(CHUNK))
                .map(|_| OnceLock::new())
                .collect(),
            site_visitors: AtomicU64::new(0),
        }
    }

    fn counter(&self, path: u32) -> Option<&AtomicU64> {
        let path = path as usize;
        let chunk = self
            .paths
            .get(path / CHUNK)?
            .get_or_init(|| (0..CHUNK).map(|_| AtomicU64::new(0)).collect());
        Some(&chunk[path % CHUNK])
    }
}

/// Views and visitors not yet in the database, by path index (of the path registry).
pub struct Views {
    generations: [Generation; 2],
    /// Taken from the counters but not yet written: `(path index, day) → (views, visitors)`,
    /// and `day → site visitors`.
    unsaved: Mutex<Unsaved>,
}

#[derive(Default)]
struct Unsaved {
    paths: HashMap<(u32, Day), (i64, i64)>,
    site_visitors: HashMap<Day, i64>,
}

fn generation_of(day: Day) -> usize {
    day.days().rem_euclid(2) as usize
}

impl Views {
    /// Room for path indexes below `max_paths`.
    pub fn new(max_paths: usize) -> Views {
        Views {
            generations: [Generation::new(max_paths), Generation::new(max_paths)],
            unsaved: Mutex::default(),
        }
    }

    /// One view of `path` on `day`; `new_visitor` when the browser had not opened it that day.
    pub fn view(&self, path: u32, day: Day, new_visitor: bool) {
        if let Some(counter) = self.generations[generation_of(day)].counter(path) {
            // Relaxed: a counter is only ever added to and swapped; nothing is published
            // through it.
            counter.fetch_add(VIEW + u64::from(new_visitor) * VISITOR, Ordering::Relaxed);
        }
    }

    /// A browser that had not visited the site yet on `day`.
    pub fn site_visitor(&self, day: Day) {
        self.generations[generation_of(day)]
            .site_visitors
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Moves everything counted so far into the unsaved tally. `today` tells which day each
    /// generation holds: today's parity is today, the other one yesterday.
    fn collect(&self, today: Day) {
        let mut unsaved = self.unsaved.lock().unwrap_or_else(|e| e.into_inner());
        for day in [today, today.plus(-1)] {
            let generation = &self.generations[generation_of(day)];
            let visitors = generation.site_visitors.swap(0, Ordering::Relaxed);
            if visitors > 0 {
                *unsaved.site_visitors.entry(day).or_default() += visitors as i64;
            }
            for (chunk_index, chunk) in generation.paths.iter().enumerate() {
                let Some(chunk) = chunk.get() else { continue };
                for (offset, counter) in chunk.iter().enumerate() {
                    // A load first: most counters are zero, and a swap would dirty their
                    // cache lines for nothing.
                    if counter.load(Ordering::Relaxed) == 0 {
                        continue;
                    }
                    let word = counter.swap(0, Ordering::Relaxed);
                    let path = (chunk_index * CHUNK + offset) as u32;
                    let entry = unsaved.paths.entry((path, day)).or_default();
                    entry.0 += (word & 0xFFFF_FFFF) as i64;
                    entry.1 += (word >> 32) as i64;
                }
            }
        }
    }

    /// What to write now: every unsaved count, paths mapped to database ids by `path_id`
    /// (a path without one is kept for later). Call [`Views::saved`] once it is written.
    pub fn take(&self, today: Day, path_id: impl Fn(u32) -> Option<i32>) -> Flush {
        self.collect(today);
        let unsaved = self.unsaved.lock().unwrap_or_else(|e| e.into_inner());
        let mut paths: Vec<(u32, i32, Day, i64, i64)> = Vec::new();
        let mut site: HashMap<Day, (i64, i64)> = HashMap::new();
        for (&(path, day), &(views, visitors)) in &unsaved.paths {
            if let Some(id) = path_id(path) {
                paths.push((path, id, day, views, visitors));
                site.entry(day).or_default().0 += views;
            }
        }
        for (&day, &visitors) in &unsaved.site_visitors {
            site.entry(day).or_default().1 += visitors;
        }
        paths.sort_unstable_by_key(|p| (p.1, p.2));
        let mut tally = ViewTally {
            paths: paths.iter().map(|p| (p.1, p.2, p.3, p.4)).collect(),
            site: site
                .into_iter()
                .map(|(day, (views, visitors))| (day, views, visitors))
                .collect(),
        };
        tally.site.sort_unstable_by_key(|s| s.0);
        Flush {
            tally,
            indexes: paths.iter().map(|p| p.0).collect(),
        }
    }

    /// `flush` (from [`Views::take`]) is in the database: forget it. Counts collected since
    /// stay for the next flush.
    pub fn saved(&self, flush: &Flush) {
        let mut unsaved = self.unsaved.lock().unwrap_or_else(|e| e.into_inner());
        for (&path, &(_, day, views, visitors)) in flush.indexes.iter().zip(&flush.tally.paths) {
            if let Some(entry) = unsaved.paths.get_mut(&(path, day)) {
                entry.0 -= views;
                entry.1 -= visitors;
                if *entry == (0, 0) {
                    unsaved.paths.remove(&(path, day));
                }
            }
        }
        for &(day, _, visitors) in &flush.tally.site {
            if let Some(entry) = unsaved.site_visitors.get_mut(&day) {
                *entry -= visitors;
                if *entry == 0 {
                    unsaved.site_visitors.remove(&day);
                }
            }
        }
    }
}

/// Counts taken for one write: the statement's input, and the path index of each path row.
pub struct Flush {
    pub tally: ViewTally,
    indexes: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: i32) -> Day {
        Day::from_days(20_000 + n)
    }

    #[test]
    fn views_and_visitors_add_up_per_path_and_day() {
        let views = Views::new(10_000);
        for _ in 0..3 {
            views.view(7, day(0), false);
        }
        views.view(7, day(0), true);
        views.view(9_999, day(0), true);
        views.site_visitor(day(0));
        views.view(7, day(-1), true); // just before midnight, flushed after it
        let id = |path: u32| Some(path as i32 + 1);
        let flush = views.take(day(0), id);
        assert_eq!(
            flush.tally.paths,
            vec![
                (8, day(-1), 1, 1),
                (8, day(0), 4, 1),
                (10_000, day(0), 1, 1)
            ]
        );
        assert_eq!(flush.tally.site, vec![(day(-1), 1, 0), (day(0), 5, 1)]);
        views.saved(&flush);
        assert!(
            views.take(day(0), id).tally.is_empty(),
            "nothing counted twice"
        );
    }

    #[test]
    fn an_unsaved_flush_is_kept_and_merged_with_new_counts() {
        let views = Views::new(100);
        views.view(1, day(0), true);
        let first = views.take(day(0), |p| Some(p as i32));
        assert_eq!(first.tally.paths, vec![(1, day(0), 1, 1)]);
        // The write failed: nothing is marked saved. More views arrive meanwhile.
        views.view(1, day(0), false);
        let second = views.take(day(0), |p| Some(p as i32));
        assert_eq!(second.tally.paths, vec![(1, day(0), 2, 1)]);
        // A view counted after `take` but before `saved` is not lost.
        views.view(1, day(0), false);
        views.saved(&second);
        let third = views.take(day(0), |p| Some(p as i32));
        assert_eq!(third.tally.paths, vec![(1, day(0), 1, 0)]);
    }

    #[test]
    fn paths_beyond_the_limit_and_unknown_ids_are_not_counted_wrongly() {
        let views = Views::new(10);
        views.view(5_000, day(0), true); // beyond max_paths: ignored
        views.view(3, day(0), false);
        let flush = views.take(day(0), |_| None); // id not known yet: kept
        assert!(flush.tally.paths.is_empty());
        let flush = views.take(day(0), |p| Some(p as i32));
        assert_eq!(flush.tally.paths, vec![(3, day(0), 1, 0)]);
    }
}

//! The known paths in memory: each path's keyed hash, its dense index in this process, and
//! its database id, in 16.5 bytes per path.
//!
//! A hash table of a hundred thousand `u64 → u32` entries costs 2.2 MB (buckets padded to
//! 16 bytes, a control byte each, a power-of-two bucket count, every page of it touched);
//! it was the largest single allocation of a large site's tracker. Here the hashes are kept
//! sorted in one array, with the matching indexes in a parallel array (12 bytes per path,
//! nothing padded or empty). Because the keys are uniformly distributed hashes, their top
//! bits say nearly where they are: a directory of the first position of each top-bits
//! prefix (one entry per eight paths) narrows a lookup to a handful of neighbouring keys,
//! one cache line.
//!
//! Inserting one path moves the tail of the arrays (a millisecond's fraction for 100,000
//! paths, and paths are new rarely); loading many at once merges them in one pass.

/// Paths per directory entry, on average.
const PATHS_PER_PREFIX: usize = 8;

/// Invariants: `keys` is strictly ascending; `indexes[i]` is the index of `keys[i]`;
/// `indexes` is a permutation of `0..ids.len()`; `ids[index]` is the database id;
/// `prefixes[p]` is the position of the first key whose top `prefix_bits` bits are `p` or
/// more (its last entry is `keys.len()`).
pub struct Known {
    keys: Vec<u64>,
    indexes: Vec<u32>,
    ids: Vec<i32>,
    prefix_bits: u32,
    prefixes: Vec<u32>,
}

impl Default for Known {
    fn default() -> Known {
        Known {
            keys: Vec::new(),
            indexes: Vec::new(),
            ids: Vec::new(),
            prefix_bits: 0,
            prefixes: vec![0, 0],
        }
    }
}

impl Known {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn index_of(&self, key: u64) -> Option<u32> {
        self.position(key).ok().map(|at| self.indexes[at])
    }

    pub fn id(&self, index: u32) -> Option<i32> {
        self.ids.get(index as usize).copied()
    }

    /// Every `(database id, index)`.
    pub fn ids(&self) -> impl Iterator<Item = (i32, u32)> + '_ {
        self.ids
            .iter()
            .enumerate()
            .map(|(index, &id)| (id, index as u32))
    }

    /// The index of `key`, added with `id` when new (a known key keeps its index and id).
    pub fn insert(&mut self, key: u64, id: i32) -> u32 {
        match self.position(key) {
            Ok(at) => self.indexes[at],
            Err(at) => {
                let index = self.ids.len() as u32;
                self.keys.insert(at, key);
                self.indexes.insert(at, index);
                self.ids.push(id);
                if self.wants_more_prefixes() {
                    self.rebuild_prefixes();
                } else {
                    let prefix = self.prefix_of(key);
                    for start in &mut self.prefixes[prefix + 1..] {
                        *start += 1;
                    }
                }
                index
            }
        }
    }

    /// Adds every new `(key, id)` at once: one merge instead of one move per path. Keys
    /// known already, or repeated in `new`, keep their first index and id.
    pub fn insert_many(&mut self, new: &mut Vec<(u64, i32)>) {
        new.retain(|&(key, _)| self.position(key).is_err());
        // Stable: of a repeated key, the first stays.
        new.sort_by_key(|&(key, _)| key);
        new.dedup_by_key(|&mut (key, _)| key);
        if new.is_empty() {
            return;
        }
        let (old, added) = (self.keys.len(), new.len());
        let first_index = self.ids.len() as u32;
        // Exact: growing by doubling would leave up to half of each array unused for good.
        self.keys.reserve_exact(added);
        self.indexes.reserve_exact(added);
        self.ids.reserve_exact(added);
        self.ids.extend(new.iter().map(|&(_, id)| id));
        self.keys.resize(old + added, 0);
        self.indexes.resize(old + added, 0);
        // Merge from the back, so nothing is overwritten before it moved.
        let (mut from_old, mut from_new) = (old, added);
        for to in (0..old + added).rev() {
            let take_old =
                from_new == 0 || (from_old > 0 && self.keys[from_old - 1] > new[from_new - 1].0);
            if take_old {
                from_old -= 1;
                self.keys[to] = self.keys[from_old];
                self.indexes[to] = self.indexes[from_old];
            } else {
                from_new -= 1;
                self.keys[to] = new[from_new].0;
                self.indexes[to] = first_index + from_new as u32;
            }
            if from_new == 0 {
                // The rest of the old keys are in place already.
                break;
            }
        }
        self.rebuild_prefixes();
    }

    fn prefix_of(&self, key: u64) -> usize {
        key.checked_shr(64 - self.prefix_bits).unwrap_or(0) as usize
    }

    fn wants_more_prefixes(&self) -> bool {
        self.keys.len() > (2 * PATHS_PER_PREFIX) << self.prefix_bits
    }

    fn rebuild_prefixes(&mut self) {
        self.prefix_bits = (self.keys.len() / PATHS_PER_PREFIX)
            .next_power_of_two()
            .trailing_zeros();
        let count = 1usize << self.prefix_bits;
        self.prefixes.clear();
        self.prefixes.reserve_exact(count + 1);
        let mut at = 0;
        for prefix in 0..count {
            while at < self.keys.len() && self.prefix_of(self.keys[at]) < prefix {
                at += 1;
            }
            self.prefixes.push(at as u32);
        }
        self.prefixes.push(self.keys.len() as u32);
    }

    /// Where `key` is (`Ok`) or would go (`Err`): among the keys of its prefix.
    fn position(&self, key: u64) -> Result<usize, usize> {
        let prefix = self.prefix_of(key);
        let (low, high) = (
            self.prefixes[prefix] as usize,
            self.prefixes[prefix + 1] as usize,
        );
        self.keys[low..high]
            .binary_search(&key)
            .map(|at| low + at)
            .map_err(|at| low + at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A small deterministic generator (xorshift), so failures reproduce.
    fn keys(seed: u64, count: usize) -> Vec<u64> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            })
            .collect()
    }

    fn check_against(known: &Known, model: &BTreeMap<u64, (u32, i32)>) {
        assert_eq!(known.len(), model.len());
        assert!(known.keys.windows(2).all(|w| w[0] < w[1]), "keys ascend");
        for (&key, &(index, id)) in model {
            assert_eq!(known.index_of(key), Some(index));
            assert_eq!(known.id(index), Some(id));
        }
        let mut indexes = known.indexes.clone();
        indexes.sort_unstable();
        assert!(indexes.iter().enumerate().all(|(i, &x)| i as u32 == x));
    }

    #[test]
    fn single_and_bulk_inserts_agree_with_a_model() {
        let mut known = Known::default();
        let mut model = BTreeMap::new();
        let all = keys(0x9e37_79b9_7f4a_7c15, 5_000);
        for (n, &key) in all[..1_000].iter().enumerate() {
            let index = known.insert(key, n as i32);
            model.entry(key).or_insert((index, n as i32));
            assert_eq!(known.insert(key, -1), index, "a known key keeps its index");
        }
        check_against(&known, &model);
        for chunk in all[800..].chunks(700) {
            let mut batch: Vec<(u64, i32)> = chunk
                .iter()
                .map(|&key| (key, (key % 1_000) as i32))
                .collect();
            // A repeat within the batch keeps the first id.
            batch.push((chunk[0], -7));
            let before = known.len() as u32;
            known.insert_many(&mut batch);
            let mut fresh: Vec<u64> = chunk
                .iter()
                .copied()
                .filter(|key| !model.contains_key(key))
                .collect();
            fresh.sort_unstable();
            fresh.dedup();
            for (index, key) in (before..).zip(fresh) {
                model.insert(key, (index, (key % 1_000) as i32));
            }
        }
        check_against(&known, &model);
    }

    #[test]
    fn absent_keys_are_not_found_anywhere_in_the_range() {
        let mut known = Known::default();
        assert_eq!(known.index_of(42), None);
        let mut batch: Vec<(u64, i32)> = keys(7, 2_000).into_iter().map(|k| (k, 1)).collect();
        known.insert_many(&mut batch);
        for probe in [0, 1, u64::MAX, u64::MAX - 1, 1 << 63] {
            assert_eq!(known.index_of(probe), None);
        }
        // Extremes, then their neighbours: the window must widen to either end.
        known.insert(0, 2);
        known.insert(u64::MAX, 3);
        assert!(known.index_of(0).is_some() && known.index_of(u64::MAX).is_some());
        assert_eq!(known.index_of(1), None);
        assert_eq!(known.index_of(u64::MAX - 1), None);
    }

    #[test]
    fn skewed_keys_are_found_too() {
        // Not hashes: all crowded at one end, so every guess is far off.
        let mut known = Known::default();
        for key in 0..3_000u64 {
            known.insert(key * 3, key as i32);
        }
        for key in 0..3_000u64 {
            assert_eq!(known.id(known.index_of(key * 3).unwrap()), Some(key as i32));
            assert_eq!(known.index_of(key * 3 + 1), None);
        }
    }
}

//! Pending visits: a fixed array of visitor slots, handed out round-robin, lock-free.
//!
//! # Layout
//! Each slot is two words. The *tag word* is `tag << 3 | state`; the *data word* holds, while
//! the slot is `REGISTERED`/`COUNTING`, `path_id << 32 | registration_tick` (see `clock`),
//! and once `COUNTED`, the visit's database id.
//!
//! A token is `tag << index_bits | index`, below 2^53 so JavaScript reads it exactly. The tag
//! is a keyed hash (SipHash, random per-process key) of the registration's ticket number,
//! truncated to the bits left over (37 with the default 65,536 slots): it cannot be predicted
//! from other tokens, so guessing a live token succeeds with probability about
//! pending / 2^53 per try.
//!
//! # Protocol
//! States move only by compare-and-swap on the tag word:
//! `FREE|REGISTERED|COUNTED → WRITING → REGISTERED → COUNTING → COUNTED`, and
//! `COUNTING → REGISTERED` when writing the visit fails.
//!
//! Invariants:
//! 1. Only the thread that moved a slot to `WRITING` or `COUNTING` writes its data word, and
//!    registrations never take a slot that is `WRITING` or `COUNTING`. So a claim in
//!    progress is never disturbed, and its owner has the slot to itself.
//! 2. A registration gives the slot a new tag, so every token of the previous occupant stops
//!    matching: a stale token is rejected, never counted as someone else's visit.
//! 3. `REGISTERED → COUNTING` is a single CAS from the exact tag word the token names, so of
//!    any number of racing `/post-sleep` calls exactly one wins; a token counts once.
//! 4. Readers that only look (too-early checks, `/page-left`) read the data word between two
//!    reads of the tag word, seqlock style, and trust it only if the tag word did not change.
//!
//! The tag words could in theory repeat (ABA) only if a slot drew the same random tag twice
//! in a row: probability 2^-37 per reuse with the default size, and harmless even then
//! (the old token would name a live registration of the same shape).

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering, fence};

/// A token is a JSON number; JavaScript numbers are exact below 2^53.
pub const TOKEN_BITS: u32 = 53;
/// How many slots a registration looks at before giving up (all busy mid-claim).
const PROBES: usize = 8;

const STATE_BITS: u32 = 3;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;
// A never-used slot's tag word is 0: state 0 ("free") with tag 0, which no token carries.
const WRITING: u64 = 1;
const REGISTERED: u64 = 2;
const COUNTING: u64 = 3;
const COUNTED: u64 = 4;

struct Slot {
    tag_word: AtomicU64,
    data: AtomicU64,
}

/// A visitor token as the script sends it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(u64);

impl Token {
    /// Parses the decimal form the tracker writes: digits only, no leading zero, below 2^53.
    pub fn parse(text: &str) -> Option<Token> {
        if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if text.len() > 1 && text.starts_with('0') {
            return None;
        }
        let value: u64 = text.parse().ok()?;
        (value < 1 << TOKEN_BITS).then_some(Token(value))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// What a registration records about a pending visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub path_id: u32,
    /// Clock ticks (tenths of a second) at registration.
    pub registered_at: u32,
}

impl Pending {
    fn pack(self) -> u64 {
        u64::from(self.path_id) << 32 | u64::from(self.registered_at)
    }

    fn unpack(word: u64) -> Pending {
        Pending {
            path_id: (word >> 32) as u32,
            registered_at: word as u32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// Unknown, stale, already counted, or being counted right now.
    NotFound,
    /// Registered less than the minimum delay ago; the token stays usable.
    TooEarly { wait_ticks: u32 },
}

/// Every slot is in the middle of a registration or a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllBusy;

pub struct Slots {
    slots: Box<[Slot]>,
    next_ticket: AtomicU64,
    index_bits: u32,
    tag_mask: u64,
    tag_key: RandomState,
}

impl Slots {
    /// An array of `count` slots (at least 2). Memory is reserved up front but pages are only
    /// touched as slots are first used.
    pub fn new(count: usize) -> Slots {
        let count = count.max(2);
        let index_bits = usize::BITS - (count - 1).leading_zeros();
        assert!(
            index_bits + 16 <= TOKEN_BITS,
            "too many slots to leave room for the tag"
        );
        // SAFETY: a slot is two atomic integers, for which all-zero bytes are a valid value
        // (FREE, no data). Zeroed allocation leaves the pages untouched until a slot is
        // first used, so a large, mostly idle array costs no resident memory.
        let slots = unsafe { Box::<[Slot]>::new_zeroed_slice(count).assume_init() };
        Slots {
            slots,
            next_ticket: AtomicU64::new(0),
            index_bits,
            tag_mask: (1 << (TOKEN_BITS - index_bits)) - 1,
            tag_key: RandomState::new(),
        }
    }

    /// Bits of unguessable tag in every token.
    pub fn tag_bits(&self) -> u32 {
        TOKEN_BITS - self.index_bits
    }

    fn split(&self, token: Token) -> Option<(&Slot, u64)> {
        let index = (token.0 & ((1 << self.index_bits) - 1)) as usize;
        let tag = token.0 >> self.index_bits;
        Some((self.slots.get(index)?, tag))
    }

    /// Takes the next slot for a new pending visit and returns its token.
    pub fn register(&self, pending: Pending) -> Result<Token, AllBusy> {
        for _ in 0..PROBES {
            // Relaxed: the counter only spreads registrations over slots; exclusivity comes
            // from the CAS below.
            let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
            let index = (ticket % self.slots.len() as u64) as usize;
            let slot = &self.slots[index];
            let current = slot.tag_word.load(Ordering::Relaxed);
            if matches!(current & STATE_MASK, WRITING | COUNTING) {
                continue;
            }
            let tag = match self.tag_key.hash_one(ticket) & self.tag_mask {
                0 => 1, // tag 0 would match a never-used slot
                tag => tag,
            };
            // Acquire: our data write below must not be seen as happening before we own the
            // slot. Failure means someone else changed it in between; try another slot.
            if slot
                .tag_word
                .compare_exchange(
                    current,
                    tag << STATE_BITS | WRITING,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            // Release fence: a reader that sees the data we write next also sees the tag word
            // change above, so its seqlock check rejects the mix (invariant 4).
            fence(Ordering::Release);
            slot.data.store(pending.pack(), Ordering::Relaxed);
            // Release: whoever sees REGISTERED with this tag sees the data stored above.
            slot.tag_word
                .store(tag << STATE_BITS | REGISTERED, Ordering::Release);
            return Ok(Token(tag << self.index_bits | index as u64));
        }
        Err(AllBusy)
    }

    /// Reads the data word of `slot` if its tag word is `expected` before and after.
    fn read_stable(slot: &Slot, expected: u64) -> Option<u64> {
        // Acquire pairs with the Release store that published `expected`.
        if slot.tag_word.load(Ordering::Acquire) != expected {
            return None;
        }
        let data = slot.data.load(Ordering::Relaxed);
        // Acquire fence: if `data` came from a writer that followed, its tag change is
        // visible to the load below (pairs with the writers' Release fences).
        fence(Ordering::Acquire);
        (slot.tag_word.load(Ordering::Relaxed) == expected).then_some(data)
    }

    /// Starts counting the visit of `token` at `now` (clock ticks), if it is registered and
    /// at least `min_delay` ticks old. The returned claim must be completed with [`Claim::counted`]; dropping it
    /// instead (the write failed, or the request was cancelled) makes the token usable again.
    pub fn claim(&self, token: Token, now: u32, min_delay: u32) -> Result<Claim<'_>, ClaimError> {
        let (slot, tag) = self.split(token).ok_or(ClaimError::NotFound)?;
        let registered = tag << STATE_BITS | REGISTERED;
        let pending = Self::read_stable(slot, registered)
            .map(Pending::unpack)
            .ok_or(ClaimError::NotFound)?;
        let due = u64::from(pending.registered_at) + u64::from(min_delay);
        // No delay means no wait at all, not "wait for the registration's tick to round up".
        if min_delay > 0 && u64::from(now) < due {
            return Err(ClaimError::TooEarly {
                wait_ticks: (due - u64::from(now)) as u32,
            });
        }
        // AcqRel: exactly one claimer wins (invariant 3); Acquire makes the data read above
        // belong to the registration this CAS validates.
        slot.tag_word
            .compare_exchange(
                registered,
                tag << STATE_BITS | COUNTING,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .map_err(|_| ClaimError::NotFound)?;
        Ok(Claim {
            slot,
            tag,
            pending,
            done: false,
        })
    }

    /// The database id of the counted visit `token` names.
    pub fn counted_visit(&self, token: Token) -> Option<i64> {
        let (slot, tag) = self.split(token)?;
        Self::read_stable(slot, tag << STATE_BITS | COUNTED).map(|id| id as i64)
    }
}

/// Exclusive ownership of one pending visit while it is being written.
pub struct Claim<'a> {
    slot: &'a Slot,
    tag: u64,
    pub pending: Pending,
    done: bool,
}

impl Claim<'_> {
    /// The visit is stored as `visit_id`; later `/page-left` calls find it.
    pub fn counted(mut self, visit_id: i64) {
        // Release fence, then data, then the Release store of COUNTED: same shape as a
        // registration, so seqlock readers never take the new id for the old state's data.
        fence(Ordering::Release);
        self.slot.data.store(visit_id as u64, Ordering::Relaxed);
        self.slot
            .tag_word
            .store(self.tag << STATE_BITS | COUNTED, Ordering::Release);
        self.done = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.done {
            // The data word was not touched while COUNTING, so REGISTERED is whole again.
            self.slot
                .tag_word
                .store(self.tag << STATE_BITS | REGISTERED, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Barrier};

    use super::*;

    const PATH: Pending = Pending {
        path_id: 7,
        registered_at: 1_000,
    };

    #[test]
    fn tokens_parse_strictly() {
        assert_eq!(Token::parse("0"), Some(Token(0)));
        assert_eq!(Token::parse("9007199254740991"), Some(Token((1 << 53) - 1)));
        for bad in [
            "",
            "007",
            "-1",
            "+1",
            "1.0",
            "1e3",
            " 1",
            "0x10",
            "9007199254740992",
            "12345678901234567",
            "١",
        ] {
            assert_eq!(Token::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_visit_counts_once_after_the_delay() {
        let slots = Slots::new(16);
        let token = slots.register(PATH).unwrap();
        assert!(token.get() < 1 << TOKEN_BITS);
        assert_eq!(
            slots.claim(token, 1_018, 19).err(),
            Some(ClaimError::TooEarly { wait_ticks: 1 })
        );
        assert_eq!(slots.counted_visit(token), None, "not counted yet");
        let claim = slots.claim(token, 1_019, 19).unwrap();
        assert_eq!(claim.pending, PATH);
        assert_eq!(
            slots.claim(token, 1_019, 19).err(),
            Some(ClaimError::NotFound),
            "being counted"
        );
        claim.counted(42);
        assert_eq!(slots.counted_visit(token), Some(42));
        assert_eq!(
            slots.claim(token, 1_020, 19).err(),
            Some(ClaimError::NotFound),
            "already counted"
        );
    }

    #[test]
    fn without_a_delay_a_visit_counts_at_once() {
        let slots = Slots::new(16);
        let token = slots.register(PATH).unwrap();
        // Registered at tick 1000 (rounded up); now is still tick 999.
        assert!(slots.claim(token, 999, 0).is_ok());
    }

    #[test]
    fn a_dropped_claim_leaves_the_token_usable() {
        let slots = Slots::new(16);
        let token = slots.register(PATH).unwrap();
        drop(slots.claim(token, 2_000, 19).unwrap());
        let claim = slots.claim(token, 2_000, 19).unwrap();
        claim.counted(1);
        assert_eq!(slots.counted_visit(token), Some(1));
    }

    #[test]
    fn a_reused_slot_rejects_the_old_token() {
        let slots = Slots::new(16);
        let old = slots.register(PATH).unwrap();
        let claim = slots.claim(old, 2_000, 0).unwrap();
        claim.counted(5);
        let mut newer = Vec::new();
        for _ in 0..16 {
            newer.push(
                slots
                    .register(Pending {
                        path_id: 8,
                        registered_at: 3_000,
                    })
                    .unwrap(),
            );
        }
        assert_eq!(slots.claim(old, 4_000, 0).err(), Some(ClaimError::NotFound));
        assert_eq!(
            slots.counted_visit(old),
            None,
            "the old visit id is gone with the slot"
        );
        let same_slot = newer
            .iter()
            .find(|t| t.get() & 15 == old.get() & 15)
            .unwrap();
        assert_ne!(same_slot.get(), old.get());
        assert_eq!(
            slots.claim(*same_slot, 4_000, 0).unwrap().pending.path_id,
            8
        );
    }

    #[test]
    fn a_slot_being_counted_is_skipped_not_stolen() {
        let slots = Slots::new(2);
        let first = slots.register(PATH).unwrap();
        let claim = slots.claim(first, 2_000, 0).unwrap();
        // Both later registrations land in the other slot.
        let a = slots.register(PATH).unwrap();
        let b = slots.register(PATH).unwrap();
        assert_ne!(a.get() & 1, first.get() & 1);
        assert_ne!(b.get() & 1, first.get() & 1);
        claim.counted(9);
        assert_eq!(slots.counted_visit(first), Some(9));
    }

    #[test]
    fn registration_fails_cleanly_when_every_slot_is_being_counted() {
        let slots = Slots::new(2);
        let tokens = [slots.register(PATH).unwrap(), slots.register(PATH).unwrap()];
        let _claims: Vec<_> = tokens
            .iter()
            .map(|t| slots.claim(*t, 2_000, 0).unwrap())
            .collect();
        assert_eq!(slots.register(PATH).err(), Some(AllBusy));
    }

    #[test]
    fn guessed_tokens_match_nothing() {
        let slots = Slots::new(1 << 16);
        let _real: Vec<_> = (0..1_000).map(|_| slots.register(PATH).unwrap()).collect();
        assert_eq!(slots.tag_bits(), 37);
        let hits = (0..200_000u64)
            .filter(|n| slots.claim(Token(*n * 7_919), 5_000, 0).is_ok())
            .count();
        assert_eq!(hits, 0);
        assert_eq!(
            slots.claim(Token(0), 5_000, 0).err(),
            Some(ClaimError::NotFound),
            "free slots have no tag"
        );
    }

    #[test]
    fn racing_claims_count_each_token_exactly_once() {
        let slots = Arc::new(Slots::new(64));
        let tokens: Arc<Vec<Token>> =
            Arc::new((0..64).map(|_| slots.register(PATH).unwrap()).collect());
        let wins = Arc::new(AtomicUsize::new(0));
        let threads = 8;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (slots, tokens, wins, barrier) =
                    (slots.clone(), tokens.clone(), wins.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for (i, token) in tokens.iter().enumerate() {
                        if let Ok(claim) = slots.claim(*token, 5_000, 0) {
                            wins.fetch_add(1, Ordering::Relaxed);
                            claim.counted(i as i64 + 1);
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(wins.load(Ordering::Relaxed), 64);
        for (i, token) in tokens.iter().enumerate() {
            assert_eq!(slots.counted_visit(*token), Some(i as i64 + 1));
        }
    }

    /// Many threads register, claim, fail and count on a small array so slots are reused
    /// constantly. Whatever interleaving happens, a claim must see exactly the data its own
    /// registration stored, a token counts at most once, and a counted token reports its
    /// own visit id (or nothing once the slot was reused).
    #[test]
    fn hammering_a_small_array_never_mixes_up_visits() {
        let slots = Arc::new(Slots::new(16));
        let threads = 8;
        let rounds = 20_000;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads as u32)
            .map(|thread| {
                let (slots, barrier) = (slots.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut counted = HashSet::new();
                    for round in 0..rounds {
                        let pending = Pending {
                            path_id: thread,
                            registered_at: round,
                        };
                        let Ok(token) = slots.register(pending) else {
                            continue;
                        };
                        match slots.claim(token, round, 0) {
                            Ok(claim) => {
                                assert_eq!(
                                    claim.pending, pending,
                                    "a claim saw another registration's data"
                                );
                                if round % 3 == 0 {
                                    drop(claim); // a failed write: back to REGISTERED
                                    continue;
                                }
                                let id = i64::from(thread) << 32 | i64::from(round);
                                claim.counted(id);
                                assert!(counted.insert(token.get()), "counted twice");
                                if let Some(seen) = slots.counted_visit(token) {
                                    assert_eq!(seen, id, "page-left would update another visit");
                                }
                            }
                            Err(ClaimError::NotFound) => {} // already reused by another thread
                            Err(other) => panic!("unexpected {other:?}"),
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    }
}

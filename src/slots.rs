//! Pending visits: a fixed array of visitor slots, handed out in a secret order, lock-free.
//!
//! # Tokens
//! A token is `instance << 48 | tag << index_bits | index`, below 2^53 so JavaScript reads
//! it exactly: the issuing instance (0–31, so a load balancer can route on `token >> 48`),
//! a per-registration tag of `48 − index_bits` bits (at least 24; 32 with the default
//! 65,536 slots), and the slot's index (`index_bits = ⌈log2 count⌉`). The tag is a keyed
//! hash (SipHash, [`SlotKeys`]) of the registration's ticket number, never 0: it cannot be
//! predicted from other tokens, so a guess hits a live registration with probability about
//! pending / 2^48.
//!
//! # Order
//! Registration number `ticket` (one `fetch_add`) goes to slot `permute(ticket % count)`,
//! where `permute` is a keyed bijection of `[0, count)` chosen afresh for every cycle of
//! `count` tickets: a four-round Feistel network on `index_bits` bits (halves of ⌊b/2⌋ and
//! ⌈b/2⌉ bits, swapping widths each round, so the domain is less than twice `count`) with
//! SipHash as round function, and cycle-walking back into range. Each cycle therefore
//! visits every slot exactly once, as round-robin did, but neither indices nor tags tell
//! how many registrations happened between two tokens (SPEC §12).
//!
//! # Layout
//! Each slot is three words:
//! - `state` = `tag << 4 | state`, states `FREE` (0, never used), `WRITING`, `REGISTERED`,
//!   `COUNTING`, `COUNTED`, `LEFT`;
//! - `pending` = `path << 32 | tick`: the caller's path number and the monotonic tick of
//!   the registration, kept in every state after it (for the live view);
//! - `extra` = while `REGISTERED`/`COUNTING`: `wall_secs << 32 | client << 16` (Unix
//!   seconds at registration and the client limiter's bucket); once `COUNTED`/`LEFT`: the
//!   visit's database id.
//!
//! # Protocol
//! States move only by compare-and-swap on `state`, or by a store from the one thread that
//! owns the slot:
//! `FREE|COUNTED|LEFT|REGISTERED (expired) → WRITING → REGISTERED → COUNTING`, then
//! `COUNTING → WRITING → COUNTED → LEFT` once the visit is stored, or `COUNTING → REGISTERED`
//! when storing it fails.
//!
//! Invariants:
//! 1. Only the thread that moved a slot to `WRITING` (a registration) or `COUNTING` (a
//!    claim) writes its `pending` and `extra` words, and registrations never take a slot
//!    that is `WRITING` or `COUNTING`. A claim in progress is never disturbed.
//! 2. A registration gives the slot a new tag, so every token of the previous occupant
//!    stops matching: a stale token is rejected, never counted as someone else's visit.
//! 3. `REGISTERED → COUNTING` is a single CAS from the exact state word the token names,
//!    so of any number of racing `/post-sleep` calls exactly one wins; a token counts once.
//! 4. A `REGISTERED` slot younger than `protect_ticks` is never taken: a flood of
//!    registrations fails with [`AllBusy`] instead of evicting pending visitors (SPEC §12).
//!    An expired one is taken by a CAS from the exact state word whose registration tick
//!    was judged, so the age checked is that registration's, and only the CAS winner
//!    reports the evicted client bucket.
//! 5. The words change only while the state is `WRITING`: a registration writes both, a
//!    claim's owner moves `COUNTING → WRITING → COUNTED` around storing the visit id. So
//!    readers that only look read the words between two loads of `state` (or before the
//!    CAS that acts on them) and trust them only if `state` did not change in between,
//!    seqlock style. `pending` changes only together with the tag.
//! 6. The ticket counter and the keys are part of a [`Snapshot`], so after a restart no
//!    ticket, hence no (index, tag) pair, is handed out a second time.
//!
//! Tags could in theory repeat (ABA) only if a slot drew the same tag twice in a row:
//! probability 2^-32 per reuse with the default size, and harmless even then (the old token
//! would name a live registration of the same shape).

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering, fence};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::keyed::Key;

/// A token is a JSON number; JavaScript numbers are exact below 2^53.
pub const TOKEN_BITS: u32 = 53;
/// Where the instance number starts in a token.
pub const INSTANCE_SHIFT: u32 = 48;
/// Instance numbers are 0 to 31 (five bits below 2^53).
pub const MAX_INSTANCE: u8 = 31;
/// The most slots an array may have: leaves at least 24 tag bits.
pub const MAX_SLOTS: usize = 1 << 24;
/// Tickets a registration tries before giving up (every slot it saw busy or protected).
#[cfg(not(loom))]
const PROBES: usize = 32;
/// Loom explores every step of every probe: two cycles of its two-slot arrays suffice.
#[cfg(loom)]
const PROBES: usize = 4;
/// Feistel rounds of the hand-out permutation.
const ROUNDS: u64 = 4;

const LOCAL_MASK: u64 = (1 << INSTANCE_SHIFT) - 1;
const STATE_BITS: u32 = 4;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;
// A never-used slot's state word is 0: FREE with tag 0, which no token carries.
const FREE: u64 = 0;
const WRITING: u64 = 1;
const REGISTERED: u64 = 2;
const COUNTING: u64 = 3;
const COUNTED: u64 = 4;
const LEFT: u64 = 5;
/// Attempts at a consistent read of a changing slot before a snapshot gives up on it.
const SNAPSHOT_RETRIES: usize = 64;

struct Slot {
    state: AtomicU64,
    pending: AtomicU64,
    extra: AtomicU64,
}

/// A visitor token as the script sends it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// The number of the instance that issued the token (`token >> 48`).
    pub fn instance(self) -> u8 {
        (self.0 >> INSTANCE_SHIFT) as u8
    }
}

/// What a registration records about a pending visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The caller's number for the path (a process-local index).
    pub path: u32,
    /// Monotonic clock tick at registration (`clock::Clock::ticks_ceil`).
    pub tick: u32,
    /// Unix seconds at registration, from the system clock (`clock::wall_secs`).
    pub wall_secs: u32,
    /// The client limiter's bucket of the registering client.
    pub client: u16,
}

impl Pending {
    fn words(self) -> (u64, u64) {
        (
            u64::from(self.path) << 32 | u64::from(self.tick),
            u64::from(self.wall_secs) << 32 | u64::from(self.client) << 16,
        )
    }

    fn from_words(pending: u64, extra: u64) -> Pending {
        Pending {
            path: (pending >> 32) as u32,
            tick: pending as u32,
            wall_secs: (extra >> 32) as u32,
            client: (extra >> 16) as u16,
        }
    }
}

/// The secrets behind tags and the hand-out order. Plain integers, so they can be saved
/// with a [`Snapshot`] and restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotKeys {
    /// Hashes ticket numbers into tags.
    pub tag: Key,
    /// Round function of the per-cycle permutation.
    pub order: Key,
}

impl SlotKeys {
    pub fn random() -> SlotKeys {
        SlotKeys {
            tag: Key::random(),
            order: Key::random(),
        }
    }
}

/// A successful registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub token: Token,
    /// The client bucket of an expired pending visit this registration evicted, to be
    /// released in the client limiter.
    pub evicted: Option<u16>,
}

/// Every slot a registration tried was in use: being written or counted, or holding a
/// pending visit still inside its protection window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllBusy;

/// A registration number taken ahead of its registration ([`Slots::ticket`]).
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    number: u64,
    index: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// Unknown, stale, already counted, or being counted right now.
    NotFound,
    /// Registered less than the minimum delay ago; the token stays usable.
    TooEarly { wait_ticks: u32 },
    /// Issued by another instance (SPEC §11: 421).
    OtherInstance(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupError {
    /// Unknown, stale, or not counted (yet).
    NotFound,
    /// Issued by another instance.
    OtherInstance(u8),
}

impl From<LookupError> for ClaimError {
    fn from(error: LookupError) -> ClaimError {
        match error {
            LookupError::NotFound => ClaimError::NotFound,
            LookupError::OtherInstance(instance) => ClaimError::OtherInstance(instance),
        }
    }
}

/// The slots worth keeping across a restart, with everything needed to go on handing out
/// tokens that never collide with them. Ages replace ticks, which mean nothing to the next
/// process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The array's size and instance: tokens are only meaningful for the same layout.
    pub count: u32,
    pub instance: u8,
    pub keys: SlotKeys,
    pub next_ticket: u64,
    pub slots: Vec<SavedSlot>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedSlot {
    pub index: u32,
    pub tag: u64,
    pub path: u32,
    /// Ticks between the registration and the snapshot.
    pub age_ticks: u32,
    pub visit: SavedVisit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavedVisit {
    /// Registered, not counted (a claim in progress is saved as not counted).
    Pending { wall_secs: u32, client: u16 },
    /// Counted as `visit_id`; `left` once `/page-left` reported.
    Counted { visit_id: i64, left: bool },
}

pub struct Slots {
    slots: Box<[Slot]>,
    next_ticket: AtomicU64,
    order: Order,
    index_bits: u32,
    tag_mask: u64,
    instance: u8,
    protect_ticks: u32,
    keys: SlotKeys,
}

/// The secret hand-out order: which slot registration number `ticket` goes to.
#[derive(Clone, Copy)]
struct Order {
    key: Key,
    count: u64,
    index_bits: u32,
}

impl Order {
    fn new(count: usize, key: Key) -> Order {
        Order {
            key,
            count: count as u64,
            index_bits: usize::BITS - (count - 1).leading_zeros(),
        }
    }

    /// Position `ticket % count` of this cycle's permutation.
    fn slot_of(&self, ticket: u64) -> usize {
        // Round inputs are `cycle << 14 | round << 12 | half` (halves have at most 12 bits):
        // distinct for every cycle below 2^50, i.e. for longer than the counter will run.
        let seed = (ticket / self.count) << 14;
        let mut x = ticket % self.count;
        // Cycle-walking: the Feistel network permutes [0, 2^index_bits); following it from
        // a point inside [0, count) until it lands inside again permutes [0, count).
        loop {
            x = self.feistel(x, seed);
            if x < self.count {
                return x as usize;
            }
        }
    }

    fn feistel(&self, x: u64, seed: u64) -> u64 {
        let mask = |bits: u32| (1u64 << bits) - 1;
        // `left` has `left_bits`, `right` has `right_bits`; each round moves `right` to
        // the left and puts `left ^ F(right)` (cut to `left_bits`) on the right, so the
        // widths swap every round and are back after an even number of rounds.
        let (mut left_bits, mut right_bits) = (self.index_bits / 2, self.index_bits.div_ceil(2));
        let (mut left, mut right) = (x >> right_bits, x & mask(right_bits));
        for round in 0..ROUNDS {
            let f = self.key.hash_u64(seed | round << 12 | right) & mask(left_bits);
            (left, right) = (right, left ^ f);
            (left_bits, right_bits) = (right_bits, left_bits);
        }
        left << right_bits | right
    }
}

fn state_word(tag: u64, state: u64) -> u64 {
    tag << STATE_BITS | state
}

/// Ticks from `then` to `now`; a registration stamped a tick ahead (rounded up) is age 0.
fn age(now: u32, then: u32) -> u32 {
    now.saturating_sub(then)
}

/// A pause in a retry loop (loom: lets the other threads run instead of exploring spins).
#[cfg(not(loom))]
fn spin() {
    std::hint::spin_loop();
}

#[cfg(loom)]
fn spin() {
    loom::thread::yield_now();
}

/// Starts `slot` on its way into the cache; a hint the processor may ignore.
#[cfg(all(not(loom), target_arch = "x86_64"))]
fn prefetch(slot: &Slot) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch reads nothing the program observes and never faults, whatever
    // the address; this one is a live slot's.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(slot).cast()) }
}

#[cfg(not(all(not(loom), target_arch = "x86_64")))]
fn prefetch(_: &Slot) {}

/// `count` slots, all free.
#[cfg(not(loom))]
fn free_slots(count: usize) -> Box<[Slot]> {
    // SAFETY: a slot is three atomic integers, for which all-zero bytes are a valid value
    // (FREE, no data). Zeroed allocation leaves the pages untouched until a slot is first
    // used, so a large, mostly idle array costs no resident memory.
    let slots = unsafe { Box::<[Slot]>::new_zeroed_slice(count).assume_init() };
    crate::memory::huge_pages_for(&slots);
    slots
}

/// Loom's atomics are not plain integers: build them one by one.
#[cfg(loom)]
fn free_slots(count: usize) -> Box<[Slot]> {
    (0..count)
        .map(|_| Slot {
            state: AtomicU64::new(FREE),
            pending: AtomicU64::new(0),
            extra: AtomicU64::new(0),
        })
        .collect()
}

impl Slots {
    /// An array of `count` slots (at least 2, at most [`MAX_SLOTS`]) issuing tokens of
    /// `instance` (0–31); a pending visit younger than `protect_ticks` is never evicted.
    /// Memory is reserved up front but pages are only touched as slots are first used.
    pub fn new(count: usize, instance: u8, protect_ticks: u32, keys: SlotKeys) -> Slots {
        let count = count.max(2);
        assert!(count <= MAX_SLOTS, "at most 2^24 visitor slots");
        assert!(instance <= MAX_INSTANCE, "instance numbers are 0 to 31");
        let order = Order::new(count, keys.order);
        let index_bits = order.index_bits;
        Slots {
            slots: free_slots(count),
            next_ticket: AtomicU64::new(0),
            order,
            index_bits,
            tag_mask: (1 << (INSTANCE_SHIFT - index_bits)) - 1,
            instance,
            protect_ticks,
            keys,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bits of unguessable tag in every token.
    pub fn tag_bits(&self) -> u32 {
        INSTANCE_SHIFT - self.index_bits
    }

    pub fn instance(&self) -> u8 {
        self.instance
    }

    fn tag(&self, ticket: u64) -> u64 {
        match self.keys.tag.hash_u64(ticket) & self.tag_mask {
            0 => 1, // tag 0 would match a never-used slot
            tag => tag,
        }
    }

    fn token(&self, tag: u64, index: usize) -> Token {
        Token(u64::from(self.instance) << INSTANCE_SHIFT | tag << self.index_bits | index as u64)
    }

    /// The slot and tag `token` names.
    fn locate(&self, token: Token) -> Result<(&Slot, u64), LookupError> {
        if token.instance() != self.instance {
            return Err(LookupError::OtherInstance(token.instance()));
        }
        let local = token.0 & LOCAL_MASK;
        let index = (local & ((1 << self.index_bits) - 1)) as usize;
        let slot = self.slots.get(index).ok_or(LookupError::NotFound)?;
        Ok((slot, local >> self.index_bits))
    }

    /// The next registration number and the slot it names, which starts on its way into
    /// the cache: the order is scattered, so with a large array the slot is rarely cached,
    /// and a caller that takes the ticket before its other checks has the slot by the time
    /// it registers. A ticket that is never used leaves its slot as it is for this cycle.
    pub fn ticket(&self) -> Ticket {
        // Relaxed: the counter only decides where to look; exclusivity comes from the CAS in
        // `register_with`. (A snapshot still sees every ticket a registration it saved used:
        // see `snapshot`.)
        let number = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let index = self.order.slot_of(number);
        prefetch(&self.slots[index]);
        Ticket { number, index }
    }

    /// Takes a slot for a new pending visit, registered at `pending.tick`, and returns its
    /// token. Fails when every slot it tries is being written or counted, or holds a
    /// pending visit younger than the protection window.
    pub fn register(&self, pending: Pending) -> Result<Registered, AllBusy> {
        self.register_with(self.ticket(), pending)
    }

    /// [`Slots::register`], trying the slot of `first` first.
    pub fn register_with(&self, first: Ticket, pending: Pending) -> Result<Registered, AllBusy> {
        let (pending_word, extra_word) = pending.words();
        let mut next = Some(first);
        for _ in 0..PROBES {
            let Ticket {
                number: ticket,
                index,
            } = next.take().unwrap_or_else(|| self.ticket());
            let slot = &self.slots[index];
            // Acquire: pairs with the Release store that published this state, so the words
            // read below are that registration's or newer.
            let current = slot.state.load(Ordering::Acquire);
            let evicted = match current & STATE_MASK {
                FREE | COUNTED | LEFT => None,
                REGISTERED => {
                    let occupant = Pending::from_words(
                        slot.pending.load(Ordering::Relaxed),
                        slot.extra.load(Ordering::Relaxed),
                    );
                    // Acquire fence: if those words are already a later registration's, that
                    // registration's state change is visible to the CAS below, which then
                    // fails (pairs with the Release fence writers put before their words).
                    fence(Ordering::Acquire);
                    if age(pending.tick, occupant.tick) < self.protect_ticks {
                        continue; // invariant 4: still pending, not ours to take
                    }
                    Some(occupant.client)
                }
                _ => continue, // WRITING or COUNTING: invariant 1
            };
            let tag = self.tag(ticket);
            // Acquire: the previous owner's writes to the words happen before ours. Failure
            // means the slot changed since we looked; try the next ticket.
            if slot
                .state
                .compare_exchange(
                    current,
                    state_word(tag, WRITING),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            // Release fence: a reader that sees the words we write next also sees the state
            // change above, so its seqlock check rejects the mix (invariant 5).
            fence(Ordering::Release);
            slot.pending.store(pending_word, Ordering::Relaxed);
            slot.extra.store(extra_word, Ordering::Relaxed);
            // Release: whoever sees REGISTERED with this tag sees the words stored above.
            slot.state
                .store(state_word(tag, REGISTERED), Ordering::Release);
            return Ok(Registered {
                token: self.token(tag, index),
                evicted,
            });
        }
        Err(AllBusy)
    }

    /// The `pending` and `extra` words of `slot` if its state is `expected` before and after.
    fn read_stable(slot: &Slot, expected: u64) -> Option<(u64, u64)> {
        // Acquire pairs with the Release store that published `expected`.
        if slot.state.load(Ordering::Acquire) != expected {
            return None;
        }
        let pending = slot.pending.load(Ordering::Relaxed);
        let extra = slot.extra.load(Ordering::Relaxed);
        // Acquire fence: if a word came from a writer that followed, its state change is
        // visible to the load below (pairs with the writers' Release fences).
        fence(Ordering::Acquire);
        (slot.state.load(Ordering::Relaxed) == expected).then_some((pending, extra))
    }

    /// Starts counting the visit of `token` at `now` (clock ticks), if it is registered and
    /// at least `min_delay` ticks old. The returned claim must be completed with
    /// [`Claim::counted`]; dropping it instead (the write failed, or the request was
    /// cancelled) makes the token usable again.
    pub fn claim(&self, token: Token, now: u32, min_delay: u32) -> Result<Claim<'_>, ClaimError> {
        let (slot, tag) = self.locate(token)?;
        let registered = state_word(tag, REGISTERED);
        let (pending_word, extra_word) =
            Self::read_stable(slot, registered).ok_or(ClaimError::NotFound)?;
        let pending = Pending::from_words(pending_word, extra_word);
        let due = u64::from(pending.tick) + u64::from(min_delay);
        // No delay means no wait at all, not "wait for the registration's tick to round up".
        if min_delay > 0 && u64::from(now) < due {
            return Err(ClaimError::TooEarly {
                wait_ticks: (due - u64::from(now)) as u32,
            });
        }
        // Exactly one claimer wins (invariant 3). Acquire: whatever the slot's last owner
        // did (the registration, or a claim dropped since) happens before our writes.
        slot.state
            .compare_exchange(
                registered,
                state_word(tag, COUNTING),
                Ordering::Acquire,
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

    /// The visit id of the counted visit `token` names, marking it left (`/page-left`):
    /// `COUNTED → LEFT`, and `LEFT` stays `LEFT` (the latest reported time wins).
    pub fn page_left(&self, token: Token) -> Result<i64, LookupError> {
        let (slot, tag) = self.locate(token)?;
        let (counted, left) = (state_word(tag, COUNTED), state_word(tag, LEFT));
        // Acquire pairs with the Release store of COUNTED (and through the release sequence
        // with a LEFT that an earlier page-left put over it).
        if slot.state.load(Ordering::Acquire) == counted {
            let visit_id = slot.extra.load(Ordering::Relaxed);
            // Acquire fence: if `visit_id` came from a registration that took the slot since,
            // its state change is visible to the CAS below, which then fails.
            fence(Ordering::Acquire);
            // Relaxed: the CAS publishes no data; the visit id is the one COUNTED released.
            if slot
                .state
                .compare_exchange(counted, left, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(visit_id as i64);
            }
            // Lost to another page-left (now LEFT, read below) or to a new registration.
        }
        Self::read_stable(slot, left)
            .map(|(_, visit_id)| visit_id as i64)
            .ok_or(LookupError::NotFound)
    }

    /// Calls `f(state, path, tick)` for every occupied slot whose `pending` word could be
    /// read consistently with its state (a slot changing at this instant may be missed).
    fn scan(&self, mut f: impl FnMut(u64, u32, u32)) {
        for slot in self.slots.iter() {
            // Acquire pairs with the Release store that published the state.
            let state = slot.state.load(Ordering::Acquire);
            if matches!(state & STATE_MASK, FREE | WRITING) {
                continue;
            }
            let pending = slot.pending.load(Ordering::Relaxed);
            // Acquire fence: a newer registration's word comes with its new tag (Release
            // fence before the word), which the load below then sees.
            fence(Ordering::Acquire);
            // `pending` changes only with the tag (invariant 5).
            if slot.state.load(Ordering::Relaxed) >> STATE_BITS != state >> STATE_BITS {
                continue;
            }
            f(state & STATE_MASK, (pending >> 32) as u32, pending as u32);
        }
    }

    /// Calls `f(path)` for every page open now: registered (pending, being counted or
    /// counted) less than `window` ticks before `now`, and not reported left.
    pub fn live(&self, now: u32, window: u32, mut f: impl FnMut(u32)) {
        self.scan(|state, path, tick| {
            if matches!(state, REGISTERED | COUNTING | COUNTED) && age(now, tick) < window {
                f(path);
            }
        });
    }

    /// Pending visits still inside their protection window at `now` (registered and not
    /// counted, or being counted right now).
    pub fn pending_count(&self, now: u32) -> usize {
        let mut pending = 0;
        self.scan(|state, _, tick| {
            if matches!(state, REGISTERED | COUNTING) && age(now, tick) < self.protect_ticks {
                pending += 1;
            }
        });
        pending
    }

    /// Everything needed to restore the pending and counted visits after a restart, at
    /// tick `now`. Meant for shutdown, once requests have finished; a slot still changing
    /// is retried a few times, then left out.
    pub fn snapshot(&self, now: u32) -> Snapshot {
        let mut saved = Vec::new();
        for (index, slot) in self.slots.iter().enumerate() {
            let Some((state, pending, extra)) = Self::read_all(slot) else {
                continue;
            };
            let visit = match state & STATE_MASK {
                REGISTERED | COUNTING => {
                    let pending = Pending::from_words(pending, extra);
                    SavedVisit::Pending {
                        wall_secs: pending.wall_secs,
                        client: pending.client,
                    }
                }
                COUNTED => SavedVisit::Counted {
                    visit_id: extra as i64,
                    left: false,
                },
                LEFT => SavedVisit::Counted {
                    visit_id: extra as i64,
                    left: true,
                },
                _ => continue,
            };
            saved.push(SavedSlot {
                index: index as u32,
                tag: state >> STATE_BITS,
                path: (pending >> 32) as u32,
                age_ticks: age(now, pending as u32),
                visit,
            });
        }
        Snapshot {
            count: self.slots.len() as u32,
            instance: self.instance,
            keys: self.keys,
            // Read after the slots: every saved registration's fetch_add happens before its
            // Release store of the state we read with Acquire, so even a Relaxed load sees
            // the counter past every saved ticket, and none is handed out again (invariant 6).
            next_ticket: self.next_ticket.load(Ordering::Relaxed),
            slots: saved,
        }
    }

    /// All three words of `slot`, read while its state stayed the same.
    fn read_all(slot: &Slot) -> Option<(u64, u64, u64)> {
        for _ in 0..SNAPSHOT_RETRIES {
            // Same pattern as `read_stable`, for whatever state the slot is in.
            let state = slot.state.load(Ordering::Acquire);
            if state & STATE_MASK != WRITING {
                let pending = slot.pending.load(Ordering::Relaxed);
                let extra = slot.extra.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if slot.state.load(Ordering::Relaxed) == state {
                    return Some((state, pending, extra));
                }
            }
            // Its words are being written: wait for the writer.
            spin();
        }
        None
    }

    /// A new array at tick `now` holding the visits of `snapshot` in their old positions
    /// with their old tags, keys and ticket counter, so the tokens issued before the
    /// restart keep working: a pending one can be counted once, a counted one can report
    /// its time. Ticks are rebased as `now − age`.
    ///
    /// Left out: pending visits older than `max_pending_age` ticks; visits older than
    /// `now` itself (before the clock's reach, a day with `clock::START_TICKS`: a
    /// saturated tick would make them look new to the live view and the protection);
    /// malformed entries; and everything if the snapshot was taken with another slot
    /// count or instance number, whose tokens this array would misread.
    pub fn restore(
        count: usize,
        instance: u8,
        protect_ticks: u32,
        snapshot: Snapshot,
        now: u32,
        max_pending_age: u32,
    ) -> Slots {
        let slots = Slots::new(count, instance, protect_ticks, snapshot.keys);
        // Relaxed: the array is not shared yet; whoever shares it publishes it.
        slots
            .next_ticket
            .store(snapshot.next_ticket, Ordering::Relaxed);
        if snapshot.count as usize != slots.len() || snapshot.instance != instance {
            return slots;
        }
        for saved in snapshot.slots {
            let Some(slot) = slots.slots.get(saved.index as usize) else {
                continue;
            };
            if saved.tag == 0 || saved.tag > slots.tag_mask || saved.age_ticks > now {
                continue;
            }
            let pending_word = u64::from(saved.path) << 32 | u64::from(now - saved.age_ticks);
            let (state, extra) = match saved.visit {
                SavedVisit::Pending { wall_secs, client } => {
                    if saved.age_ticks > max_pending_age {
                        continue;
                    }
                    let (_, extra) = Pending {
                        path: saved.path,
                        tick: 0,
                        wall_secs,
                        client,
                    }
                    .words();
                    (REGISTERED, extra)
                }
                SavedVisit::Counted { visit_id, left } => {
                    (if left { LEFT } else { COUNTED }, visit_id as u64)
                }
            };
            // Relaxed: not shared yet (as above).
            slot.pending.store(pending_word, Ordering::Relaxed);
            slot.extra.store(extra, Ordering::Relaxed);
            slot.state
                .store(state_word(saved.tag, state), Ordering::Relaxed);
        }
        slots
    }
}

/// Exclusive ownership of one pending visit while it is being written.
pub struct Claim<'a> {
    slot: &'a Slot,
    tag: u64,
    pending: Pending,
    done: bool,
}

impl Claim<'_> {
    /// What the registration recorded.
    pub fn pending(&self) -> Pending {
        self.pending
    }

    /// The visit is stored as `visit_id`; later `/page-left` calls find it.
    pub fn counted(mut self, visit_id: i64) {
        // WRITING while the word changes (invariant 5), then the shape of a registration:
        // Release fence, the word, the Release store of COUNTED. A reader that saw COUNTING
        // (or REGISTERED) and then the id sees the state change and rejects the mix.
        // Relaxed: the fence right after orders this store before the word's.
        self.slot
            .state
            .store(state_word(self.tag, WRITING), Ordering::Relaxed);
        fence(Ordering::Release);
        self.slot.extra.store(visit_id as u64, Ordering::Relaxed);
        self.slot
            .state
            .store(state_word(self.tag, COUNTED), Ordering::Release);
        self.done = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.done {
            // The words were not touched while COUNTING, so REGISTERED is whole again.
            // Release: the next owner's Acquire on this state orders our reads before its
            // writes.
            self.slot
                .state
                .store(state_word(self.tag, REGISTERED), Ordering::Release);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Barrier};

    use super::*;

    /// Five minutes, as the server protects pending visits.
    const PROTECT: u32 = 3_000;

    fn pending(path: u32, tick: u32) -> Pending {
        Pending {
            path,
            tick,
            wall_secs: 1_706_450_591,
            client: (path % 1000) as u16,
        }
    }

    const PATH: Pending = Pending {
        path: 7,
        tick: 1_000,
        wall_secs: 1_706_450_591,
        client: 42,
    };

    fn protected(count: usize) -> Slots {
        Slots::new(count, 0, PROTECT, SlotKeys::random())
    }

    fn register(slots: &Slots, pending: Pending) -> Token {
        slots.register(pending).unwrap().token
    }

    fn index(slots: &Slots, token: Token) -> usize {
        (token.get() & ((1 << slots.index_bits) - 1)) as usize
    }

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
        assert_eq!(Token::parse("9007199254740991").unwrap().instance(), 31);
        assert_eq!(Token::parse("281474976710655").unwrap().instance(), 0);
        assert_eq!(Token::parse("281474976710656").unwrap().instance(), 1);
    }

    #[test]
    fn a_visit_counts_once_after_the_delay() {
        let slots = protected(16);
        let token = register(&slots, PATH);
        assert!(token.get() < 1 << TOKEN_BITS);
        assert_eq!(
            slots.claim(token, 1_018, 19).err(),
            Some(ClaimError::TooEarly { wait_ticks: 1 })
        );
        assert_eq!(
            slots.page_left(token),
            Err(LookupError::NotFound),
            "not counted yet"
        );
        let claim = slots.claim(token, 1_019, 19).unwrap();
        assert_eq!(claim.pending(), PATH);
        assert_eq!(
            slots.claim(token, 1_019, 19).err(),
            Some(ClaimError::NotFound),
            "being counted"
        );
        claim.counted(42);
        assert_eq!(
            slots.claim(token, 1_020, 19).err(),
            Some(ClaimError::NotFound),
            "already counted"
        );
        assert_eq!(slots.page_left(token), Ok(42));
    }

    #[test]
    fn without_a_delay_a_visit_counts_at_once() {
        let slots = protected(16);
        let token = register(&slots, PATH);
        // Registered at tick 1000 (rounded up); now is still tick 999.
        assert!(slots.claim(token, 999, 0).is_ok());
    }

    #[test]
    fn a_dropped_claim_leaves_the_token_usable() {
        let slots = protected(16);
        let token = register(&slots, PATH);
        drop(slots.claim(token, 2_000, 19).unwrap());
        let claim = slots.claim(token, 2_000, 19).unwrap();
        assert_eq!(claim.pending(), PATH);
        claim.counted(1);
        assert_eq!(slots.page_left(token), Ok(1));
    }

    #[test]
    fn page_left_marks_the_visit_left_and_keeps_answering() {
        let slots = protected(16);
        let token = register(&slots, PATH);
        slots.claim(token, 2_000, 0).unwrap().counted(77);
        let mut live = 0;
        slots.live(2_000, PROTECT, |_| live += 1);
        assert_eq!(live, 1, "counted and open");
        assert_eq!(slots.page_left(token), Ok(77));
        assert_eq!(slots.page_left(token), Ok(77), "the latest time wins");
        assert_eq!(
            slots.claim(token, 2_000, 0).err(),
            Some(ClaimError::NotFound)
        );
        let mut live = 0;
        slots.live(2_000, PROTECT, |_| live += 1);
        assert_eq!(live, 0, "left");
    }

    #[test]
    fn a_reused_slot_rejects_the_old_token() {
        let slots = Slots::new(16, 0, 0, SlotKeys::random());
        let old = register(&slots, PATH);
        slots.claim(old, 2_000, 0).unwrap().counted(5);
        // Within two cycles a registration takes the counted visit's slot.
        let same_slot = (0..32)
            .map(|_| register(&slots, pending(8, 3_000)))
            .find(|t| index(&slots, *t) == index(&slots, old))
            .expect("a cycle visits every slot");
        assert_ne!(same_slot.get(), old.get());
        assert_eq!(slots.claim(old, 4_000, 0).err(), Some(ClaimError::NotFound));
        assert_eq!(
            slots.page_left(old),
            Err(LookupError::NotFound),
            "the old visit id is gone with the slot"
        );
        assert_eq!(slots.claim(same_slot, 4_000, 0).unwrap().pending().path, 8);
    }

    #[test]
    fn a_slot_being_counted_is_skipped_not_stolen() {
        let slots = Slots::new(2, 0, 0, SlotKeys::random());
        let first = register(&slots, PATH);
        let claim = slots.claim(first, 2_000, 0).unwrap();
        // Every later registration lands in the other slot.
        for _ in 0..10 {
            let later = register(&slots, PATH);
            assert_ne!(index(&slots, later), index(&slots, first));
        }
        claim.counted(9);
        assert_eq!(slots.page_left(first), Ok(9));
    }

    #[test]
    fn registration_fails_cleanly_when_every_slot_is_being_counted() {
        let slots = Slots::new(2, 0, 0, SlotKeys::random());
        let tokens = [register(&slots, PATH), register(&slots, PATH)];
        let _claims: Vec<_> = tokens
            .iter()
            .map(|t| slots.claim(*t, 2_000, 0).unwrap())
            .collect();
        assert_eq!(slots.register(PATH).err(), Some(AllBusy));
    }

    #[test]
    fn a_flood_never_evicts_a_pending_visit_before_it_expires() {
        let slots = protected(16);
        let visitors: Vec<Token> = (0..16)
            .map(|i| register(&slots, pending(i, 1_000)))
            .collect();
        assert_eq!(slots.pending_count(1_000), 16);
        // A flood throughout the protection window: refused, nobody evicted.
        for tick in (1_000..1_000 + PROTECT).step_by(100) {
            assert_eq!(slots.register(pending(99, tick)).err(), Some(AllBusy));
        }
        for (i, token) in visitors.iter().enumerate() {
            let claim = slots.claim(*token, 1_000 + PROTECT - 1, 190).unwrap();
            assert_eq!(claim.pending().path, i as u32);
            drop(claim);
        }
        // A counted visit's slot is free to take at once.
        slots.claim(visitors[3], 1_500, 0).unwrap().counted(3);
        let taken = register(&slots, pending(99, 1_501));
        assert_eq!(index(&slots, taken), index(&slots, visitors[3]));
        assert_eq!(slots.page_left(visitors[3]), Err(LookupError::NotFound));
    }

    #[test]
    fn expired_pending_visits_are_reclaimed_and_name_their_client() {
        let slots = protected(16);
        let visitors: Vec<Token> = (0..16)
            .map(|i| {
                let pending = Pending {
                    client: 100 + i as u16,
                    ..pending(i, 1_000 + i)
                };
                register(&slots, pending)
            })
            .collect();
        // At 1000 + PROTECT only the first visitor (registered at 1000) has expired.
        let newcomer = slots.register(pending(50, 1_000 + PROTECT)).unwrap();
        assert_eq!(newcomer.evicted, Some(100));
        assert_eq!(index(&slots, newcomer.token), index(&slots, visitors[0]));
        assert_eq!(
            slots.claim(visitors[0], 1_000 + PROTECT, 0).err(),
            Some(ClaimError::NotFound)
        );
        assert_eq!(
            slots.register(pending(51, 1_000 + PROTECT)).err(),
            Some(AllBusy)
        );
        // Later, all of them: each eviction names the bucket of the visit it replaced.
        let mut evicted: Vec<u16> = (0..15)
            .map(|_| {
                slots
                    .register(pending(52, 2_000 + PROTECT))
                    .unwrap()
                    .evicted
                    .unwrap()
            })
            .collect();
        evicted.sort();
        assert_eq!(evicted, (101..116).collect::<Vec<u16>>());
        // The newcomer is still protected; a FREE slot would report nothing.
        assert_eq!(
            slots
                .claim(newcomer.token, 4_000, 0)
                .unwrap()
                .pending()
                .path,
            50
        );
        let fresh = protected(16).register(PATH).unwrap();
        assert_eq!(fresh.evicted, None);
    }

    #[test]
    fn the_order_is_a_fresh_permutation_every_cycle() {
        let count = 1_000;
        // No protection, so every ticket is used: the indices are the permutation itself.
        let slots = Slots::new(count, 0, 0, SlotKeys::random());
        let indices: Vec<usize> = (0..10_000)
            .map(|_| index(&slots, register(&slots, PATH)))
            .collect();
        let cycles: Vec<&[usize]> = indices.chunks(count).collect();
        for cycle in &cycles {
            let used: HashSet<usize> = cycle.iter().copied().collect();
            assert_eq!(used.len(), count, "every slot exactly once per cycle");
            assert!(used.iter().all(|i| *i < count));
        }
        assert_eq!(
            cycles.iter().collect::<HashSet<_>>().len(),
            cycles.len(),
            "each cycle has its own order"
        );
        // Consecutive registrations land in unrelated slots: the steps between them take
        // many values, and knowing one index says nothing useful about the next.
        let steps: HashSet<usize> = indices
            .windows(2)
            .map(|w| (w[1] + count - w[0]) % count)
            .collect();
        assert!(steps.len() > 900, "only {} different steps", steps.len());
        let next_is_neighbour = indices
            .windows(2)
            .filter(|w| w[1] == (w[0] + 1) % count)
            .count();
        assert!(
            next_is_neighbour < 40,
            "{next_is_neighbour} round-robin steps"
        );
        // Tags are unrelated too, never 0, and fit their bits.
        let slots = Slots::new(count, 0, 0, SlotKeys::random());
        let tags: HashSet<u64> = (0..10_000)
            .map(|_| register(&slots, PATH).get() >> slots.index_bits)
            .collect();
        assert!(tags.len() > 9_990, "{} distinct tags", tags.len());
        assert!(tags.iter().all(|t| *t != 0 && *t < 1 << slots.tag_bits()));
    }

    #[test]
    fn the_permutation_is_a_bijection_for_every_size() {
        for count in [2, 3, 4, 5, 7, 16, 17, 31, 100, 255, 256, 257, 1000, 4097] {
            let slots = Slots::new(count, 0, 0, SlotKeys::random());
            for cycle in 0..3u64 {
                let seen: HashSet<usize> = (0..count as u64)
                    .map(|i| slots.order.slot_of(cycle * count as u64 + i))
                    .collect();
                assert_eq!(seen.len(), count, "{count} slots, cycle {cycle}");
                assert!(seen.iter().all(|i| *i < count));
            }
        }
        // The largest array: the halves are 12 bits, the round inputs stay distinct.
        let slots = Slots::new(MAX_SLOTS, 0, 0, SlotKeys::random());
        assert_eq!(slots.tag_bits(), 24);
        let sample: HashSet<usize> = (0..10_000).map(|t| slots.order.slot_of(t)).collect();
        assert_eq!(sample.len(), 10_000);
        assert!(sample.iter().all(|i| *i < MAX_SLOTS));
    }

    #[test]
    fn the_same_keys_give_the_same_order_and_tags() {
        let keys = SlotKeys::random();
        let (a, b) = (Slots::new(64, 0, 0, keys), Slots::new(64, 0, 0, keys));
        for _ in 0..200 {
            assert_eq!(register(&a, PATH), register(&b, PATH));
        }
        let c = Slots::new(64, 0, 0, SlotKeys::random());
        let same = (0..200)
            .filter(|_| register(&a, PATH) == register(&c, PATH))
            .count();
        assert_eq!(same, 0);
    }

    #[test]
    fn guessed_tokens_match_nothing() {
        let slots = protected(1 << 16);
        let _real: Vec<_> = (0..1_000).map(|_| register(&slots, PATH)).collect();
        assert_eq!(slots.tag_bits(), 32);
        let hits = (0..200_000u64)
            .filter_map(|n| Token::parse(&(n * 7_919).to_string()))
            .filter(|t| slots.claim(*t, 5_000, 0).is_ok() || slots.page_left(*t).is_ok())
            .count();
        assert_eq!(hits, 0);
        assert_eq!(
            slots.claim(Token(0), 5_000, 0).err(),
            Some(ClaimError::NotFound),
            "free slots have no tag"
        );
    }

    #[test]
    fn tokens_name_their_instance_and_others_are_refused() {
        let slots = Slots::new(16, 5, PROTECT, SlotKeys::random());
        let token = register(&slots, PATH);
        assert_eq!(token.instance(), 5);
        assert_eq!(token.get() >> 48, 5);
        assert!(token.get() < 1 << TOKEN_BITS);
        let foreign = Token(token.get() ^ (7 << INSTANCE_SHIFT)); // instance 2, same slot and tag
        assert_eq!(foreign.instance(), 2);
        assert_eq!(
            slots.claim(foreign, 2_000, 0).err(),
            Some(ClaimError::OtherInstance(2))
        );
        assert_eq!(slots.page_left(foreign), Err(LookupError::OtherInstance(2)));
        slots.claim(token, 2_000, 0).unwrap().counted(3);
        assert_eq!(slots.page_left(token), Ok(3));
        let last = Slots::new(16, MAX_INSTANCE, PROTECT, SlotKeys::random());
        assert_eq!(register(&last, PATH).instance(), 31);
    }

    #[test]
    fn live_counts_open_pages_in_the_window() {
        let slots = protected(64);
        let window = 3_000;
        let old = register(&slots, pending(1, 1_000));
        let a = register(&slots, pending(2, 3_000));
        let b = register(&slots, pending(2, 3_500));
        let counted = register(&slots, pending(3, 3_600));
        slots.claim(counted, 3_800, 0).unwrap().counted(30);
        let left = register(&slots, pending(4, 3_700));
        slots.claim(left, 3_800, 0).unwrap().counted(40);
        slots.page_left(left).unwrap();
        let being_counted = register(&slots, pending(5, 3_700));
        let claim = slots.claim(being_counted, 3_800, 0).unwrap();

        let live_at = |now| {
            let mut paths: HashMap<u32, u32> = HashMap::new();
            slots.live(now, window, |path| *paths.entry(path).or_default() += 1);
            paths
        };
        assert_eq!(
            live_at(3_999),
            HashMap::from([(1, 1), (2, 2), (3, 1), (5, 1)])
        );
        assert_eq!(
            live_at(4_000),
            HashMap::from([(2, 2), (3, 1), (5, 1)]),
            "five minutes after the first registration"
        );
        assert_eq!(live_at(6_500), HashMap::from([(3, 1), (5, 1)]));
        assert_eq!(live_at(7_000), HashMap::new());
        assert_eq!(slots.pending_count(3_999), 4, "old, a, b, being counted");
        assert_eq!(slots.pending_count(6_000), 2, "b and being counted");
        drop(claim);
        let _ = (old, a, b);
    }

    #[test]
    fn a_snapshot_restores_pending_and_counted_visits() {
        let keys = SlotKeys::random();
        let slots = Slots::new(64, 3, PROTECT, keys);
        let pending_visit = Pending {
            path: 11,
            tick: 10_000,
            wall_secs: 1_706_450_000,
            client: 321,
        };
        let waiting = register(&slots, pending_visit);
        let counted = register(&slots, pending(12, 9_000));
        slots.claim(counted, 9_500, 0).unwrap().counted(1_200);
        let left = register(&slots, pending(13, 9_000));
        slots.claim(left, 9_500, 0).unwrap().counted(1_300);
        slots.page_left(left).unwrap();
        let stale = register(&slots, pending(14, 1_000));
        let claimed_at_shutdown = register(&slots, pending(15, 9_900));
        let in_flight = slots.claim(claimed_at_shutdown, 10_000, 0).unwrap();

        let snapshot = slots.snapshot(10_050);
        drop(in_flight);
        assert_eq!(snapshot.count, 64);
        assert_eq!(snapshot.instance, 3);
        assert_eq!(snapshot.keys, keys);
        assert_eq!(snapshot.next_ticket, 5);
        assert_eq!(snapshot.slots.len(), 5);
        let saved = snapshot.slots.iter().find(|s| s.path == 11).unwrap();
        assert_eq!(saved.age_ticks, 50);
        assert_eq!(
            saved.visit,
            SavedVisit::Pending {
                wall_secs: 1_706_450_000,
                client: 321
            }
        );

        // The new process's clock: the same visits, 50 ticks old, at its tick 900,000.
        let now = 900_000;
        let restored = Slots::restore(64, 3, PROTECT, snapshot, now, PROTECT);
        let live_paths = |window| {
            let mut paths = Vec::new();
            restored.live(now, window, |path| paths.push(path));
            paths.sort();
            paths
        };
        // 13 was reported left; 12 is 1,050 ticks old.
        assert_eq!(live_paths(1_000), vec![11, 15]);
        assert_eq!(live_paths(1_100), vec![11, 12, 15]);
        assert_eq!(
            restored.claim(waiting, now + 139, 190).err(),
            Some(ClaimError::TooEarly { wait_ticks: 1 }),
            "the delay counts from the original registration"
        );
        let claim = restored.claim(waiting, now + 140, 190).unwrap();
        assert_eq!(
            claim.pending(),
            Pending {
                tick: now - 50,
                ..pending_visit
            }
        );
        claim.counted(1_100);
        assert_eq!(
            restored.claim(waiting, now + 200, 0).err(),
            Some(ClaimError::NotFound),
            "a restored token counts once"
        );
        assert_eq!(restored.page_left(waiting), Ok(1_100));
        assert_eq!(restored.page_left(counted), Ok(1_200));
        assert_eq!(restored.page_left(left), Ok(1_300));
        assert_eq!(
            restored.claim(stale, now, 0).err(),
            Some(ClaimError::NotFound),
            "older than the pending age limit"
        );
        assert!(
            restored.claim(claimed_at_shutdown, now, 0).is_ok(),
            "a claim in progress at shutdown is pending again"
        );
        // The ticket counter goes on: new tokens never repeat old ones.
        let old: HashSet<Token> = [waiting, counted, left, stale, claimed_at_shutdown].into();
        for _ in 0..500 {
            let token = restored
                .register(pending(20, now + 10_000))
                .map(|r| r.token);
            if let Ok(token) = token {
                assert!(!old.contains(&token));
            }
        }
    }

    #[test]
    fn a_snapshot_of_another_layout_restores_nothing_but_keeps_the_keys() {
        let keys = SlotKeys::random();
        let slots = Slots::new(64, 0, PROTECT, keys);
        let token = register(&slots, PATH);
        let snapshot = slots.snapshot(2_000);
        for (count, instance) in [(128, 0), (64, 1)] {
            let restored =
                Slots::restore(count, instance, PROTECT, snapshot.clone(), 900_000, 3_000);
            assert_eq!(restored.snapshot(900_000).slots, vec![]);
            assert_eq!(restored.keys, keys);
            assert_eq!(restored.next_ticket.load(Ordering::Relaxed), 1);
        }
        let restored = Slots::restore(64, 0, PROTECT, snapshot.clone(), 900_000, 3_000);
        assert!(restored.claim(token, 900_000, 0).is_ok());
        // A visit older than the new clock reaches (a day) cannot be placed.
        let restored = Slots::restore(64, 0, PROTECT, snapshot, 10, 3_000);
        assert_eq!(
            restored.claim(token, 10, 0).err(),
            Some(ClaimError::NotFound)
        );
    }

    #[test]
    fn a_malformed_snapshot_is_skipped_entry_by_entry() {
        let slots = Slots::new(16, 0, PROTECT, SlotKeys::random());
        let token = register(&slots, PATH);
        let mut snapshot = slots.snapshot(1_000);
        let good = snapshot.slots[0];
        snapshot.slots = vec![
            SavedSlot { index: 16, ..good },
            SavedSlot {
                index: u32::MAX,
                ..good
            },
            SavedSlot { tag: 0, ..good },
            SavedSlot {
                tag: 1 << 44,
                ..good
            },
            good,
        ];
        let restored = Slots::restore(16, 0, PROTECT, snapshot, 900_000, 3_000);
        assert_eq!(restored.snapshot(900_000).slots.len(), 1);
        assert!(restored.claim(token, 900_000, 0).is_ok());
    }

    #[test]
    fn racing_claims_count_each_token_exactly_once() {
        let slots = Arc::new(protected(64));
        let tokens: Arc<Vec<Token>> = Arc::new((0..64).map(|_| register(&slots, PATH)).collect());
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
            assert_eq!(slots.page_left(*token), Ok(i as i64 + 1));
        }
    }

    /// Many threads register, claim, fail, count and leave on a small array without
    /// protection, so slots are reused constantly. Whatever interleaving happens, a claim
    /// must see exactly the data its own registration stored, a token counts at most once,
    /// and a counted token reports its own visit id (or nothing once the slot was reused).
    #[test]
    fn hammering_a_small_array_never_mixes_up_visits() {
        let slots = Arc::new(Slots::new(16, 0, 0, SlotKeys::random()));
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
                            path: thread,
                            tick: round,
                            wall_secs: round ^ 0x5555,
                            client: thread as u16,
                        };
                        let Ok(registered) = slots.register(pending) else {
                            continue;
                        };
                        let token = registered.token;
                        match slots.claim(token, round, 0) {
                            Ok(claim) => {
                                assert_eq!(
                                    claim.pending(),
                                    pending,
                                    "a claim saw another registration's data"
                                );
                                if round % 3 == 0 {
                                    drop(claim); // a failed write: back to REGISTERED
                                    continue;
                                }
                                let id = i64::from(thread) << 32 | i64::from(round);
                                claim.counted(id);
                                assert!(counted.insert(token.get()), "counted twice");
                                for _ in 0..1 + round % 2 {
                                    match slots.page_left(token) {
                                        Ok(seen) => assert_eq!(
                                            seen, id,
                                            "page-left would update another visit"
                                        ),
                                        Err(error) => assert_eq!(error, LookupError::NotFound),
                                    }
                                }
                            }
                            Err(ClaimError::NotFound) => {} // already reused by another thread
                            Err(other) => panic!("unexpected {other:?}"),
                        }
                        if round % 64 == 0 {
                            slots.live(round, 100, |path| assert!(path < threads as u32));
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    }

    /// Registrations racing with protected pending visits: none of the protected ones is
    /// ever evicted, while the newcomers, registering over a long stretch of time, evict
    /// each other's expired visits.
    #[test]
    fn hammering_never_evicts_a_protected_visit() {
        let slots = Arc::new(Slots::new(32, 0, 1_000, SlotKeys::random()));
        // Half the array holds visits registered at tick 30,000 (client 1), which stay
        // young for every newcomer below (whose ticks are earlier).
        let protected: Vec<Token> = (0..16)
            .map(|_| {
                let pending = Pending {
                    client: 1,
                    ..pending(1, 30_000)
                };
                register(&slots, pending)
            })
            .collect();
        let evictions = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4u32)
            .map(|thread| {
                let (slots, barrier, evictions) =
                    (slots.clone(), barrier.clone(), evictions.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for tick in 0..20_000 {
                        let pending = Pending {
                            client: 2,
                            ..pending(2 + thread, tick)
                        };
                        if let Ok(registered) = slots.register(pending)
                            && let Some(client) = registered.evicted
                        {
                            assert_eq!(client, 2, "tick {tick}: evicted a protected visit");
                            evictions.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert!(evictions.load(Ordering::Relaxed) > 100);
        for token in protected {
            assert_eq!(slots.claim(token, 30_999, 0).unwrap().pending().path, 1);
        }
    }
}

/// The protocol under every interleaving loom finds (with its model of relaxed loads and
/// fences), on two slots so that a third registration reuses the first one's slot. They
/// run in the crate `tests/loom`, which compiles this file with nothing but loom (tokio
/// does not build under `--cfg loom`), from the repository root:
/// `CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg loom" cargo test --release
/// --manifest-path tests/loom/Cargo.toml slots`. Every model is explored exhaustively.
///
/// Weakening any Release store or fence, any Acquire load of a state whose words are read
/// next, or the Acquire fence of a seqlock re-check (`read_stable`, `read_all`) fails at
/// least one model (each was tried). Loom produces neither load buffering nor write orders
/// that contradict execution order, so the Acquire fences before a validating CAS
/// (`register`, `page_left`) and the Acquire of `register`'s CAS are argued next to them
/// instead. Two are belt and braces: the Acquire of `claim`'s CAS (`read_stable` already
/// synchronised with the registration) and the fence in `scan` (a path read across a
/// registration only shows what a moment later would).
#[cfg(all(test, loom))]
mod loom_tests {
    use loom::sync::Arc;
    use loom::thread;

    use super::*;

    const A: Pending = Pending {
        path: 1,
        tick: 100,
        wall_secs: 1_000_001,
        client: 11,
    };
    const B: Pending = Pending {
        path: 2,
        tick: 100,
        wall_secs: 1_000_002,
        client: 22,
    };
    const C: Pending = Pending {
        path: 3,
        tick: 100,
        wall_secs: 1_000_003,
        client: 33,
    };

    /// Fixed keys (loom replays the model many times and needs the same run each time)
    /// under which tickets 2 and 4, the first of the second and third cycles, go to ticket
    /// 0's slot.
    fn keys_reusing_the_first_slot() -> SlotKeys {
        (0..)
            .map(|n| Key { k0: n, k1: !n })
            .map(|key| SlotKeys {
                tag: key,
                order: key,
            })
            .find(|keys| {
                let order = Order::new(2, keys.order);
                order.slot_of(2) == order.slot_of(0) && order.slot_of(4) == order.slot_of(0)
            })
            .unwrap()
    }

    fn index(token: Token) -> u64 {
        token.get() & 1
    }

    fn model(f: impl Fn() + Send + Sync + 'static) {
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // No preemption bound: every interleaving (LOOM_MAX_PREEMPTIONS can set one).
        let builder = loom::model::Builder::new();
        let counter = runs.clone();
        builder.check(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f();
        });
        // Shown with --nocapture: how much of the space was explored.
        println!(
            "{} executions",
            runs.load(std::sync::atomic::Ordering::Relaxed)
        );
    }

    #[test]
    fn racing_claims_count_a_token_once() {
        let keys = keys_reusing_the_first_slot();
        model(move || {
            let slots = Arc::new(Slots::new(2, 0, 0, keys));
            let token = slots.register(A).unwrap().token;
            let claimers: Vec<_> = [7, 8]
                .map(|visit_id| {
                    let slots = slots.clone();
                    thread::spawn(move || match slots.claim(token, 200, 0) {
                        Ok(claim) => {
                            assert_eq!(claim.pending(), A);
                            claim.counted(visit_id);
                            Some(visit_id)
                        }
                        Err(error) => {
                            assert_eq!(error, ClaimError::NotFound);
                            None
                        }
                    })
                })
                .into();
            let wins: Vec<i64> = claimers
                .into_iter()
                .filter_map(|claimer| claimer.join().unwrap())
                .collect();
            assert_eq!(wins.len(), 1, "{wins:?}");
            assert_eq!(slots.page_left(token), Ok(wins[0]));
        });
    }

    /// A claim races with a registration that wants the claimed visit's slot: the claim
    /// sees only its own registration's words, and the registration either takes the slot
    /// (the claim then fails, or had finished) or skips it while it is being counted.
    #[test]
    fn a_registration_reusing_a_slot_races_a_claim() {
        let keys = keys_reusing_the_first_slot();
        model(move || {
            let slots = Arc::new(Slots::new(2, 0, 0, keys));
            let a = slots.register(A).unwrap().token;
            let b = slots.register(B).unwrap().token;
            let claimer = {
                let slots = slots.clone();
                thread::spawn(move || match slots.claim(a, 200, 0) {
                    Ok(claim) => {
                        assert_eq!(claim.pending(), A, "the claim saw another visit's words");
                        claim.counted(7);
                        true
                    }
                    Err(error) => {
                        assert_eq!(error, ClaimError::NotFound);
                        false
                    }
                })
            };
            let registrar = {
                let slots = slots.clone();
                thread::spawn(move || slots.register(C).unwrap())
            };
            let counted = claimer.join().unwrap();
            let c = registrar.join().unwrap();
            if index(c.token) == index(a) {
                // Taken: from A while still pending (the claim lost), or after A was counted.
                let expected = if counted { None } else { Some(A.client) };
                assert_eq!(c.evicted, expected);
                assert_eq!(slots.page_left(a), Err(LookupError::NotFound));
            } else {
                // Skipped while A was being counted; B gave way instead.
                assert!(counted);
                assert_eq!(c.evicted, Some(B.client));
                assert_eq!(slots.claim(b, 200, 0).err(), Some(ClaimError::NotFound));
                assert_eq!(slots.page_left(a), Ok(7));
            }
            assert_eq!(slots.claim(a, 200, 0).err(), Some(ClaimError::NotFound));
            assert_eq!(slots.claim(c.token, 200, 0).unwrap().pending(), C);
        });
    }

    /// `/page-left` of a counted visit races with a registration taking its slot: it
    /// reports the visit's own id or nothing, never the newcomer's words.
    #[test]
    fn page_left_races_a_registration_reusing_the_slot() {
        let keys = keys_reusing_the_first_slot();
        model(move || {
            let slots = Arc::new(Slots::new(2, 0, 0, keys));
            let a = slots.register(A).unwrap().token;
            slots.claim(a, 200, 0).unwrap().counted(7);
            slots.register(B).unwrap();
            let reader = {
                let slots = slots.clone();
                thread::spawn(move || slots.page_left(a))
            };
            let registrar = {
                let slots = slots.clone();
                thread::spawn(move || slots.register(C).unwrap())
            };
            let seen = reader.join().unwrap();
            let c = registrar.join().unwrap();
            assert!(
                matches!(seen, Ok(7) | Err(LookupError::NotFound)),
                "page-left saw {seen:?}"
            );
            if index(c.token) == index(a) {
                assert_eq!(c.evicted, None, "a counted visit is not an eviction");
                assert_eq!(slots.page_left(a), Err(LookupError::NotFound));
            } else {
                // The page-left moved the slot to LEFT under the registration's CAS, which
                // then went on to the next ticket.
                assert_eq!(seen, Ok(7));
                assert_eq!(c.evicted, Some(B.client));
                assert_eq!(slots.page_left(a), Ok(7));
            }
            assert_eq!(slots.claim(c.token, 200, 0).unwrap().pending(), C);
        });
    }

    /// The same once the visit is already marked left: `/page-left` then only reads, and
    /// the seqlock check alone keeps the newcomer's words out.
    #[test]
    fn a_repeated_page_left_races_a_registration_reusing_the_slot() {
        let keys = keys_reusing_the_first_slot();
        model(move || {
            let slots = Arc::new(Slots::new(2, 0, 0, keys));
            let a = slots.register(A).unwrap().token;
            slots.claim(a, 200, 0).unwrap().counted(7);
            assert_eq!(slots.page_left(a), Ok(7));
            slots.register(B).unwrap();
            let reader = {
                let slots = slots.clone();
                thread::spawn(move || slots.page_left(a))
            };
            let registrar = {
                let slots = slots.clone();
                thread::spawn(move || slots.register(C).unwrap())
            };
            let seen = reader.join().unwrap();
            let c = registrar.join().unwrap();
            assert!(
                matches!(seen, Ok(7) | Err(LookupError::NotFound)),
                "page-left saw {seen:?}"
            );
            assert_eq!(index(c.token), index(a), "a left slot is free to take");
            assert_eq!(c.evicted, None);
            assert_eq!(slots.page_left(a), Err(LookupError::NotFound));
        });
    }

    /// A client that guesses the next token (here: computes it from the keys) and sends it
    /// while the registration is still being written: its claim fails, or sees the
    /// registration's words, never the previous occupant's.
    #[test]
    fn a_claim_of_a_token_being_issued_sees_its_registration() {
        let keys = keys_reusing_the_first_slot();
        model(move || {
            let slots = Arc::new(Slots::new(2, 0, 0, keys));
            slots.register(A).unwrap();
            slots.register(B).unwrap();
            // Ticket 2 goes to A's slot, which has expired (no protection here).
            let next = slots.token(slots.tag(2), slots.order.slot_of(2));
            let registrar = {
                let slots = slots.clone();
                thread::spawn(move || slots.register(C).unwrap())
            };
            let guesser = {
                let slots = slots.clone();
                thread::spawn(move || {
                    if let Ok(claim) = slots.claim(next, 200, 0) {
                        assert_eq!(claim.pending(), C, "the previous occupant's words");
                    }
                })
            };
            guesser.join().unwrap();
            let c = registrar.join().unwrap();
            assert_eq!(c.token, next);
            assert_eq!(c.evicted, Some(A.client));
        });
    }

    /// A snapshot taken while a visit is being counted saves it either as pending, with the
    /// registration's words, or as counted, with its id: never the id as a pending visit's
    /// time and client.
    #[test]
    fn a_snapshot_races_a_claim_being_counted() {
        let keys = keys_reusing_the_first_slot();
        model(move || {
            let slots = Arc::new(Slots::new(2, 0, 0, keys));
            let a = slots.register(A).unwrap().token;
            let counter = {
                let slots = slots.clone();
                thread::spawn(move || slots.claim(a, 200, 0).unwrap().counted(7))
            };
            let snapshotter = {
                let slots = slots.clone();
                thread::spawn(move || slots.snapshot(300))
            };
            let snapshot = snapshotter.join().unwrap();
            counter.join().unwrap();
            assert_eq!(snapshot.slots.len(), 1);
            let saved = snapshot.slots[0];
            assert_eq!(
                (saved.index, saved.path, saved.age_ticks),
                (index(a) as u32, 1, 200)
            );
            match saved.visit {
                SavedVisit::Pending { wall_secs, client } => {
                    assert_eq!((wall_secs, client), (A.wall_secs, A.client))
                }
                SavedVisit::Counted { visit_id, left } => assert_eq!((visit_id, left), (7, false)),
            }
        });
    }

    /// `/page-left` arriving while its visit is being counted: not counted yet, or the
    /// visit's own id, never the registration's words taken for an id.
    #[test]
    fn page_left_races_the_counting_of_its_visit() {
        let keys = keys_reusing_the_first_slot();
        model(move || {
            let slots = Arc::new(Slots::new(2, 0, 0, keys));
            let a = slots.register(A).unwrap().token;
            let counter = {
                let slots = slots.clone();
                thread::spawn(move || slots.claim(a, 200, 0).unwrap().counted(7))
            };
            let reader = {
                let slots = slots.clone();
                thread::spawn(move || slots.page_left(a))
            };
            let seen = reader.join().unwrap();
            counter.join().unwrap();
            assert!(
                matches!(seen, Ok(7) | Err(LookupError::NotFound)),
                "page-left saw {seen:?}"
            );
            assert_eq!(slots.page_left(a), Ok(7));
        });
    }

    /// Two guessed claims of a token being issued, one of which fails and drops its claim:
    /// the other sees the registration's words even when it claims after the drop.
    #[test]
    fn a_claim_after_a_dropped_claim_sees_the_registration() {
        let keys = keys_reusing_the_first_slot();
        model(move || {
            let slots = Arc::new(Slots::new(2, 0, 0, keys));
            let next = slots.token(slots.tag(0), slots.order.slot_of(0));
            let registrar = {
                let slots = slots.clone();
                thread::spawn(move || slots.register(A).unwrap())
            };
            let dropper = {
                let slots = slots.clone();
                thread::spawn(move || {
                    if let Ok(claim) = slots.claim(next, 200, 0) {
                        assert_eq!(claim.pending(), A);
                    }
                })
            };
            let claimer = {
                let slots = slots.clone();
                thread::spawn(move || {
                    if let Ok(claim) = slots.claim(next, 200, 0) {
                        assert_eq!(claim.pending(), A, "a claim after a drop saw stale words");
                        claim.counted(7);
                    }
                })
            };
            assert_eq!(registrar.join().unwrap().token, next);
            dropper.join().unwrap();
            claimer.join().unwrap();
        });
    }

    /// Two registrations racing for an array with an expired visit (X) and a protected one
    /// (B): at most one of them evicts X, neither evicts B or the other newcomer, and every
    /// visit that was not evicted is still there with its own words.
    #[test]
    fn racing_registrations_never_evict_a_protected_visit() {
        let keys = keys_reusing_the_first_slot();
        let at = |tick, pending: Pending| Pending { tick, ..pending };
        model(move || {
            let slots = Arc::new(Slots::new(2, 0, 100, keys));
            let x = slots.register(at(0, C)).unwrap().token;
            let b = slots.register(at(150, B)).unwrap().token;
            let newcomers: Vec<_> = [at(150, A), at(150, Pending { client: 44, ..A })]
                .map(|pending| {
                    let slots = slots.clone();
                    thread::spawn(move || (pending, slots.register(pending)))
                })
                .into();
            let results: Vec<_> = newcomers.into_iter().map(|t| t.join().unwrap()).collect();
            let mut evicted_x = 0;
            for (pending, result) in &results {
                if let Ok(registered) = result {
                    assert!(
                        matches!(registered.evicted, None | Some(33)),
                        "evicted a protected visit of client {:?}",
                        registered.evicted
                    );
                    evicted_x += usize::from(registered.evicted.is_some());
                    let claim = slots.claim(registered.token, 200, 0).unwrap();
                    assert_eq!(claim.pending(), *pending);
                }
            }
            assert!(evicted_x <= 1);
            assert_eq!(slots.claim(b, 200, 0).unwrap().pending(), at(150, B));
            if evicted_x == 1 {
                assert_eq!(slots.claim(x, 200, 0).err(), Some(ClaimError::NotFound));
            }
        });
    }

    /// The live view racing a registration that reuses a left visit's slot: the slot shows
    /// as the newcomer's path or not at all, never as the old path under the new state.
    #[test]
    fn live_races_a_registration_reusing_a_left_slot() {
        let keys = keys_reusing_the_first_slot();
        model(move || {
            let slots = Arc::new(Slots::new(2, 0, 0, keys));
            let a = slots.register(A).unwrap().token;
            slots.claim(a, 200, 0).unwrap().counted(7);
            slots.page_left(a).unwrap();
            slots.register(B).unwrap();
            let registrar = {
                let slots = slots.clone();
                thread::spawn(move || slots.register(C).unwrap())
            };
            let viewer = {
                let slots = slots.clone();
                thread::spawn(move || {
                    let mut paths = Vec::new();
                    slots.live(150, 100, |path| paths.push(path));
                    paths.sort();
                    paths
                })
            };
            let paths = viewer.join().unwrap();
            assert_eq!(index(registrar.join().unwrap().token), index(a));
            assert!(paths == [2] || paths == [2, 3], "live saw {paths:?}");
        });
    }

    /// A claim that is dropped (its write failed) races with a registration: the slot
    /// ends up either still A's, claimable again with A's words, or the newcomer's.
    #[test]
    fn a_dropped_claim_races_a_registration() {
        let keys = keys_reusing_the_first_slot();
        model(move || {
            let slots = Arc::new(Slots::new(2, 0, 0, keys));
            let a = slots.register(A).unwrap().token;
            let b = slots.register(B).unwrap().token;
            let claimer = {
                let slots = slots.clone();
                thread::spawn(move || {
                    if let Ok(claim) = slots.claim(a, 200, 0) {
                        assert_eq!(claim.pending(), A);
                        drop(claim);
                    }
                })
            };
            let registrar = {
                let slots = slots.clone();
                thread::spawn(move || slots.register(C).unwrap())
            };
            claimer.join().unwrap();
            let c = registrar.join().unwrap();
            if index(c.token) == index(a) {
                assert_eq!(c.evicted, Some(A.client));
                assert_eq!(slots.claim(a, 200, 0).err(), Some(ClaimError::NotFound));
                assert_eq!(slots.claim(b, 200, 0).unwrap().pending(), B);
            } else {
                assert_eq!(c.evicted, Some(B.client));
                assert_eq!(slots.claim(a, 200, 0).unwrap().pending(), A);
                assert_eq!(slots.claim(b, 200, 0).err(), Some(ClaimError::NotFound));
            }
            assert_eq!(slots.claim(c.token, 200, 0).unwrap().pending(), C);
        });
    }
}

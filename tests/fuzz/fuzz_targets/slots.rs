//! The visitor slot array (`slots::Slots`), driven by a byte-chosen sequence of operations
//! and checked against a model of the protocol in the module documentation.
//!
//! The array is tiny (2 to 8 slots) so that slots are reused within a few operations: that
//! is where stale tokens, reuse during a claim, protection and all-busy registration
//! happen. The operations run on one thread, so this checks the state machine, not the
//! memory orderings (the crate's threaded and loom tests do that). The invariants:
//! - a token counts at most once;
//! - a claim sees exactly the data its own registration stored;
//! - a stale token (its slot re-registered since) never matches anything, and neither does
//!   a forged one (a real token with bits flipped, or any number);
//! - a token of another instance is `OtherInstance`, whatever else it names;
//! - a registration takes only a free, counted or left slot, or a pending one older than
//!   the protection window, and then reports that visit's client bucket; it fails only
//!   when no slot qualifies (32 probes cover every slot of an array this small);
//! - `/page-left` finds the visit id of exactly the counted token and marks it left;
//! - the live view and the pending count agree with the model.
#![no_main]

use std::collections::{BTreeMap, HashSet};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use oxitraffic::clock::TICKS_PER_SEC;
use oxitraffic::keyed::Key;
use oxitraffic::slots::{
    AllBusy, Claim, ClaimError, INSTANCE_SHIFT, LookupError, MAX_INSTANCE, Pending, SlotKeys,
    Slots, TOKEN_BITS, Token,
};

/// The largest delay the configuration allows (`min_delay_secs` ≤ 3600), in ticks.
const MAX_MIN_DELAY: u32 = 3600 * TICKS_PER_SEC;

#[derive(Arbitrary, Debug)]
enum Which {
    /// One of the tokens handed out so far (by position, modulo their number).
    Issued(u16),
    /// A handed-out token with one bit flipped: a forgery close to a real token.
    Flipped(u16, u8),
    /// A handed-out token with another instance number.
    Instance(u16, u8),
    /// Any number below 2^53, as a client could send it.
    Guess(u64),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Register {
        path: u32,
        tick: u32,
        wall_secs: u32,
        client: u16,
    },
    Claim {
        which: Which,
        now: u32,
        min_delay: u32,
    },
    /// Completes an outstanding claim (by position) with a visit id.
    Counted {
        claim: u16,
        visit_id: i64,
    },
    /// Abandons an outstanding claim, as when the database write fails.
    Drop {
        claim: u16,
    },
    PageLeft {
        which: Which,
    },
    Live {
        now: u32,
        window: u32,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    slot_count: u8,
    instance: u8,
    protect_ticks: u16,
    keys: [u64; 4],
    ops: Vec<Op>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Registered,
    Counting,
    Counted(i64),
    Left(i64),
}

/// What a slot should hold: the token of its latest registration, what it recorded, and
/// that visit's state.
#[derive(Clone, Copy, Debug)]
struct ModelSlot {
    token: u64,
    pending: Pending,
    state: State,
}

struct Model {
    slots: Vec<Option<ModelSlot>>,
    index_mask: u64,
    protect_ticks: u32,
}

impl Model {
    /// The slot `token` names and the model of it, if the token is the slot's current one.
    fn current(&mut self, token: u64) -> Option<&mut ModelSlot> {
        let index = (token & self.index_mask) as usize;
        self.slots
            .get_mut(index)?
            .as_mut()
            .filter(|slot| slot.token == token)
    }

    /// Whether a registration at `tick` may take the slot, and the client it would evict.
    fn takeable(&self, slot: &Option<ModelSlot>, tick: u32) -> Option<Option<u16>> {
        match slot {
            None => Some(None),
            Some(slot) => match slot.state {
                State::Counted(_) | State::Left(_) => Some(None),
                State::Counting => None,
                State::Registered => (tick.saturating_sub(slot.pending.tick) >= self.protect_ticks)
                    .then_some(Some(slot.pending.client)),
            },
        }
    }
}

fn pick<T: Copy>(items: &[T], position: u16) -> Option<T> {
    (!items.is_empty()).then(|| items[usize::from(position) % items.len()])
}

fuzz_target!(|input: Input| {
    // 0 and 1 exercise the "at least 2" rule of Slots::new; at most 8 keeps every slot
    // within one registration's probes, so "all busy" has an exact meaning below.
    let requested = usize::from(input.slot_count % 9);
    let instance = input.instance % (MAX_INSTANCE + 1);
    let protect_ticks = u32::from(input.protect_ticks);
    let [k0, k1, k2, k3] = input.keys;
    let keys = SlotKeys {
        tag: Key { k0, k1 },
        order: Key { k0: k2, k1: k3 },
    };
    let slots = Slots::new(requested, instance, protect_ticks, keys);
    let len = requested.max(2);
    assert_eq!(slots.len(), len);
    let index_bits = usize::BITS - (len - 1).leading_zeros();
    assert_eq!(slots.tag_bits(), INSTANCE_SHIFT - index_bits);

    let mut model = Model {
        slots: vec![None; len],
        index_mask: (1 << index_bits) - 1,
        protect_ticks,
    };
    let mut issued: Vec<u64> = Vec::new();
    let mut claims: Vec<(Claim<'_>, u64)> = Vec::new();
    let mut counted: HashSet<u64> = HashSet::new();

    let resolve = |which: &Which, issued: &[u64]| -> Option<Token> {
        let value = match *which {
            Which::Issued(i) => pick(issued, i)?,
            Which::Flipped(i, bit) => pick(issued, i)? ^ (1 << (u32::from(bit) % TOKEN_BITS)),
            Which::Instance(i, other) => {
                let local = pick(issued, i)? & ((1 << INSTANCE_SHIFT) - 1);
                u64::from(other % (MAX_INSTANCE + 1)) << INSTANCE_SHIFT | local
            }
            Which::Guess(n) => n & ((1 << TOKEN_BITS) - 1),
        };
        // Through the parser, as a client's token arrives.
        let token = Token::parse(&value.to_string());
        assert_eq!(token.map(Token::get), Some(value));
        token
    };

    for op in input.ops.iter().take(512) {
        match op {
            &Op::Register {
                path,
                tick,
                wall_secs,
                client,
            } => {
                let pending = Pending {
                    path,
                    tick,
                    wall_secs,
                    client,
                };
                let all_busy = model
                    .slots
                    .iter()
                    .all(|slot| model.takeable(slot, tick).is_none());
                match slots.register(pending) {
                    Ok(registered) => {
                        let value = registered.token.get();
                        assert!(value < 1 << TOKEN_BITS, "token {value} too large");
                        assert_eq!(registered.token.instance(), instance);
                        assert!(!issued.contains(&value), "token {value} handed out twice");
                        let index = (value & model.index_mask) as usize;
                        assert!(index < len, "token {value} names slot {index} of {len}");
                        let evicted = model.takeable(&model.slots[index], tick);
                        assert!(
                            evicted.is_some(),
                            "registration took slot {index} in use: {:?}",
                            model.slots[index]
                        );
                        assert_eq!(registered.evicted, evicted.flatten(), "slot {index}");
                        // Every earlier token of this slot is now stale (the model simply
                        // forgets it; it no longer matches `current`).
                        model.slots[index] = Some(ModelSlot {
                            token: value,
                            pending,
                            state: State::Registered,
                        });
                        issued.push(value);
                    }
                    Err(AllBusy) => assert!(all_busy, "AllBusy with a slot to take"),
                }
            }
            Op::Claim {
                which,
                now,
                min_delay,
            } => {
                let Some(token) = resolve(which, &issued) else {
                    continue;
                };
                let (now, min_delay) = (*now, *min_delay % (MAX_MIN_DELAY + 1));
                let result = slots.claim(token, now, min_delay);
                if token.instance() != instance {
                    assert_eq!(
                        result.err(),
                        Some(ClaimError::OtherInstance(token.instance()))
                    );
                    continue;
                }
                match model.current(token.get()) {
                    Some(slot) if slot.state == State::Registered => {
                        let pending = slot.pending;
                        let due = u64::from(pending.tick) + u64::from(min_delay);
                        if min_delay > 0 && u64::from(now) < due {
                            // A wait beyond u32 needs a registration 13 years in the
                            // future of `now`, which the clock cannot produce; there any
                            // TooEarly will do, the token just must not be consumed.
                            let wait = u32::try_from(due - u64::from(now)).ok();
                            match result {
                                Err(ClaimError::TooEarly { wait_ticks }) => assert!(
                                    wait.is_none_or(|wait| wait == wait_ticks),
                                    "{token:?} at {now}: wait {wait_ticks}, expected {wait:?}"
                                ),
                                other => panic!(
                                    "{token:?} at {now} before {due}: {:?}",
                                    other.map(|claim| claim.pending())
                                ),
                            }
                        } else {
                            let claim = result.unwrap_or_else(|e| {
                                panic!("{token:?} registered and due, but {e:?}")
                            });
                            assert_eq!(claim.pending(), pending, "the claim saw another visit");
                            slot.state = State::Counting;
                            claims.push((claim, token.get()));
                        }
                    }
                    // Unknown, stale, forged, being counted or already counted.
                    _ => assert_eq!(result.err(), Some(ClaimError::NotFound), "{token:?}"),
                }
            }
            &Op::Counted { claim, visit_id } => {
                if claims.is_empty() {
                    continue;
                }
                let (claim, token) = claims.remove(usize::from(claim) % claims.len());
                claim.counted(visit_id);
                assert!(counted.insert(token), "{token} counted twice");
                let slot = model
                    .current(token)
                    .expect("a claimed slot cannot be reused");
                assert_eq!(slot.state, State::Counting);
                slot.state = State::Counted(visit_id);
            }
            &Op::Drop { claim } => {
                if claims.is_empty() {
                    continue;
                }
                let (claim, token) = claims.remove(usize::from(claim) % claims.len());
                drop(claim);
                let slot = model
                    .current(token)
                    .expect("a claimed slot cannot be reused");
                assert_eq!(slot.state, State::Counting, "{token}");
                slot.state = State::Registered;
            }
            Op::PageLeft { which } => {
                let Some(token) = resolve(which, &issued) else {
                    continue;
                };
                let result = slots.page_left(token);
                if token.instance() != instance {
                    assert_eq!(result, Err(LookupError::OtherInstance(token.instance())));
                    continue;
                }
                let expected = match model.current(token.get()) {
                    Some(slot) => match slot.state {
                        State::Counted(id) | State::Left(id) => {
                            slot.state = State::Left(id);
                            Ok(id)
                        }
                        _ => Err(LookupError::NotFound),
                    },
                    None => Err(LookupError::NotFound),
                };
                assert_eq!(result, expected, "{token:?}");
            }
            &Op::Live { now, window } => {
                let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
                slots.live(now, window, |path| *seen.entry(path).or_default() += 1);
                let mut expected: BTreeMap<u32, usize> = BTreeMap::new();
                let mut pending = 0;
                for slot in model.slots.iter().flatten() {
                    let age = now.saturating_sub(slot.pending.tick);
                    let open = !matches!(slot.state, State::Left(_));
                    if open && age < window {
                        *expected.entry(slot.pending.path).or_default() += 1;
                    }
                    let waiting = matches!(slot.state, State::Registered | State::Counting);
                    if waiting && age < protect_ticks {
                        pending += 1;
                    }
                }
                assert_eq!(seen, expected, "live at {now}, window {window}");
                assert_eq!(slots.pending_count(now), pending, "pending at {now}");
            }
        }
    }
});

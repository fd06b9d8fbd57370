//! The visitor slot array (`slots::Slots`), driven by a byte-chosen sequence of operations
//! and checked against a model of the protocol in the module documentation.
//!
//! The array is tiny (2 to 8 slots) so that slots are reused within a few operations: that
//! is where stale tokens, reuse during a claim and all-busy registration happen. The
//! operations run on one thread, so this checks the state machine, not the memory
//! orderings (the crate's own threaded tests do that). The invariants:
//! - a token counts at most once;
//! - a claim sees exactly the data its own registration stored;
//! - a stale token (its slot re-registered since) never matches anything, and neither does
//!   a forged one (a real token with bits flipped, or any number);
//! - a slot being counted is never taken by a registration, and registration fails only
//!   when every slot is being counted;
//! - `/page-left` (`counted_visit`) finds the visit id of exactly the counted token.
#![no_main]

use std::collections::HashSet;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use oxitraffic::clock::TICKS_PER_SEC;
use oxitraffic::slots::{AllBusy, Claim, ClaimError, Pending, Slots, TOKEN_BITS, Token};

/// The largest delay the configuration allows (`min_delay_secs` ≤ 3600), in ticks.
const MAX_MIN_DELAY: u32 = 3600 * TICKS_PER_SEC;

#[derive(Arbitrary, Debug)]
enum Which {
    /// One of the tokens handed out so far (by position, modulo their number).
    Issued(u16),
    /// A handed-out token with one bit flipped: a forgery close to a real token.
    Flipped(u16, u8),
    /// Any number below 2^53, as a client could send it.
    Guess(u64),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Register {
        path_id: u32,
        registered_at: u32,
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
    CountedVisit {
        which: Which,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    slot_count: u8,
    ops: Vec<Op>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Registered(Pending),
    Counting(Pending),
    Counted(i64),
}

/// What a slot should hold: the token of its latest registration and that visit's state.
#[derive(Clone, Copy, Debug)]
struct ModelSlot {
    token: u64,
    state: State,
}

struct Model {
    slots: Vec<Option<ModelSlot>>,
    index_mask: u64,
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
}

fn pick<T: Copy>(items: &[T], position: u16) -> Option<T> {
    (!items.is_empty()).then(|| items[usize::from(position) % items.len()])
}

fuzz_target!(|input: Input| {
    // 0 and 1 exercise the "at least 2" rule of Slots::new; at most 8 keeps every slot
    // within one registration's probes, so "all busy" has an exact meaning below.
    let requested = usize::from(input.slot_count % 9);
    let slots = Slots::new(requested);
    let len = requested.max(2);
    assert_eq!(slots.len(), len);
    let index_bits = usize::BITS - (len - 1).leading_zeros();
    assert_eq!(slots.tag_bits(), TOKEN_BITS - index_bits);

    let mut model = Model {
        slots: vec![None; len],
        index_mask: (1 << index_bits) - 1,
    };
    let mut issued: Vec<u64> = Vec::new();
    let mut claims: Vec<(Claim<'_>, u64)> = Vec::new();
    let mut counted: HashSet<u64> = HashSet::new();

    let resolve = |which: &Which, issued: &[u64]| -> Option<Token> {
        let value = match *which {
            Which::Issued(i) => pick(issued, i)?,
            Which::Flipped(i, bit) => pick(issued, i)? ^ (1 << (u32::from(bit) % TOKEN_BITS)),
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
                path_id,
                registered_at,
            } => {
                let pending = Pending {
                    path_id,
                    registered_at,
                };
                let all_busy = model.slots.iter().all(|s| {
                    matches!(
                        s,
                        Some(ModelSlot {
                            state: State::Counting(_),
                            ..
                        })
                    )
                });
                match slots.register(pending) {
                    Ok(token) => {
                        let value = token.get();
                        assert!(value < 1 << TOKEN_BITS, "token {value} too large");
                        assert!(!issued.contains(&value), "token {value} handed out twice");
                        let index = (value & model.index_mask) as usize;
                        assert!(index < len, "token {value} names slot {index} of {len}");
                        if let Some(old) = &model.slots[index] {
                            assert!(
                                !matches!(old.state, State::Counting(_)),
                                "registration took slot {index} while it was being counted"
                            );
                        }
                        // Every earlier token of this slot is now stale (the model simply
                        // forgets it; it no longer matches `current`).
                        model.slots[index] = Some(ModelSlot {
                            token: value,
                            state: State::Registered(pending),
                        });
                        issued.push(value);
                    }
                    Err(AllBusy) => assert!(all_busy, "AllBusy with a slot free"),
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
                let slot = model.current(token.get());
                let registered = slot.as_ref().and_then(|slot| match slot.state {
                    State::Registered(pending) => Some(pending),
                    _ => None,
                });
                match (slot, registered) {
                    (Some(slot), Some(pending)) => {
                        let due = u64::from(pending.registered_at) + u64::from(min_delay);
                        if u64::from(now) < due {
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
                                    other.map(|claim| claim.pending)
                                ),
                            }
                        } else {
                            let claim = result.unwrap_or_else(|e| {
                                panic!("{token:?} registered and due, but {e:?}")
                            });
                            assert_eq!(claim.pending, pending, "the claim saw another visit");
                            slot.state = State::Counting(pending);
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
                assert!(matches!(slot.state, State::Counting(_)));
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
                let State::Counting(pending) = slot.state else {
                    panic!("{token} claimed but modelled as {:?}", slot.state);
                };
                slot.state = State::Registered(pending);
            }
            Op::CountedVisit { which } => {
                let Some(token) = resolve(which, &issued) else {
                    continue;
                };
                let expected = match model.current(token.get()) {
                    Some(ModelSlot {
                        state: State::Counted(id),
                        ..
                    }) => Some(*id),
                    _ => None,
                };
                assert_eq!(slots.counted_visit(token), expected, "{token:?}");
            }
        }
    }
});

//! A keyed hash whose key can be saved and restored: SipHash-2-4, written out so the key is
//! ours to export (std's `RandomState` hides its key, so tokens derived from it could not
//! survive a restart).
//!
//! Everything that needs a per-process secret mapping uses it: the tags and the hand-out
//! order of visitor slots, and the client limiter's table index. Without the key, outputs
//! cannot be predicted from inputs, nor inputs told apart by their outputs.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// A map keyed by values that are keyed hashes already (uniformly distributed): hashing them
/// again would only waste time.
pub type HashKeyed<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

/// The hasher of [`HashKeyed`]: the key is its own hash.
#[derive(Default)]
pub struct PassThrough(u64);

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

/// A hasher for small integers the program assigns itself (path indexes), never chosen by a
/// client, so nothing needs to resist crafted collisions: one multiplication by an odd
/// constant (2^64 / φ) spreads them over the high bits the map's control bytes use.
#[derive(Default)]
pub struct Multiplied(u64);

impl Hasher for Multiplied {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _: &[u8]) {
        unreachable!("only u32 keys are hashed")
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A 128-bit SipHash key. The fields are plain so the key can be stored (the slot snapshot
/// keeps it across a restart); `Debug` never prints them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub k0: u64,
    pub k1: u64,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// SipHash's state after the key is mixed in.
#[derive(Clone, Copy)]
struct State([u64; 4]);

impl State {
    fn new(key: &Key) -> State {
        State([
            key.k0 ^ 0x736f_6d65_7073_6575,
            key.k1 ^ 0x646f_7261_6e64_6f6d,
            key.k0 ^ 0x6c79_6765_6e65_7261,
            key.k1 ^ 0x7465_6462_7974_6573,
        ])
    }

    #[inline(always)]
    fn round(&mut self) {
        let [v0, v1, v2, v3] = &mut self.0;
        *v0 = v0.wrapping_add(*v1);
        *v1 = v1.rotate_left(13) ^ *v0;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v3);
        *v3 = v3.rotate_left(16) ^ *v2;
        *v0 = v0.wrapping_add(*v3);
        *v3 = v3.rotate_left(21) ^ *v0;
        *v2 = v2.wrapping_add(*v1);
        *v1 = v1.rotate_left(17) ^ *v2;
        *v2 = v2.rotate_left(32);
    }

    /// Two compression rounds per 8-byte block (the "2" of SipHash-2-4).
    #[inline(always)]
    fn block(&mut self, m: u64) {
        self.0[3] ^= m;
        self.round();
        self.round();
        self.0[0] ^= m;
    }

    /// Four finalisation rounds (the "4").
    #[inline(always)]
    fn finish(mut self) -> u64 {
        self.0[2] ^= 0xff;
        for _ in 0..4 {
            self.round();
        }
        let [v0, v1, v2, v3] = self.0;
        v0 ^ v1 ^ v2 ^ v3
    }
}

impl Key {
    /// A fresh key from the operating system's randomness. std seeds every `RandomState`
    /// from the OS (once per thread, then a counter); hashing through two of them gives
    /// 128 bits nobody without that seed can predict, with no extra crate and no way to
    /// fail at start-up.
    pub fn random() -> Key {
        Key {
            k0: RandomState::new().hash_one(0x6f78_6974_7261_6630_u64),
            k1: RandomState::new().hash_one(0x6f78_6974_7261_6631_u64),
        }
    }

    /// SipHash-2-4 of the 8 little-endian bytes of `value`: the same as
    /// `hash_bytes(&value.to_le_bytes())`, without the byte handling.
    #[inline]
    pub fn hash_u64(&self, value: u64) -> u64 {
        let mut state = State::new(self);
        state.block(value);
        // The final block carries the message length (8) in its top byte.
        state.block(8 << 56);
        state.finish()
    }

    /// SipHash-2-4 of `bytes`.
    pub fn hash_bytes(&self, bytes: &[u8]) -> u64 {
        let mut state = State::new(self);
        let mut blocks = bytes.chunks_exact(8);
        for block in &mut blocks {
            state.block(u64::from_le_bytes(block.try_into().expect("chunks of 8")));
        }
        let mut last = (bytes.len() as u64 & 0xff) << 56;
        for (i, byte) in blocks.remainder().iter().enumerate() {
            last |= u64::from(*byte) << (8 * i);
        }
        state.block(last);
        state.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::Hasher;

    use super::*;

    /// The reference implementation's test vectors (`vectors.h` of the SipHash authors):
    /// key 00 01 … 0f, messages 00 01 … (n − 1) for n = 0 … 63, read as little-endian.
    #[rustfmt::skip]
    const REFERENCE: [u64; 64] = [
        0x726fdb47dd0e0e31, 0x74f839c593dc67fd, 0x0d6c8009d9a94f5a, 0x85676696d7fb7e2d,
        0xcf2794e0277187b7, 0x18765564cd99a68d, 0xcbc9466e58fee3ce, 0xab0200f58b01d137,
        0x93f5f5799a932462, 0x9e0082df0ba9e4b0, 0x7a5dbbc594ddb9f3, 0xf4b32f46226bada7,
        0x751e8fbc860ee5fb, 0x14ea5627c0843d90, 0xf723ca908e7af2ee, 0xa129ca6149be45e5,
        0x3f2acc7f57c29bdb, 0x699ae9f52cbe4794, 0x4bc1b3f0968dd39c, 0xbb6dc91da77961bd,
        0xbed65cf21aa2ee98, 0xd0f2cbb02e3b67c7, 0x93536795e3a33e88, 0xa80c038ccd5ccec8,
        0xb8ad50c6f649af94, 0xbce192de8a85b8ea, 0x17d835b85bbb15f3, 0x2f2e6163076bcfad,
        0xde4daaaca71dc9a5, 0xa6a2506687956571, 0xad87a3535c49ef28, 0x32d892fad841c342,
        0x7127512f72f27cce, 0xa7f32346f95978e3, 0x12e0b01abb051238, 0x15e034d40fa197ae,
        0x314dffbe0815a3b4, 0x027990f029623981, 0xcadcd4e59ef40c4d, 0x9abfd8766a33735c,
        0x0e3ea96b5304a7d0, 0xad0c42d6fc585992, 0x187306c89bc215a9, 0xd4a60abcf3792b95,
        0xf935451de4f21df2, 0xa9538f0419755787, 0xdb9acddff56ca510, 0xd06c98cd5c0975eb,
        0xe612a3cb9ecba951, 0xc766e62cfcadaf96, 0xee64435a9752fe72, 0xa192d576b245165a,
        0x0a8787bf8ecb74b2, 0x81b3e73d20b49b6f, 0x7fa8220ba3b2ecea, 0x245731c13ca42499,
        0xb78dbfaf3a8d83bd, 0xea1ad565322a1a0b, 0x60e61c23a3795013, 0x6606d7e446282b93,
        0x6ca4ecb15c5f91e1, 0x9f626da15c9625f3, 0xe51b38608ef25f57, 0x958a324ceb064572,
    ];

    const REFERENCE_KEY: Key = Key {
        k0: 0x0706050403020100,
        k1: 0x0f0e0d0c0b0a0908,
    };

    #[test]
    fn matches_the_reference_vectors() {
        let message: Vec<u8> = (0..64).collect();
        for (len, expected) in REFERENCE.iter().enumerate() {
            assert_eq!(
                REFERENCE_KEY.hash_bytes(&message[..len]),
                *expected,
                "{len} bytes"
            );
        }
    }

    /// std still ships SipHash-2-4 (deprecated, but exact): a second, independent
    /// implementation for random keys and lengths beyond the vectors.
    #[test]
    #[allow(deprecated)]
    fn agrees_with_std_siphash_2_4() {
        let message: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        for round in 0..20 {
            let key = Key::random();
            for len in (0..message.len()).step_by(7 + round) {
                let mut reference = std::hash::SipHasher::new_with_keys(key.k0, key.k1);
                reference.write(&message[..len]);
                assert_eq!(key.hash_bytes(&message[..len]), reference.finish());
            }
        }
    }

    #[test]
    fn hash_u64_is_the_hash_of_its_little_endian_bytes() {
        let key = Key::random();
        for value in [0, 1, 0xff, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(key.hash_u64(value), key.hash_bytes(&value.to_le_bytes()));
        }
        assert_eq!(
            REFERENCE_KEY.hash_u64(0x0706050403020100),
            REFERENCE[8],
            "the 8-byte reference vector"
        );
    }

    #[test]
    fn random_keys_differ_and_never_show_in_debug() {
        let keys: HashSet<(u64, u64)> = (0..1000)
            .map(|_| {
                let key = Key::random();
                (key.k0, key.k1)
            })
            .collect();
        assert_eq!(keys.len(), 1000);
        let key = Key::random();
        let shown = format!("{key:?}");
        assert!(!shown.contains(&key.k0.to_string()) && !shown.contains(&format!("{:x}", key.k0)));
        assert_eq!(shown, "Key(..)");
    }

    #[test]
    fn another_key_gives_another_hash() {
        let (a, b) = (Key::random(), Key::random());
        let same = (0..1000u64)
            .filter(|v| a.hash_u64(*v) == b.hash_u64(*v))
            .count();
        assert_eq!(same, 0);
    }
}

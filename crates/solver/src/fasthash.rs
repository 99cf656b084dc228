//! A fast hasher for the solver's own maps. Their keys are small integers, interned symbols and
//! requirement sets built from them, hashed on every candidate node; the standard library's
//! SipHash, built to resist keys chosen by an attacker, costs several times more per key than
//! these need. Maps keyed by text read from manifests keep the standard hasher.
//!
//! The mixing step is FxHash's (as in the Rust compiler): rotate, xor the next word, multiply.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// FxHash: one multiply per word.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, BuildHasherDefault};

    use super::*;

    #[test]
    fn equal_keys_hash_equal_and_near_keys_differ() {
        let build = BuildHasherDefault::<FastHasher>::default();
        assert_eq!(build.hash_one((3usize, 7u32)), build.hash_one((3usize, 7u32)));
        assert_ne!(build.hash_one((3usize, 7u32)), build.hash_one((3usize, 8u32)));
        assert_ne!(build.hash_one((3usize, 7u32)), build.hash_one((7usize, 3u32)));
        // Byte slices: a short tail still counts.
        assert_ne!(
            build.hash_one(&b"abcdefghi"[..]),
            build.hash_one(&b"abcdefghj"[..])
        );
        let mut map: FastMap<(usize, u32), i64> = FastMap::default();
        for i in 0..1000u32 {
            map.insert((i as usize % 7, i), i64::from(i));
        }
        assert_eq!(map.len(), 1000);
        assert_eq!(map.get(&(5, 12)), Some(&12));
    }
}

//! A fast hasher for the solver's own maps. Their keys are small integers, interned symbols and
//! requirement sets built from them, hashed on every candidate node; the standard library's
//! SipHash, built to resist keys chosen by an attacker, costs several times more per key than
//! these need. Maps keyed by text read from manifests keep the standard hasher. Plans do not
//! depend on the hasher (the standard one is seeded randomly per process and plans are the same).

/// A `HashMap` hashed with the Rust compiler's FxHash (`rustc-hash`).
pub(crate) type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;

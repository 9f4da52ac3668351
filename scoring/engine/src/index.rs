//! An index from 64-bit keys to 32-bit values (a key's slot in a store, a transaction's place
//! among the pending ones): one 8-byte word a key in an open-addressing table with linear
//! probing, so that a lookup or an insert reads one cache line, and a driver can ask for that
//! line before it is needed ([`super::Engine::prefetch`]). A `HashMap<u64, u64>` read two (its
//! control bytes, then a 16-byte bucket) from a table twice the size, and gave no way to
//! prefetch; those misses were the largest single cost of scoring once the state outgrew the
//! caches (BENCHMARKS.md's history).
//!
//! A word holds the key's top 32 bits, its tag, and the value. The tag's top bits choose the
//! home slot, so words move on growth and deletion without their keys. Keys that share a tag
//! are told apart by the caller, who holds each value's key (`is_key`): a tag has 31 free bits,
//! so among 1.4 million random keys about 460 pairs share one.

/// A free slot. Every tag has its lowest bit set, so no word is free.
const FREE: u64 = 0;
const MIN_BITS: u32 = 10;

#[derive(Debug, Clone)]
pub struct KeyIndex {
    words: Vec<u64>,
    /// log2 of the number of slots.
    bits: u32,
    len: usize,
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self {
            words: vec![FREE; 1 << MIN_BITS],
            bits: MIN_BITS,
            len: 0,
        }
    }
}

fn tag(key: u64) -> u32 {
    (key >> 32) as u32 | 1
}

fn word(tag: u32, value: u32) -> u64 {
    u64::from(tag) << 32 | u64::from(value)
}

fn tag_of(word: u64) -> u32 {
    (word >> 32) as u32
}

impl KeyIndex {
    pub fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.words.len() - 1
    }

    fn home(&self, tag: u32) -> usize {
        (tag >> (32 - self.bits)) as usize
    }

    /// Starts loading the line where a probe for `key` begins.
    pub fn prefetch(&self, key: u64) {
        super::prefetch::lines_of(&self.words[self.home(tag(key))]);
    }

    /// Where a probe for `tag` ends: `Ok` at the word whose value `is_key` accepts, `Err` at
    /// the free slot where such a word would go.
    fn find(&self, tag: u32, is_key: impl Fn(u32) -> bool) -> Result<usize, usize> {
        let mut i = self.home(tag);
        loop {
            let w = self.words[i];
            if w == FREE {
                return Err(i);
            }
            if tag_of(w) == tag && is_key(w as u32) {
                return Ok(i);
            }
            i = (i + 1) & self.mask();
        }
    }

    /// The value of `key`; `is_key(value)` says whether `value` is `key`'s, for keys that share
    /// a tag.
    pub fn get(&self, key: u64, is_key: impl Fn(u32) -> bool) -> Option<u32> {
        let i = self.find(tag(key), is_key).ok()?;
        Some(self.words[i] as u32)
    }

    /// Indexes `key` with `value` unless it is indexed already (as [`Self::get`] finds it),
    /// which returns false.
    pub fn insert(&mut self, key: u64, value: u32, is_key: impl Fn(u32) -> bool) -> bool {
        // At most three quarters full: a miss then probes 8.5 slots on average, about a line.
        if self.len >= self.words.len() / 4 * 3 {
            self.grow();
        }
        let tag = tag(key);
        let Err(free) = self.find(tag, is_key) else {
            return false;
        };
        self.words[free] = word(tag, value);
        self.len += 1;
        true
    }

    /// Removes `key`, indexed with `value`.
    pub fn remove(&mut self, key: u64, value: u32) {
        let Ok(mut hole) = self.find(tag(key), |v| v == value) else {
            return;
        };
        // Backward-shift deletion: each later word of the run moves into the hole unless its
        // home lies after the hole, so that no probe ever meets a gap before its key.
        let mut next = hole;
        loop {
            next = (next + 1) & self.mask();
            let w = self.words[next];
            if w == FREE {
                break;
            }
            let from_home = next.wrapping_sub(self.home(tag_of(w))) & self.mask();
            let from_hole = next.wrapping_sub(hole) & self.mask();
            if from_home >= from_hole {
                self.words[hole] = w;
                hole = next;
            }
        }
        self.words[hole] = FREE;
        self.len -= 1;
    }

    fn grow(&mut self) {
        let old = std::mem::replace(&mut self.words, vec![FREE; 2 << self.bits]);
        self.bits += 1;
        for w in old.into_iter().filter(|&w| w != FREE) {
            // Every word is distinct: no probe can find one already placed.
            let (Ok(i) | Err(i)) = self.find(tag_of(w), |_| false);
            self.words[i] = w;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, VecDeque};

    /// A queue of keys like the pending store's, each indexed with its place (wrapping past
    /// 2^32 as the store's sequence numbers do), in the index and in a `HashMap`.
    struct Both {
        index: KeyIndex,
        reference: HashMap<u64, u32>,
        kept: VecDeque<u64>,
        first: u32,
    }

    impl Both {
        fn new() -> Self {
            Self {
                index: KeyIndex::default(),
                reference: HashMap::new(),
                kept: VecDeque::new(),
                first: u32::MAX - 100,
            }
        }

        fn key_at(&self, value: u32) -> Option<u64> {
            self.kept
                .get(value.wrapping_sub(self.first) as usize)
                .copied()
        }

        fn push(&mut self, key: u64) -> bool {
            let value = self.first.wrapping_add(self.kept.len() as u32);
            let (first, kept) = (self.first, &self.kept);
            let key_at = |v: u32| kept.get(v.wrapping_sub(first) as usize).copied();
            let inserted = self.index.insert(key, value, |v| key_at(v) == Some(key));
            assert_eq!(inserted, !self.reference.contains_key(&key));
            if inserted {
                self.reference.insert(key, value);
                self.kept.push_back(key);
            }
            inserted
        }

        fn pop(&mut self) {
            let Some(key) = self.kept.pop_front() else {
                return;
            };
            self.index.remove(key, self.first);
            self.reference.remove(&key);
            self.first = self.first.wrapping_add(1);
        }

        fn check(&self, key: u64) {
            let found = self.index.get(key, |v| self.key_at(v) == Some(key));
            assert_eq!(found, self.reference.get(&key).copied(), "key {key:#x}");
        }
    }

    /// Key `k` of a small set (so that duplicates occur) spread over the table (mode 0), or all
    /// with the last slot as their home, so that their run wraps around (1), or all with one tag
    /// and home, told apart only by `is_key` (2).
    fn key(k: u16, mode: u8) -> u64 {
        let k = u64::from(k);
        match mode {
            0 => k.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            1 => 0xFFFF_F000_0000_0000 | (k << 32),
            _ => k,
        }
    }

    proptest! {
        #[test]
        fn agrees_with_a_hash_map(
            ops in prop::collection::vec((any::<bool>(), 0u16..400), 1..1500),
            mode in 0u8..3,
        ) {
            let mut both = Both::new();
            for (pop, k) in ops {
                if pop {
                    both.pop();
                } else {
                    both.push(key(k, mode));
                }
                both.check(key(k, mode));
            }
            for k in 0..400 {
                both.check(key(k, mode));
            }
            prop_assert_eq!(both.index.len(), both.reference.len());
        }
    }

    #[test]
    fn grows_and_shrinks_as_a_queue() {
        let mut both = Both::new();
        for round in 0..3u16 {
            for k in 0..10_000 {
                both.push(key(k, 0) ^ u64::from(round));
            }
            for _ in 0..7_000 {
                both.pop();
            }
            for k in 0..10_000 {
                both.check(key(k, 0) ^ u64::from(round));
            }
        }
        assert!(both.index.bits > MIN_BITS);
        assert_eq!(both.index.len(), both.kept.len());
    }

    #[test]
    fn keys_sharing_a_tag_are_told_apart_by_the_caller() {
        let mut both = Both::new();
        let (a, b) = (0xABCD_0000_0000_0001, 0xABCD_0000_0000_0002);
        assert!(both.push(a) && both.push(b) && !both.push(a));
        both.check(a);
        both.check(b);
        both.pop();
        both.check(a);
        both.check(b);
    }
}

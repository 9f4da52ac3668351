//! Per-key state in fixed-size pages, found through a map from key to slot.
//!
//! Pages rather than one growing `Vec` keep memory at what is used (a `Vec` doubling at a million
//! cards would hold up to twice that) and never move state that is already stored. Keys idle
//! longer than a time-to-live are swept a few slots per event, so expiry costs the same on every
//! event instead of a pause; the last-seen times live in one dense array beside the pages, so
//! that the sweep reads memory in order instead of missing the cache once per slot.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const PAGE: usize = 4096;
/// `last_seen` of a free slot.
const FREE: u32 = 0;

/// Keys are already well-mixed 64-bit hashes; hashing them again would only cost time.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

pub type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Slot<S> {
    key: u64,
    state: S,
}

/// State of type `S` for each live key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyedStore<S> {
    index: KeyMap<u32>,
    pages: Vec<Vec<Slot<S>>>,
    /// Unix seconds each slot's key was last seen, `FREE` for a free slot.
    last_seen: Vec<u32>,
    free: Vec<u32>,
    slots: u32,
    sweep_cursor: u32,
}

impl<S> Default for KeyedStore<S> {
    fn default() -> Self {
        Self {
            index: KeyMap::default(),
            pages: Vec::new(),
            last_seen: Vec::new(),
            free: Vec::new(),
            slots: 0,
            sweep_cursor: 0,
        }
    }
}

impl<S: Default> KeyedStore<S> {
    /// Live keys.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// The slot of `key`, created empty if the key is new; marks the key as seen at `t`.
    pub fn slot(&mut self, key: u64, t: i64) -> u32 {
        let slot = match self.index.get(&key) {
            Some(&slot) => slot,
            None => {
                let slot = self.allocate(key);
                self.index.insert(key, slot);
                slot
            }
        };
        let seen = &mut self.last_seen[slot as usize];
        *seen = (*seen).max(t.clamp(1, i64::from(u32::MAX)) as u32);
        slot
    }

    pub fn get(&self, slot: u32) -> &S {
        &self.at(slot).state
    }

    pub fn get_mut(&mut self, slot: u32) -> &mut S {
        &mut self.at_mut(slot).state
    }

    fn at(&self, slot: u32) -> &Slot<S> {
        &self.pages[slot as usize / PAGE][slot as usize % PAGE]
    }

    fn at_mut(&mut self, slot: u32) -> &mut Slot<S> {
        &mut self.pages[slot as usize / PAGE][slot as usize % PAGE]
    }

    fn allocate(&mut self, key: u64) -> u32 {
        let fresh = Slot {
            key,
            state: S::default(),
        };
        if let Some(slot) = self.free.pop() {
            *self.at_mut(slot) = fresh;
            return slot;
        }
        self.last_seen.push(FREE);
        let slot = self.slots;
        if (slot as usize).is_multiple_of(PAGE) {
            self.pages.push(Vec::with_capacity(PAGE));
        }
        self.pages
            .last_mut()
            .expect("a page was just ensured")
            .push(fresh);
        self.slots += 1;
        slot
    }

    /// Looks at the next `n` slots and frees those of keys not seen since `expire_before`.
    pub fn sweep(&mut self, n: usize, expire_before: i64) -> usize {
        let mut expired = 0;
        for _ in 0..n.min(self.slots as usize) {
            self.sweep_cursor = (self.sweep_cursor + 1) % self.slots;
            let slot = self.sweep_cursor;
            let seen = self.last_seen[slot as usize];
            if seen != FREE && i64::from(seen) < expire_before {
                let key = self.at(slot).key;
                self.index.remove(&key);
                self.last_seen[slot as usize] = FREE;
                self.free.push(slot);
                expired += 1;
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_state_per_key_and_reuses_expired_slots() {
        let mut store = KeyedStore::<u64>::default();
        for key in 0..10_000u64 {
            let slot = store.slot(key.wrapping_mul(0x9E37_79B9_7F4A_7C15), 100);
            *store.get_mut(slot) += key;
        }
        assert_eq!(store.len(), 10_000);
        let slot = store.slot(7u64.wrapping_mul(0x9E37_79B9_7F4A_7C15), 500);
        assert_eq!(*store.get(slot), 7);

        // Everything but key 7 was last seen at 100: a full sweep expires the rest.
        let expired = store.sweep(10_000, 200);
        assert_eq!((expired, store.len()), (9_999, 1));
        let reused = store.slot(42, 600);
        assert_eq!(*store.get(reused), 0, "a reused slot starts empty");
        assert_eq!(store.slots, 10_000, "no new slot while free ones exist");
    }
}

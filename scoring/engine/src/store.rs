//! Per-key state in fixed-size pages, found through a map from key to slot.
//!
//! Pages rather than one growing `Vec` keep memory at what is used (a `Vec` doubling at a million
//! cards would hold up to twice that) and never move state that is already stored. Keys idle
//! longer than a time-to-live are swept a few slots per event, so expiry costs the same on every
//! event instead of a pause; the last-seen times live in one dense array beside the pages, so
//! that the sweep reads memory in order instead of missing the cache once per slot.
//!
//! A store also holds at most a given number of keys: a new key in a full store takes the place
//! of the key seen longest ago among a few slots sampled at random (as Redis approximates
//! LRU), so that a flood of new keys costs the keys idle longest, not memory.

use serde::{Deserialize, Serialize};

use super::index::KeyIndex;

const PAGE: usize = 4096;
/// `last_seen` of a free slot.
const FREE: u32 = 0;

/// "No slot known" for [`KeyedStore::slot_hinted`].
pub const NO_SLOT: u32 = u32::MAX;

/// Slots a full store looks at to choose the key a new one replaces.
const EVICTION_SAMPLE: u32 = 16;

/// A key's slot, and whether the key is new to the store (never seen, forgotten since, or idle
/// past the time-to-live): its state is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub slot: u32,
    pub new: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Slot<S> {
    key: u64,
    state: S,
}

/// State of type `S` for each live key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyedStore<S> {
    /// Each live key's slot. Left out of snapshots: it is the slots' keys again.
    #[serde(skip)]
    index: KeyIndex,
    pages: Vec<Vec<Slot<S>>>,
    /// Unix seconds each slot's key was last seen, `FREE` for a free slot.
    last_seen: Vec<u32>,
    free: Vec<u32>,
    slots: u32,
    sweep_cursor: u32,
    /// Keys forgotten before their time-to-live to make room for new ones.
    pub evicted: u64,
}

impl<S> Default for KeyedStore<S> {
    fn default() -> Self {
        Self {
            index: KeyIndex::default(),
            pages: Vec::new(),
            last_seen: Vec::new(),
            free: Vec::new(),
            slots: 0,
            sweep_cursor: 0,
            evicted: 0,
        }
    }
}

impl<S: Default> KeyedStore<S> {
    /// Live keys.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// The slot of `key`, created empty if the key is new or was last seen before
    /// `idle_before` (as if the sweep had come by already: when it does must not change what
    /// is scored); marks the key as seen at `t`. A new key in a store holding `max_keys`
    /// takes the place of one seen long ago.
    pub fn slot(&mut self, key: u64, t: i64, idle_before: i64, max_keys: usize) -> Found {
        self.slot_hinted(key, NO_SLOT, t, idle_before, max_keys)
    }

    /// [`KeyedStore::slot`], with the slot `key` had when last asked (`NO_SLOT` if none):
    /// taken without a look in the index while it still holds `key`.
    pub fn slot_hinted(
        &mut self,
        key: u64,
        hint: u32,
        t: i64,
        idle_before: i64,
        max_keys: usize,
    ) -> Found {
        let holds =
            hint < self.slots && self.last_seen[hint as usize] != FREE && self.at(hint).key == key;
        let pages = &self.pages;
        let found = if holds {
            Some(hint)
        } else {
            self.index.get(key, |slot| slot_in(pages, slot).key == key)
        };
        let found = match found {
            Some(slot) => {
                let idle = i64::from(self.last_seen[slot as usize]) < idle_before;
                if idle {
                    self.at_mut(slot).state = S::default();
                }
                Found { slot, new: idle }
            }
            None => {
                if self.len() >= max_keys.max(1) {
                    self.evict_one();
                }
                let slot = self.allocate(key);
                // No slot holds `key`, as just looked up.
                self.index.insert(key, slot, |_| false);
                Found { slot, new: true }
            }
        };
        let seen = &mut self.last_seen[found.slot as usize];
        *seen = (*seen).max(t.clamp(1, i64::from(u32::MAX)) as u32);
        found
    }

    /// Frees the slot of the key seen longest ago among [`EVICTION_SAMPLE`] slots drawn at
    /// random, from the count of evictions so far: the same stream evicts the same keys.
    /// Random, not consecutive: keys that arrived together sit side by side.
    fn evict_one(&mut self) {
        let mut oldest: Option<u32> = None;
        for draw in 0..u64::from(EVICTION_SAMPLE) {
            let random = splitmix64(self.evicted.wrapping_mul(u64::from(EVICTION_SAMPLE)) + draw);
            let slot = (random % u64::from(self.slots)) as u32;
            let seen = self.last_seen[slot as usize];
            if seen != FREE && oldest.is_none_or(|o| seen < self.last_seen[o as usize]) {
                oldest = Some(slot);
            }
        }
        if let Some(slot) = oldest {
            self.free_slot(slot);
            self.evicted += 1;
        }
    }

    /// The slot of `key`, if it has one and was seen from `idle_before` on; does not mark it
    /// as seen.
    pub fn find(&self, key: u64, idle_before: i64) -> Option<u32> {
        let pages = &self.pages;
        let slot = self
            .index
            .get(key, |slot| slot_in(pages, slot).key == key)?;
        (i64::from(self.last_seen[slot as usize]) >= idle_before).then_some(slot)
    }

    /// Starts loading the line where `key` is indexed ([`super::prefetch`]).
    pub fn prefetch_index(&self, key: u64) {
        self.index.prefetch(key);
    }

    /// Starts loading the state of `key`, if it has one. The first slot of the key's tag is
    /// taken for its own, not read to make sure: that read would wait for the line asked for,
    /// and another key with the same tag only loads the wrong line.
    pub fn prefetch_state(&self, key: u64) {
        if let Some(slot) = self.index.get(key, |_| true) {
            super::prefetch::lines_of(self.at(slot));
        }
    }

    /// Indexes the slots of a store read from a snapshot.
    pub fn reindex(&mut self) {
        self.index = KeyIndex::default();
        for slot in (0..self.slots).filter(|&s| self.last_seen[s as usize] != FREE) {
            // Each live slot has a key of its own.
            self.index.insert(self.at(slot).key, slot, |_| false);
        }
    }

    pub fn get(&self, slot: u32) -> &S {
        &self.at(slot).state
    }

    pub fn get_mut(&mut self, slot: u32) -> &mut S {
        &mut self.at_mut(slot).state
    }

    fn at(&self, slot: u32) -> &Slot<S> {
        slot_in(&self.pages, slot)
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
            let slot = self.advance_cursor();
            let seen = self.last_seen[slot as usize];
            if seen != FREE && i64::from(seen) < expire_before {
                self.free_slot(slot);
                expired += 1;
            }
        }
        expired
    }

    fn advance_cursor(&mut self) -> u32 {
        // A compare, not `%`: a division by a size known only at run time is among the
        // slowest instructions, and the rest of a step is a few.
        self.sweep_cursor += 1;
        if self.sweep_cursor >= self.slots {
            self.sweep_cursor = 0;
        }
        self.sweep_cursor
    }

    fn free_slot(&mut self, slot: u32) {
        let key = self.at(slot).key;
        self.index.remove(key, slot);
        self.last_seen[slot as usize] = FREE;
        self.free.push(slot);
    }
}

/// A well-mixed 64-bit value of `x` (splitmix64's finalizer).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn slot_in<S>(pages: &[Vec<Slot<S>>], slot: u32) -> &Slot<S> {
    &pages[slot as usize / PAGE][slot as usize % PAGE]
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNBOUNDED: usize = usize::MAX;

    fn spread(key: u64) -> u64 {
        key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    fn keeps_state_per_key_and_reuses_expired_slots() {
        let mut store = KeyedStore::<u64>::default();
        for key in 0..10_000u64 {
            let found = store.slot(spread(key), 100, 0, UNBOUNDED);
            assert!(found.new);
            *store.get_mut(found.slot) += key;
        }
        assert_eq!(store.len(), 10_000);
        let seven = store.slot(spread(7), 500, 0, UNBOUNDED);
        assert!(!seven.new);
        assert_eq!(*store.get(seven.slot), 7);
        assert_eq!(store.find(spread(8), 101), None, "idle: as good as swept");
        let idle = store.slot(spread(8), 500, 101, UNBOUNDED);
        assert!(idle.new, "an idle key is new again");
        assert_eq!(
            *store.get(idle.slot),
            0,
            "an idle key starts afresh before the sweep frees it"
        );

        // Everything but keys 7 and 8 was last seen at 100: a full sweep expires the rest.
        let expired = store.sweep(10_000, 200);
        assert_eq!((expired, store.len()), (9_998, 2));
        let reused = store.slot(42, 600, 0, UNBOUNDED);
        assert_eq!(*store.get(reused.slot), 0, "a reused slot starts empty");
        assert_eq!(store.slots, 10_000, "no new slot while free ones exist");
        assert_eq!(store.evicted, 0);
    }

    #[test]
    fn a_full_store_forgets_keys_seen_long_ago_for_new_ones() {
        const MAX: usize = 1_000;
        let mut store = KeyedStore::<u64>::default();
        // Keys 0..100 stay active: seen again after every ten new keys.
        for key in 0..100u64 {
            store.slot(spread(key), 1_000, 0, MAX);
        }
        for key in 100..20_000u64 {
            let t = 1_000 + key as i64;
            let found = store.slot(spread(key), t, 0, MAX);
            *store.get_mut(found.slot) = key;
            if key % 10 == 0 {
                for active in 0..100u64 {
                    store.slot(spread(active), t, 0, MAX);
                }
            }
        }
        assert_eq!(store.len(), MAX, "never more keys than the cap");
        assert_eq!(store.slots as usize, MAX, "nor more slots");
        assert_eq!(store.evicted, 20_000 - MAX as u64);
        for active in 0..100u64 {
            assert!(
                store.find(spread(active), 0).is_some(),
                "an active key is never the one seen longest ago in a sample"
            );
        }
        let newest = store
            .find(spread(19_999), 0)
            .expect("the newest key is kept");
        assert_eq!(*store.get(newest), 19_999);
        assert!(
            store.find(spread(100), 0).is_none(),
            "the oldest one-off key went"
        );
    }
}

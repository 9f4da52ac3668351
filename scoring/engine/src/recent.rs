//! The few most recently seen values of something (merchants, countries, devices) with when each
//! was last seen: enough to count distinct values in a window up to `N`, and to tell a value
//! seen before from a new one, in fixed memory.

/// Time value of an empty entry; event times are after 2000, so never 0.
const UNUSED: u32 = 0;

use serde::{Deserialize, Serialize};

/// The `N` keys with the latest last-seen times, and those times (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recent<const N: usize> {
    #[serde(with = "serde_big_array::BigArray")]
    keys: [u32; N],
    #[serde(with = "serde_big_array::BigArray")]
    seen: [u32; N],
}

impl<const N: usize> Default for Recent<N> {
    fn default() -> Self {
        Self {
            keys: [0; N],
            seen: [UNUSED; N],
        }
    }
}

impl<const N: usize> Recent<N> {
    /// Records `key` as seen at `t`. A new key takes the place of the one seen longest ago,
    /// unless it is older than all of them.
    pub fn touch(&mut self, key: u32, t: i64) {
        let t = t.clamp(1, i64::from(u32::MAX)) as u32;
        if let Some(i) = (0..N).find(|&i| self.seen[i] != UNUSED && self.keys[i] == key) {
            self.seen[i] = self.seen[i].max(t);
            return;
        }
        let oldest = (0..N).min_by_key(|&i| self.seen[i]).unwrap_or(0);
        if self.seen[oldest] == UNUSED || self.seen[oldest] < t {
            self.keys[oldest] = key;
            self.seen[oldest] = t;
        }
    }

    /// Distinct keys seen at or after `start`, up to `N`.
    pub fn count_since(&self, start: i64) -> u32 {
        // In the u32 of the times kept, at least 1 so that UNUSED never counts: one compare a
        // key and no branch, so that the compiler can compare the keys side by side.
        let start = start.clamp(1, i64::from(u32::MAX)) as u32;
        self.seen.iter().map(|&s| u32::from(s >= start)).sum()
    }

    /// Whether `key` was seen at or after `start`.
    pub fn contains_since(&self, key: u32, start: i64) -> bool {
        (0..N).any(|i| {
            self.seen[i] != UNUSED && self.keys[i] == key && i64::from(self.seen[i]) >= start
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Counting is exact up to N: the distinct keys last seen at or after `start`, capped.
        #[test]
        fn counts_distinct_keys_up_to_n(
            events in prop::collection::vec((0u32..12, 1_000i64..2_000), 1..80),
            start in 1_000i64..2_100,
        ) {
            let mut recent = Recent::<4>::default();
            let mut last_seen: HashMap<u32, i64> = HashMap::new();
            for &(key, t) in &events {
                recent.touch(key, t);
                let entry = last_seen.entry(key).or_insert(t);
                *entry = (*entry).max(t);
                let distinct = last_seen.values().filter(|&&s| s >= start).count() as u32;
                prop_assert_eq!(recent.count_since(start), distinct.min(4));
            }
        }
    }

    #[test]
    fn knows_recent_keys() {
        let mut recent = Recent::<2>::default();
        recent.touch(7, 100);
        recent.touch(8, 200);
        recent.touch(9, 300); // pushes out 7
        assert!(!recent.contains_since(7, 0));
        assert!(recent.contains_since(8, 150));
        assert!(!recent.contains_since(8, 250));
        recent.touch(1, 50); // older than everything kept: ignored
        assert!(!recent.contains_since(1, 0));
    }
}

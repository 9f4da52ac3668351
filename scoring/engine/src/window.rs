//! Sliding windows as time-bucketed rings.
//!
//! Each horizon is split into [`BUCKETS`] buckets of equal width, aligned to the epoch. The window
//! "horizon H at time T" holds every event whose bucket is one of the `BUCKETS` buckets ending
//! with T's: it reaches back between `H * (BUCKETS - 1) / BUCKETS` and `H`. Each bucket keeps
//! count, sum, sum of squares and max of the amount, so a window's statistics are a fold of
//! `BUCKETS` buckets and memory per key is fixed.
//!
//! The ring's clock is the newest event time it has seen. An event older than the clock (late,
//! within the engine's allowed lateness) goes into its own bucket while that bucket is still in
//! the ring; if it has already left the ring it is outside every window that can still be asked
//! for, so nothing is lost by dropping it.

use serde::{Deserialize, Serialize};
use vigil_models::features::Horizon;

/// Buckets per horizon. Six keeps a card's state well under 1 KiB (see BENCHMARKS.md).
pub const BUCKETS: usize = 6;
const EMPTY: i64 = i64::MIN;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Bucket {
    count: u32,
    sum: f32,
    sum_sq: f32,
    max: f32,
}

impl Bucket {
    fn add(&mut self, amount: f32) {
        self.count = self.count.saturating_add(1);
        self.sum += amount;
        self.sum_sq += amount * amount;
        self.max = self.max.max(amount);
    }
}

/// Statistics of the amounts in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowStats {
    pub count: u32,
    pub sum: f64,
    pub sum_sq: f64,
    pub max: f32,
}

impl WindowStats {
    fn merge(&mut self, b: &Bucket) {
        self.count += b.count;
        self.sum += f64::from(b.sum);
        self.sum_sq += f64::from(b.sum_sq);
        // Amounts are never NaN, so a plain compare (one instruction) instead of `f32::max`.
        if b.max > self.max {
            self.max = b.max;
        }
    }

    /// Mean and population standard deviation (0 and 0 for an empty window; the deviation is 0
    /// for a single event), with one division.
    pub fn mean_and_std(&self) -> (f64, f64) {
        if self.count == 0 {
            return (0.0, 0.0);
        }
        let per_event = 1.0 / f64::from(self.count);
        let mean = self.sum * per_event;
        let variance = (self.sum_sq * per_event - mean * mean).max(0.0);
        (mean, variance.sqrt())
    }
}

/// `H` sliding windows over one key's amounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Windows<const H: usize> {
    clock: i64,
    /// The bucket index of the clock in each horizon (kept, not divided out on every event).
    #[serde(with = "serde_big_array::BigArray")]
    heads: [u32; H],
    #[serde(with = "serde_big_array::BigArray")]
    buckets: [[Bucket; BUCKETS]; H],
}

impl<const H: usize> Default for Windows<H> {
    fn default() -> Self {
        Self {
            clock: EMPTY,
            heads: [0; H],
            buckets: [[Bucket::default(); BUCKETS]; H],
        }
    }
}

const fn width(h: &Horizon) -> i64 {
    h.seconds / BUCKETS as i64
}

/// The bucket index of time `t` (seconds) in each horizon: computed once per event and shared by
/// every key's windows over the same horizons.
pub fn bucket_indices<const H: usize>(horizons: &[Horizon; H], t: i64) -> [u32; H] {
    std::array::from_fn(|h| {
        t.div_euclid(width(&horizons[h]))
            .clamp(0, i64::from(u32::MAX)) as u32
    })
}

fn slot(index: u32) -> usize {
    index as usize % BUCKETS
}

/// The ring slot before `s`, without a division.
fn previous_slot(s: usize) -> usize {
    if s == 0 { BUCKETS - 1 } else { s - 1 }
}

fn next_slot(s: usize) -> usize {
    if s == BUCKETS - 1 { 0 } else { s + 1 }
}

impl<const H: usize> Windows<H> {
    /// The newest event time added, in seconds; `None` before the first.
    pub fn last_time(&self) -> Option<i64> {
        (self.clock != EMPTY).then_some(self.clock)
    }

    /// The window of horizon `h` at the time whose bucket index is `at` (or at the clock, if
    /// that is later).
    pub fn stats(&self, h: usize, at: u32) -> WindowStats {
        let mut stats = WindowStats::default();
        if self.clock == EMPTY {
            return stats;
        }
        let head = self.heads[h];
        // The ring holds the BUCKETS indices up to `head`; a window at a later bucket leaves
        // out its oldest `lag` of them. Newest first, so the sums always add in one order.
        let lag = at.saturating_sub(head) as usize;
        let mut s = slot(head);
        for _ in lag..BUCKETS {
            stats.merge(&self.buckets[h][s]);
            s = previous_slot(s);
        }
        stats
    }

    /// Adds an amount at time `t` (seconds), whose bucket indices are `at`, to every horizon.
    pub fn add(&mut self, t: i64, at: &[u32; H], amount: f32) {
        self.advance(t, at);
        for ((buckets, &index), &head) in self.buckets.iter_mut().zip(at).zip(&self.heads) {
            if index + BUCKETS as u32 > head {
                buckets[slot(index)].add(amount);
            }
        }
    }

    /// Moves the clock forward to `t`, emptying the buckets that leave the ring.
    fn advance(&mut self, t: i64, at: &[u32; H]) {
        if self.clock == EMPTY {
            self.heads = *at;
        } else if t > self.clock {
            for ((buckets, head), &new) in self.buckets.iter_mut().zip(&mut self.heads).zip(at) {
                let leaving = new.saturating_sub(*head);
                if leaving >= BUCKETS as u32 {
                    // The whole ring leaves (a short horizon of a key seen rarely): no slot to
                    // find and step from.
                    *buckets = [Bucket::default(); BUCKETS];
                } else {
                    let mut s = slot(*head);
                    for _ in 0..leaving {
                        s = next_slot(s);
                        buckets[s] = Bucket::default();
                    }
                }
                *head = new;
            }
        } else {
            return;
        }
        self.clock = t;
    }

    /// Reads a bucket every 64 bytes, and the last, so every cache line of the buckets: their
    /// misses are then waited for side by side, not one by one as the features come to each.
    pub fn touch_lines(&self) -> u32 {
        const PER_LINE: usize = 64 / size_of::<Bucket>();
        let buckets = self.buckets.as_flattened();
        let last = buckets.last().map_or(0, |b| b.count);
        buckets
            .iter()
            .step_by(PER_LINE)
            .fold(last, |acc, b| acc ^ b.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vigil_models::features::CARD_HORIZONS;

    /// The window definition computed from the full event list: the events added so far whose
    /// bucket is among the `BUCKETS` ending at max(clock, at).
    fn naive(events: &[(i64, f32)], horizon: &Horizon, at: i64) -> (u32, f64, f64, f32) {
        let w = width(horizon);
        let Some(clock) = events.iter().map(|e| e.0).max() else {
            return (0, 0.0, 0.0, 0.0);
        };
        let newest = clock.max(at).div_euclid(w);
        let mut out = (0u32, 0.0f64, 0.0f64, 0.0f32);
        for &(t, amount) in events {
            let index = t.div_euclid(w);
            if index > newest - BUCKETS as i64 && index <= newest {
                out.0 += 1;
                out.1 += f64::from(amount);
                out.2 += f64::from(amount) * f64::from(amount);
                out.3 = out.3.max(amount);
            }
        }
        out
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-4 * a.abs().max(b.abs()) + 1e-3
    }

    /// Steps forward (sometimes far, sometimes back within a day) with amounts in cents.
    fn events() -> impl Strategy<Value = Vec<(i64, f32)>> {
        let step = prop_oneof![
            4 => 0i64..120,
            3 => 0i64..7_200,
            2 => 0i64..400_000,
            1 => 0i64..5_000_000,
            1 => -86_400i64..0,
        ];
        prop::collection::vec((step, 0u32..500_000), 1..120).prop_map(|steps| {
            let mut t = 1_700_000_000i64;
            steps
                .into_iter()
                .map(|(dt, cents)| {
                    t += dt;
                    (t, cents as f32)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn windows_match_naive_recomputation(events in events(), probe in 0i64..200_000) {
            let mut windows = Windows::<5>::default();
            for (n, &(t, amount)) in events.iter().enumerate() {
                // Asked before each event is added, at the event's own time and a little later.
                for at in [t, t + probe] {
                    let index = bucket_indices(&CARD_HORIZONS, at);
                    for (h, horizon) in CARD_HORIZONS.iter().enumerate() {
                        let got = windows.stats(h, index[h]);
                        let (count, sum, sum_sq, max) = naive(&events[..n], horizon, at);
                        prop_assert_eq!(got.count, count, "count, horizon {}", horizon.name);
                        prop_assert!(close(got.sum, sum), "sum {} vs {}", got.sum, sum);
                        prop_assert!(close(got.sum_sq, sum_sq), "sum_sq {} vs {}", got.sum_sq, sum_sq);
                        prop_assert_eq!(got.max, max, "max, horizon {}", horizon.name);
                    }
                }
                windows.add(t, &bucket_indices(&CARD_HORIZONS, t), amount);
            }
        }
    }

    #[test]
    fn mean_and_std() {
        let mut windows = Windows::<5>::default();
        for (t, amount) in [(0, 100.0), (10, 300.0)] {
            let t = 1_700_000_000 + t;
            windows.add(t, &bucket_indices(&CARD_HORIZONS, t), amount);
        }
        let s = windows.stats(0, bucket_indices(&CARD_HORIZONS, 1_700_000_010)[0]);
        assert_eq!(
            (s.count, s.mean_and_std(), s.max),
            (2, (200.0, 100.0), 300.0)
        );
        // Thirty-one days later every window is empty again.
        let later = windows.stats(
            4,
            bucket_indices(&CARD_HORIZONS, 1_700_000_000 + 31 * 86_400)[4],
        );
        assert_eq!(later, WindowStats::default());
    }
}

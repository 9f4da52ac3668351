//! Drift: the population stability index (PSI) of a model's live scores against the scores it
//! gave its training data. Bins are the training scores' deciles, so each holds a tenth of the
//! training population; PSI = sum over bins of (live - train) * ln(live / train).
//! Rules of thumb: below 0.1 stable, 0.1 to 0.25 moderate shift, above 0.25 a significant one.

use serde::{Deserialize, Serialize};

/// Bins of the reference distribution.
pub const PSI_BINS: usize = 10;
/// Shares are floored at this, so that an empty bin does not make the index infinite.
const FLOOR: f64 = 1e-4;

/// The training distribution of a model's log-odds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreProfile {
    /// The upper edges of the first `PSI_BINS - 1` bins (the last is open).
    edges: Vec<f64>,
    /// The weighted share of training examples in each bin.
    expected: Vec<f64>,
}

impl ScoreProfile {
    /// The weighted deciles of `scores` (each with its weight).
    pub fn fit(scores: &[f64], weights: &[f32]) -> Self {
        assert_eq!(scores.len(), weights.len());
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        let mut edges = Vec::with_capacity(PSI_BINS - 1);
        let mut seen = 0.0;
        for &i in &order {
            seen += f64::from(weights[i]);
            while edges.len() < PSI_BINS - 1
                && seen >= total * (edges.len() + 1) as f64 / PSI_BINS as f64
            {
                edges.push(scores[i]);
            }
        }
        edges.dedup();
        let mut profile = Self {
            expected: vec![0.0; edges.len() + 1],
            edges,
        };
        for (&s, &w) in scores.iter().zip(weights) {
            let b = profile.bin(s);
            profile.expected[b] += f64::from(w) / total;
        }
        profile
    }

    pub fn bins(&self) -> usize {
        self.expected.len()
    }

    /// The bin of a log-odds.
    pub fn bin(&self, score: f64) -> usize {
        self.edges.partition_point(|&e| e < score)
    }

    /// PSI of live counts per bin against the training shares; `None` before any count.
    pub fn psi(&self, counts: &[u64]) -> Option<f64> {
        assert_eq!(counts.len(), self.bins());
        let n: u64 = counts.iter().sum();
        if n == 0 {
            return None;
        }
        Some(
            counts
                .iter()
                .zip(&self.expected)
                .map(|(&c, &e)| {
                    let (a, e) = ((c as f64 / n as f64).max(FLOOR), e.max(FLOOR));
                    (a - e) * (a / e).ln()
                })
                .sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The index computed from its definition: each live score put in its bin by walking the
    /// edges, shares against the training shares.
    fn naive_psi(profile: &ScoreProfile, reference: &[f64], live: &[f64]) -> f64 {
        let bin = |s: f64| profile.edges.iter().take_while(|&&e| e < s).count();
        let share = |scores: &[f64], b: usize| {
            scores.iter().filter(|&&s| bin(s) == b).count() as f64 / scores.len() as f64
        };
        (0..profile.bins())
            .map(|b| {
                let a = share(live, b).max(FLOOR);
                let e = share(reference, b).max(FLOOR);
                (a - e) * (a / e).ln()
            })
            .sum()
    }

    fn counts(profile: &ScoreProfile, live: &[f64]) -> Vec<u64> {
        let mut counts = vec![0; profile.bins()];
        for &s in live {
            counts[profile.bin(s)] += 1;
        }
        counts
    }

    #[test]
    fn the_training_data_itself_has_no_drift_and_a_shift_has_much() {
        let train: Vec<f64> = (0..10_000).map(|i| f64::from(i) / 1000.0).collect();
        let profile = ScoreProfile::fit(&train, &vec![1.0; train.len()]);
        assert_eq!(profile.bins(), PSI_BINS);
        assert!(profile.psi(&counts(&profile, &train)).unwrap() < 1e-6);
        let shifted: Vec<f64> = train.iter().map(|s| s + 3.0).collect();
        assert!(profile.psi(&counts(&profile, &shifted)).unwrap() > 0.25);
        assert_eq!(profile.psi(&[0; PSI_BINS]), None);
    }

    #[test]
    fn weights_count_as_repeated_examples() {
        let scores = [1.0, 2.0, 3.0, 4.0];
        let weighted = ScoreProfile::fit(&scores, &[1.0, 1.0, 1.0, 7.0]);
        let repeated = [1.0, 2.0, 3.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0];
        let plain = ScoreProfile::fit(&repeated, &[1.0; 10]);
        assert_eq!(weighted, plain);
    }

    proptest! {
        #[test]
        fn psi_matches_its_definition(
            reference in proptest::collection::vec(-10.0f64..10.0, 1..300),
            live in proptest::collection::vec(-12.0f64..12.0, 1..300),
        ) {
            let profile = ScoreProfile::fit(&reference, &vec![1.0; reference.len()]);
            let fast = profile.psi(&counts(&profile, &live)).unwrap();
            let naive = naive_psi(&profile, &reference, &live);
            prop_assert!((fast - naive).abs() < 1e-9, "{} vs {}", fast, naive);
        }
    }
}

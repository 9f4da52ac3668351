//! Quantile bins: each feature's values cut into at most 255 ranges, so that training looks at
//! one byte per value and tries at most 254 thresholds per feature.

use serde::{Deserialize, Serialize};

use crate::features::FEATURE_COUNT;

/// Bin 0 holds the missing values; bins 1..=255 the ranges between edges.
pub const MISSING_BIN: u8 = 0;
/// At most this many edges per feature (255 value bins).
const MAX_EDGES: usize = 254;

/// The cut points of every feature, fitted on a sample of the training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bins {
    /// Per feature, ascending and distinct: a value `v` falls in bin `1 + #(edges < v)`, so
    /// `bin <= b` holds exactly when `v <= edges[b - 1]`.
    edges: Vec<Vec<f32>>,
}

impl Bins {
    /// Fits edges at the quantiles of each feature's non-missing values among `rows`
    /// (row-major, `FEATURE_COUNT` values each). A feature with few distinct values gets one
    /// edge per value.
    pub fn fit(rows: &[f32]) -> Self {
        let mut values: Vec<f32> = Vec::with_capacity(rows.len() / FEATURE_COUNT);
        let edges = (0..FEATURE_COUNT)
            .map(|f| {
                values.clear();
                values.extend(
                    rows.iter()
                        .skip(f)
                        .step_by(FEATURE_COUNT)
                        .filter(|v| !v.is_nan()),
                );
                values.sort_unstable_by(f32::total_cmp);
                quantile_edges(&values)
            })
            .collect();
        Self { edges }
    }

    pub fn bin(&self, feature: usize, value: f32) -> u8 {
        if value.is_nan() {
            return MISSING_BIN;
        }
        1 + self.edges[feature].partition_point(|&e| e < value) as u8
    }

    /// The value threshold of "bin <= b".
    pub fn threshold(&self, feature: usize, b: u8) -> f32 {
        self.edges[feature][usize::from(b) - 1]
    }

    /// How many value bins feature `f` has.
    pub fn value_bins(&self, feature: usize) -> usize {
        self.edges[feature].len() + 1
    }

    /// `rows` (row-major f32) as row-major bins.
    pub fn apply(&self, rows: &[f32]) -> Vec<u8> {
        rows.iter()
            .enumerate()
            .map(|(i, &v)| self.bin(i % FEATURE_COUNT, v))
            .collect()
    }
}

/// Distinct edges at evenly spaced ranks of sorted `values`.
fn quantile_edges(sorted: &[f32]) -> Vec<f32> {
    let mut distinct: Vec<f32> = sorted.to_vec();
    distinct.dedup();
    if distinct.len() <= MAX_EDGES + 1 {
        // Every distinct value but the largest is an edge: each value its own bin.
        distinct.pop();
        return distinct;
    }
    let mut edges: Vec<f32> = (1..=MAX_EDGES)
        .map(|k| sorted[k * (sorted.len() - 1) / (MAX_EDGES + 1)])
        .collect();
    edges.dedup();
    edges
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one_feature(values: &[f32]) -> Vec<f32> {
        values
            .iter()
            .flat_map(|&v| {
                let mut row = [0.0; FEATURE_COUNT];
                row[0] = v;
                row
            })
            .collect()
    }

    #[test]
    fn flags_get_a_bin_per_value_and_missing_its_own() {
        let bins = Bins::fit(&one_feature(&[0.0, 1.0, 1.0, f32::NAN, 0.0]));
        assert_eq!(bins.bin(0, f32::NAN), MISSING_BIN);
        assert_eq!(bins.bin(0, 0.0), 1);
        assert_eq!(bins.bin(0, 1.0), 2);
        assert_eq!(bins.threshold(0, 1), 0.0);
        assert_eq!(bins.value_bins(0), 2);
    }

    proptest! {
        /// "bin <= b" and "value <= threshold(b)" agree for every value and threshold, and
        /// bins never exceed 255.
        #[test]
        fn bins_and_thresholds_agree(
            fit in proptest::collection::vec(-1e6f32..1e6, 1..2000),
            probe in proptest::collection::vec(-2e6f32..2e6, 1..200),
        ) {
            let bins = Bins::fit(&one_feature(&fit));
            for &v in &probe {
                let bin = bins.bin(0, v);
                prop_assert!(bin >= 1);
                for b in 1..bins.value_bins(0) as u8 {
                    prop_assert_eq!(bin <= b, v <= bins.threshold(0, b));
                }
            }
        }
    }
}

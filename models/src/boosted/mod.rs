//! Gradient-boosted decision trees for logistic loss: the batch model that retraining jobs fit
//! and the scoring service serves as champion or shadow.
//!
//! Written here (histogram-based, in the manner of `LightGBM` and `XGBoost`'s `hist`) rather than
//! taken from a crate: linfa has single decision trees but no boosting, and the boosting crates
//! we found hold the training matrix as f64 (8 bytes per value, 6.3 GB at 10M rows), where this
//! one holds one byte per value. See docs/ARCHITECTURE.md.

mod bins;
mod train;

use serde::{Deserialize, Serialize};

use crate::features::{FEATURE_COUNT, FeatureVector};
pub use bins::Bins;
pub use train::{BoostedConfig, Progress, fit};

/// A leaf's marker in place of a feature index.
const LEAF: u16 = u16::MAX;

/// One node of a tree. Every node has a value (what the tree would output if it stopped here),
/// so that a score can be split into feature contributions along its path.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    feature: u16,
    /// Where a missing value goes.
    missing_left: bool,
    /// Values `<= threshold` go left.
    threshold: f32,
    left: u32,
    right: u32,
    value: f32,
}

impl Node {
    fn leaf(value: f32) -> Self {
        Self {
            feature: LEAF,
            missing_left: false,
            threshold: 0.0,
            left: 0,
            right: 0,
            value,
        }
    }

    fn is_leaf(&self) -> bool {
        self.feature == LEAF
    }

    fn next(&self, x: &FeatureVector) -> u32 {
        let v = x.0[usize::from(self.feature)];
        let left = if v.is_nan() {
            self.missing_left
        } else {
            v <= self.threshold
        };
        if left { self.left } else { self.right }
    }
}

/// One tree, root first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    fn output(&self, x: &FeatureVector) -> f32 {
        let mut node = &self.nodes[0];
        while !node.is_leaf() {
            node = &self.nodes[node.next(x) as usize];
        }
        node.value
    }

    /// The output, with each step's change of value credited to the feature that made it.
    fn explain(&self, x: &FeatureVector, contributions: &mut [f32; FEATURE_COUNT]) -> f32 {
        let mut node = &self.nodes[0];
        while !node.is_leaf() {
            let child = &self.nodes[node.next(x) as usize];
            contributions[usize::from(node.feature)] += child.value - node.value;
            node = child;
        }
        node.value
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// A fitted ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoostedTrees {
    /// The starting log-odds, in the class-weighted space the trees were fitted in.
    base: f64,
    /// `ln(positive_weight)`: taken back out of every score, so that scores are probabilities.
    class_log_odds: f64,
    trees: Vec<Tree>,
}

impl BoostedTrees {
    /// Calibrated log-odds of fraud.
    pub fn logit(&self, x: &FeatureVector) -> f64 {
        let sum: f64 = self.trees.iter().map(|t| f64::from(t.output(x))).sum();
        self.base + sum - self.class_log_odds
    }

    /// Calibrated log-odds of fraud, adding each feature's share of it to `contributions`
    /// (the path attribution of Saabas: the change of a node's value at each split).
    pub fn explain(&self, x: &FeatureVector, contributions: &mut [f32; FEATURE_COUNT]) -> f64 {
        let sum: f64 = self
            .trees
            .iter()
            .map(|t| f64::from(t.explain(x, contributions)))
            .sum();
        self.base + sum - self.class_log_odds
    }

    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }
}

#[cfg(test)]
mod tests;

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

/// Trees walked side by side: their node loads are independent, so the processor has several
/// in flight instead of waiting on one path at a time. Measured with `perf` on a backtest with a
/// 150-tree champion: the walk's share of the time fell from 41% to 36% (about 18% faster);
/// the rest is mostly mispredicted branches, which side by side does not change.
const LANES: usize = 4;

impl BoostedTrees {
    /// Calibrated log-odds of fraud.
    pub fn logit(&self, x: &FeatureVector) -> f64 {
        self.walk(x, |_, _| {})
    }

    /// Calibrated log-odds of fraud, adding each feature's share of it to `contributions`
    /// (the path attribution of Saabas: the change of a node's value at each split).
    pub fn explain(&self, x: &FeatureVector, contributions: &mut [f32; FEATURE_COUNT]) -> f64 {
        self.walk(x, |feature, change| {
            contributions[usize::from(feature)] += change;
        })
    }

    /// Sums the trees' outputs (in tree order, so that every walk gives the same bits), telling
    /// `credit` each split's feature and change of value.
    fn walk(&self, x: &FeatureVector, mut credit: impl FnMut(u16, f32)) -> f64 {
        let groups = self.trees.chunks_exact(LANES);
        let rest = groups.remainder();
        let mut sum = 0.0f64;
        for group in groups {
            let mut at = [0u32; LANES];
            loop {
                let mut moved = false;
                for (tree, at) in group.iter().zip(&mut at) {
                    let node = &tree.nodes[*at as usize];
                    if node.is_leaf() {
                        continue;
                    }
                    let next = node.next(x);
                    credit(node.feature, tree.nodes[next as usize].value - node.value);
                    *at = next;
                    moved = true;
                }
                if !moved {
                    break;
                }
            }
            for (tree, &at) in group.iter().zip(&at) {
                sum += f64::from(tree.nodes[at as usize].value);
            }
        }
        for tree in rest {
            let mut node = &tree.nodes[0];
            while !node.is_leaf() {
                let child = &tree.nodes[node.next(x) as usize];
                credit(node.feature, child.value - node.value);
                node = child;
            }
            sum += f64::from(node.value);
        }
        self.base + sum - self.class_log_odds
    }

    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }
}

#[cfg(test)]
mod tests;

//! Gradient-boosted decision trees for logistic loss: the batch model that retraining jobs fit
//! and the scoring service serves as champion or shadow.
//!
//! Written here (histogram-based, in the manner of `LightGBM` and `XGBoost`'s `hist`) rather than
//! taken from a crate: linfa has single decision trees but no boosting, and we need one byte per
//! training value, calibrated weights, determinism and path attributions together. See
//! docs/ARCHITECTURE.md.

mod bins;
mod train;

use serde::{Deserialize, Serialize};

use crate::features::{FEATURE_COUNT, FeatureVector};
pub use bins::Bins;
pub use train::{BoostedConfig, Progress, fit};

/// One node of a tree. Every node has a value (what the tree would output if it stopped here),
/// so that a score can be split into feature contributions along its path. A leaf leads to
/// itself: a walk takes the model's depth in steps whatever the path, with no test for leaves.
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
    /// Leaf `index` of its tree.
    fn leaf(index: u32, value: f32) -> Self {
        Self {
            feature: 0,
            missing_left: true,
            threshold: 0.0,
            left: index,
            right: index,
            value,
        }
    }

    /// Written without branches: which way a value goes is data the processor cannot guess.
    fn next(&self, x: &FeatureVector) -> u32 {
        let v = x.0[usize::from(self.feature)];
        let left = (v <= self.threshold) | (v.is_nan() & self.missing_left);
        if left { self.left } else { self.right }
    }
}

/// One tree, root first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// Whether every link stays in the tree and every split reads a feature.
    fn check(&self) -> Result<(), String> {
        let n = self.nodes.len() as u32;
        if n == 0 {
            return Err("an empty tree".into());
        }
        let bad = self.nodes.iter().position(|node| {
            node.left >= n || node.right >= n || usize::from(node.feature) >= FEATURE_COUNT
        });
        match bad {
            Some(i) => Err(format!(
                "node {i} links outside its tree or reads no feature"
            )),
            None => Ok(()),
        }
    }
}

/// A fitted ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoostedTrees {
    /// The starting log-odds, in the class-weighted space the trees were fitted in.
    base: f64,
    /// `ln(positive_weight)`: taken back out of every score, so that scores are probabilities.
    class_log_odds: f64,
    /// Steps from a root to the deepest leaf of any tree.
    depth: u32,
    trees: Vec<Tree>,
}

/// Trees walked side by side: their node loads are independent, so the processor has several
/// in flight instead of waiting on one path at a time (the measurements are in git's history).
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
    /// `credit` each step's feature and change of value (nothing, once at a leaf).
    fn walk(&self, x: &FeatureVector, mut credit: impl FnMut(u16, f32)) -> f64 {
        let mut sum = 0.0f64;
        for group in self.trees.chunks(LANES) {
            let mut at = [0u32; LANES];
            for _ in 0..self.depth {
                for (tree, at) in group.iter().zip(&mut at) {
                    let node = &tree.nodes[*at as usize];
                    let next = node.next(x);
                    credit(node.feature, tree.nodes[next as usize].value - node.value);
                    *at = next;
                }
            }
            for (tree, &at) in group.iter().zip(&at) {
                sum += f64::from(tree.nodes[at as usize].value);
            }
        }
        self.base + sum - self.class_log_odds
    }

    /// Whether the trees can be walked: links inside their trees, features in the vector, a
    /// depth no walk needs more than.
    pub fn check(&self) -> Result<(), String> {
        if self.depth > 64 {
            return Err(format!("a depth of {}", self.depth));
        }
        for (i, tree) in self.trees.iter().enumerate() {
            tree.check().map_err(|e| format!("tree {i}: {e}"))?;
        }
        Ok(())
    }

    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }
}

#[cfg(test)]
mod tests;

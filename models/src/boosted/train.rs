//! Fitting: Newton boosting of depth-limited trees on binned features. Each node's split is
//! found from a histogram of gradient and hessian sums per (feature, bin); a child's histogram
//! is built only for the smaller child, the larger one's being its parent's minus it.

use serde::{Deserialize, Serialize};

use super::bins::{Bins, MISSING_BIN};
use super::{BoostedTrees, Node, Tree};
use crate::features::FEATURE_COUNT;
use crate::math::{ln, sigmoid};
use crate::{Error, Result};

/// Cells of one feature's histogram: the missing bin and up to 255 value bins.
const CELLS: usize = 256;
/// Rows bins are fitted on, at most (evenly spaced over the training rows).
const BIN_SAMPLE: usize = 200_000;
/// Below this many rows a histogram is built on one thread: a thread costs more than it saves.
const PARALLEL_ROWS: usize = 50_000;

/// Hyper-parameters of the boosted trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoostedConfig {
    pub trees: usize,
    pub max_depth: usize,
    /// Shrinkage of each tree's output.
    pub learning_rate: f64,
    /// L2 regularization of leaf values.
    pub l2: f64,
    /// A child needs at least this much hessian (about: examples x p(1-p)) to be split off.
    pub min_child_weight: f64,
    /// How much more a fraud counts than a genuine example (class imbalance); taken back out
    /// of the scores, which stay calibrated probabilities.
    pub positive_weight: f64,
    /// Threads that build histograms. Part of the model's definition: a different count sums in
    /// a different order.
    pub threads: usize,
}

impl Default for BoostedConfig {
    fn default() -> Self {
        Self {
            trees: 150,
            max_depth: 6,
            learning_rate: 0.1,
            l2: 1.0,
            min_child_weight: 1.0,
            positive_weight: 5.0,
            threads: 2,
        }
    }
}

impl BoostedConfig {
    pub fn validate(&self) -> Result<()> {
        let fail = |m: &str| Err(Error::Config(m.to_owned()));
        if self.trees == 0 || self.max_depth == 0 || self.threads == 0 {
            return fail("trees, max_depth and threads must be at least 1");
        }
        if self.max_depth > 16 {
            return fail("max_depth must be at most 16");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return fail("learning_rate must be in (0, 1]");
        }
        if !(self.l2 >= 0.0 && self.min_child_weight >= 0.0 && self.positive_weight > 0.0) {
            return fail("l2 and min_child_weight must be >= 0 and positive_weight > 0");
        }
        Ok(())
    }
}

/// Told after each tree.
pub type Progress<'a> = &'a (dyn Fn(usize) + Sync);

/// Fits trees to `rows` (row-major, `FEATURE_COUNT` f32 each, `NaN` missing) with their labels
/// and sample weights (a genuine example sampled at rate r weighs 1/r). Also returns each
/// row's calibrated log-odds under the fitted model.
pub fn fit(
    config: &BoostedConfig,
    rows: &[f32],
    labels: &[bool],
    weights: &[f32],
    progress: Progress<'_>,
) -> Result<(BoostedTrees, Vec<f64>)> {
    config.validate()?;
    let n = labels.len();
    assert_eq!(rows.len(), n * FEATURE_COUNT);
    assert_eq!(weights.len(), n);
    let weights: Vec<f32> = weights
        .iter()
        .zip(labels)
        .map(|(&w, &fraud)| {
            if fraud {
                w * config.positive_weight as f32
            } else {
                w
            }
        })
        .collect();
    let (mut positive, mut negative) = (0.0f64, 0.0f64);
    for (&w, &fraud) in weights.iter().zip(labels) {
        if fraud {
            positive += f64::from(w);
        } else {
            negative += f64::from(w);
        }
    }
    if positive == 0.0 || negative == 0.0 {
        return Err(Error::Training(
            "the training examples need both frauds and genuine payments".into(),
        ));
    }
    let bins = Bins::fit(&sample_rows(rows, n));
    let binned = bins.apply(rows);
    let base = ln(positive / negative);
    let mut margins = vec![base; n];
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut gradients = vec![[0f32; 2]; n];
    let mut trees = Vec::with_capacity(config.trees);
    let mut depth = 0;
    for t in 0..config.trees {
        for (((g, &m), &w), &fraud) in gradients.iter_mut().zip(&margins).zip(&weights).zip(labels)
        {
            let p = sigmoid(m);
            let w = f64::from(w);
            *g = [
                (w * (p - f64::from(u8::from(fraud)))) as f32,
                (w * p * (1.0 - p)).max(1e-12) as f32,
            ];
        }
        let mut grower = Grower {
            config,
            bins: &bins,
            binned: &binned,
            gradients: &gradients,
            margins: &mut margins,
            nodes: vec![],
            depth: 0,
        };
        let root = grower.histogram(&order);
        grower.grow(&mut order, root, 0);
        depth = depth.max(grower.depth);
        trees.push(Tree {
            nodes: grower.nodes,
        });
        progress(t + 1);
    }
    let class_log_odds = ln(config.positive_weight);
    for m in &mut margins {
        *m -= class_log_odds;
    }
    let model = BoostedTrees {
        base,
        class_log_odds,
        depth,
        trees,
    };
    Ok((model, margins))
}

/// Up to `BIN_SAMPLE` rows, evenly spaced.
fn sample_rows(rows: &[f32], n: usize) -> Vec<f32> {
    let step = n.div_ceil(BIN_SAMPLE).max(1);
    rows.chunks_exact(FEATURE_COUNT)
        .step_by(step)
        .flatten()
        .copied()
        .collect()
}

/// Gradient and hessian sums per (feature, bin).
type Histogram = Vec<[f64; 2]>;

#[derive(Debug, Clone, Copy)]
struct Split {
    feature: usize,
    /// Rows with a value bin `<= bin` go left.
    bin: u8,
    missing_left: bool,
    gain: f64,
}

impl Split {
    fn goes_left(&self, bin: u8) -> bool {
        if bin == MISSING_BIN {
            self.missing_left
        } else {
            bin <= self.bin
        }
    }
}

struct Grower<'a> {
    config: &'a BoostedConfig,
    bins: &'a Bins,
    binned: &'a [u8],
    gradients: &'a [[f32; 2]],
    margins: &'a mut [f64],
    nodes: Vec<Node>,
    /// The deepest leaf's depth so far.
    depth: u32,
}

impl Grower<'_> {
    fn histogram(&self, rows: &[u32]) -> Histogram {
        let threads = self.config.threads;
        if threads == 1 || rows.len() < PARALLEL_ROWS {
            return histogram_of(self.binned, self.gradients, rows);
        }
        let chunk = rows.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = rows
                .chunks(chunk)
                .map(|part| scope.spawn(|| histogram_of(self.binned, self.gradients, part)))
                .collect();
            let mut parts = parts
                .into_iter()
                .map(|p| p.join().expect("histogram threads do not panic"));
            let mut total = parts.next().expect("at least one part");
            for part in parts {
                for (t, p) in total.iter_mut().zip(&part) {
                    t[0] += p[0];
                    t[1] += p[1];
                }
            }
            total
        })
    }

    /// Grows the subtree of `rows` (whose histogram is `hist`) and returns its root's index.
    fn grow(&mut self, rows: &mut [u32], mut hist: Histogram, depth: usize) -> u32 {
        let (g, h) = hist[..CELLS]
            .iter()
            .fold((0.0, 0.0), |(g, h), c| (g + c[0], h + c[1]));
        let value = (-g / (h + self.config.l2) * self.config.learning_rate) as f32;
        let index = self.nodes.len() as u32;
        self.nodes.push(Node::leaf(index, value));
        let split = if depth < self.config.max_depth {
            self.best_split(&hist, g, h)
        } else {
            None
        };
        let Some(split) = split else {
            self.depth = self.depth.max(depth as u32);
            for &r in rows.iter() {
                self.margins[r as usize] += f64::from(value);
            }
            return index;
        };
        let binned = self.binned;
        let at = partition(rows, |r| {
            split.goes_left(binned[r as usize * FEATURE_COUNT + split.feature])
        });
        let (left_rows, right_rows) = rows.split_at_mut(at);
        let left_is_smaller = left_rows.len() <= right_rows.len();
        let smaller = self.histogram(if left_is_smaller {
            left_rows
        } else {
            right_rows
        });
        for (cell, s) in hist.iter_mut().zip(&smaller) {
            cell[0] -= s[0];
            cell[1] -= s[1];
        }
        let (left_hist, right_hist) = if left_is_smaller {
            (smaller, hist)
        } else {
            (hist, smaller)
        };
        let left = self.grow(left_rows, left_hist, depth + 1);
        let right = self.grow(right_rows, right_hist, depth + 1);
        self.nodes[index as usize] = Node {
            feature: split.feature as u16,
            missing_left: split.missing_left,
            threshold: self.bins.threshold(split.feature, split.bin),
            left,
            right,
            value,
        };
        index
    }

    fn best_split(&self, hist: &Histogram, g: f64, h: f64) -> Option<Split> {
        let l2 = self.config.l2;
        let min_child = self.config.min_child_weight.max(1e-9);
        let parent = g * g / (h + l2);
        let mut best: Option<Split> = None;
        for feature in 0..FEATURE_COUNT {
            let cells = &hist[feature * CELLS..(feature + 1) * CELLS];
            let [g_missing, h_missing] = cells[usize::from(MISSING_BIN)];
            let sides: &[bool] = if h_missing > 0.0 {
                &[true, false]
            } else {
                &[true]
            };
            let (mut g_values, mut h_values) = (0.0, 0.0);
            // Threshold `b` sends value bins 1..=b left; the last bin alone would split nothing.
            let thresholds = &cells[1..self.bins.value_bins(feature)];
            for ([g_bin, h_bin], b) in thresholds.iter().zip(1u8..) {
                g_values += g_bin;
                h_values += h_bin;
                for &missing_left in sides {
                    let (gl, hl) = if missing_left {
                        (g_values + g_missing, h_values + h_missing)
                    } else {
                        (g_values, h_values)
                    };
                    let (gr, hr) = (g - gl, h - hl);
                    if hl < min_child || hr < min_child {
                        continue;
                    }
                    let gain = gl * gl / (hl + l2) + gr * gr / (hr + l2) - parent;
                    if gain > best.map_or(1e-9, |s| s.gain) {
                        best = Some(Split {
                            feature,
                            bin: b,
                            missing_left,
                            gain,
                        });
                    }
                }
            }
        }
        best
    }
}

fn histogram_of(binned: &[u8], gradients: &[[f32; 2]], rows: &[u32]) -> Histogram {
    let mut hist = vec![[0.0f64; 2]; FEATURE_COUNT * CELLS];
    for &r in rows {
        let r = r as usize;
        let [g, h] = gradients[r];
        let (g, h) = (f64::from(g), f64::from(h));
        let row = &binned[r * FEATURE_COUNT..(r + 1) * FEATURE_COUNT];
        for (f, &bin) in row.iter().enumerate() {
            let cell = &mut hist[f * CELLS + usize::from(bin)];
            cell[0] += g;
            cell[1] += h;
        }
    }
    hist
}

/// Moves the rows for which `left` holds to the front; returns how many there are.
fn partition(rows: &mut [u32], left: impl Fn(u32) -> bool) -> usize {
    let mut at = 0;
    for i in 0..rows.len() {
        if left(rows[i]) {
            rows.swap(at, i);
            at += 1;
        }
    }
    at
}

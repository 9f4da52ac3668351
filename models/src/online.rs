//! Online logistic regression: FTRL-Proximal (`McMahan` et al., "Ad Click Prediction: a View from
//! the Trenches", 2013) on standardized features, with class imbalance handled by weighting frauds
//! up and sampling genuine examples down.
//!
//! Written here rather than taken from linfa-ftrl: linfa-ftrl starts from random weights drawn
//! from the thread RNG (so two runs differ), has no intercept and no sample weights, and
//! allocates several arrays per update. See docs/ARCHITECTURE.md and `benches/online.rs`.

use serde::{Deserialize, Serialize};

use crate::boosted::BoostedTrees;
use crate::cpu::with_avx2_if_present;
use crate::features::{FEATURE_COUNT, FeatureVector, Transform, transforms};
use crate::math::{ln, sigmoid, signed_ln1p};
use crate::{Error, Result};

/// How many feature contributions a score explains.
pub const TOP_CONTRIBUTIONS: usize = 3;
/// Standardized inputs are clipped to this many standard deviations, so that one outlier cannot
/// swing a score.
const CLIP: f32 = 8.0;
/// Index of the intercept among the learned coordinates.
const BIAS: usize = FEATURE_COUNT;

/// Hyper-parameters of the online model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineConfig {
    /// FTRL-Proximal learning-rate scale (alpha).
    pub alpha: f64,
    /// FTRL-Proximal learning-rate smoothing (beta).
    pub beta: f64,
    /// L1 regularization; drives the weights of uninformative features to exactly zero.
    pub l1: f64,
    /// L2 regularization.
    pub l2: f64,
    /// How much more a fraud example counts than a genuine one (class imbalance).
    pub positive_weight: f64,
    /// The share of genuine examples the model learns from, each counting 1 / rate; chosen by a
    /// hash of the transaction id, so the same ones are chosen on every run.
    pub negative_sample_rate: f64,
    /// The fraud rate assumed before anything has been learned.
    pub prior_fraud_rate: f64,
    /// The model's opinion counts only once it has learned from this many frauds and ten times
    /// as many genuine examples; before, its score is the prior. A model that has seen one class
    /// alone ranks no better than chance.
    pub warmup_frauds: u64,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            beta: 1.0,
            l1: 0.1,
            l2: 1.0,
            positive_weight: 10.0,
            negative_sample_rate: 0.05,
            prior_fraud_rate: 0.005,
            warmup_frauds: 20,
        }
    }
}

impl OnlineConfig {
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::Config(format!("{name} must be > 0")))
            }
        };
        positive("alpha", self.alpha)?;
        positive("positive_weight", self.positive_weight)?;
        if !(self.beta >= 0.0 && self.l1 >= 0.0 && self.l2 >= 0.0) {
            return Err(Error::Config("beta, l1 and l2 must be >= 0".into()));
        }
        if !(self.negative_sample_rate > 0.0 && self.negative_sample_rate <= 1.0) {
            return Err(Error::Config(
                "negative_sample_rate must be in (0, 1]".into(),
            ));
        }
        if !(self.prior_fraud_rate > 0.0 && self.prior_fraud_rate < 1.0) {
            return Err(Error::Config("prior_fraud_rate must be in (0, 1)".into()));
        }
        Ok(())
    }
}

/// How much one feature pushed a score up, in log-odds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contribution {
    pub feature: u16,
    pub log_odds: f32,
}

/// The model's opinion of one transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelScore {
    /// Calibrated log-odds of fraud (the class weighting is taken back out).
    pub logit: f64,
    /// The base's part of it: the champion's log-odds (the prior's without one).
    pub base_logit: f64,
    /// The features that raised the score most, largest first.
    pub top: [Option<Contribution>; TOP_CONTRIBUTIONS],
}

/// Running mean and variance of each transformed feature (Welford), for standardization.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Scaler {
    count: Vec<f64>,
    mean: Vec<f64>,
    m2: Vec<f64>,
    /// `mean` and `1 / std` as f32, refreshed on every observation, for the scoring path.
    center: Vec<f32>,
    scale: Vec<f32>,
    observed: u64,
}

/// Examples between refreshes of the scaler's scoring copy (after the first few).
const REFRESH_EVERY: u64 = 32;

impl Scaler {
    fn new() -> Self {
        Self {
            count: vec![0.0; FEATURE_COUNT],
            mean: vec![0.0; FEATURE_COUNT],
            m2: vec![0.0; FEATURE_COUNT],
            center: vec![0.0; FEATURE_COUNT],
            scale: vec![1.0; FEATURE_COUNT],
            observed: 0,
        }
    }

    /// Welford's update of each feature's running mean and variance; a missing value (NaN)
    /// leaves its feature as it was. Every feature computed and the missing ones' results
    /// dropped, not branched on, so that the loop vectorizes.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn observe(&mut self, transformed: &[f32; FEATURE_COUNT]) {
        let count = &mut self.count[..FEATURE_COUNT];
        let mean = &mut self.mean[..FEATURE_COUNT];
        let m2 = &mut self.m2[..FEATURE_COUNT];
        for i in 0..FEATURE_COUNT {
            let t = f64::from(transformed[i]);
            let count_new = count[i] + 1.0;
            let delta = t - mean[i];
            let mean_new = mean[i] + delta / count_new;
            let m2_new = m2[i] + delta * (t - mean_new);
            let seen = !t.is_nan();
            count[i] = if seen { count_new } else { count[i] };
            mean[i] = if seen { mean_new } else { mean[i] };
            m2[i] = if seen { m2_new } else { m2[i] };
        }
        self.observed += 1;
        // The scoring copy follows the running statistics closely enough when refreshed every
        // few examples, and each refresh costs a square root and a division per feature.
        if self.observed <= REFRESH_EVERY || self.observed.is_multiple_of(REFRESH_EVERY) {
            self.refresh();
        }
    }

    /// `mean` and `1 / std` per feature as of the last refresh, for the scoring path.
    fn scoring(&self) -> (&[f32; FEATURE_COUNT], &[f32; FEATURE_COUNT]) {
        (per_feature(&self.center), per_feature(&self.scale))
    }

    fn refresh(&mut self) {
        for i in 0..FEATURE_COUNT {
            self.center[i] = self.mean[i] as f32;
            if self.count[i] >= 2.0 {
                let std = (self.m2[i] / (self.count[i] - 1.0)).sqrt();
                self.scale[i] = (1.0 / std.max(1e-3)) as f32;
            }
        }
    }
}

/// FTRL-Proximal state per coordinate (the features, then the intercept).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ftrl {
    z: Vec<f64>,
    n: Vec<f64>,
    /// The weights, kept up to date on every update so that scoring is a plain dot product.
    w: Vec<f64>,
}

impl Ftrl {
    fn new() -> Self {
        Self {
            z: vec![0.0; FEATURE_COUNT + 1],
            n: vec![0.0; FEATURE_COUNT + 1],
            w: vec![0.0; FEATURE_COUNT + 1],
        }
    }

    /// One step on the gradient `g * x_i` of every coordinate with a non-zero input.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn update(&mut self, config: &OnlineConfig, inputs: &[f32; FEATURE_COUNT], g: f64) {
        let (z, n, w) = (
            &mut self.z[..=BIAS],
            &mut self.n[..=BIAS],
            &mut self.w[..=BIAS],
        );
        for i in 0..FEATURE_COUNT {
            ftrl_step(
                config,
                f64::from(inputs[i]),
                g,
                &mut z[i],
                &mut n[i],
                &mut w[i],
            );
        }
        // The intercept is the last coordinate, with an input of 1.
        ftrl_step(config, 1.0, g, &mut z[BIAS], &mut n[BIAS], &mut w[BIAS]);
    }
}

/// One coordinate's FTRL-Proximal step; a zero input leaves it as it was. Computed and then
/// dropped for a zero input, not branched on, so that the loop over coordinates vectorizes.
#[allow(clippy::inline_always)]
#[inline(always)]
fn ftrl_step(
    config: &OnlineConfig,
    input: f64,
    gradient: f64,
    z: &mut f64,
    n: &mut f64,
    w: &mut f64,
) {
    let gi = gradient * input;
    let n_new = *n + gi * gi;
    let sigma = (n_new.sqrt() - n.sqrt()) / config.alpha;
    let z_new = *z + (gi - sigma * *w);
    let w_new = if z_new.abs() <= config.l1 {
        0.0
    } else {
        -(z_new - config.l1.copysign(z_new))
            / ((config.beta + n_new.sqrt()) / config.alpha + config.l2)
    };
    let moved = input != 0.0;
    *z = if moved { z_new } else { *z };
    *n = if moved { n_new } else { *n };
    *w = if moved { w_new } else { *w };
}

/// The online model: standardization, FTRL-Proximal and the sampling policy.
///
/// It learns on top of a base: the prior fraud rate, or a batch model (the champion) whose
/// log-odds it corrects, learning the residual from labels as they arrive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OnlineModel {
    config: OnlineConfig,
    /// Log-odds derived from `config` once, not on every score: the prior's, and the weight of
    /// frauds (taken back out of a score).
    prior_log_odds: f64,
    fraud_weight_log_odds: f64,
    scaler: Scaler,
    ftrl: Ftrl,
    /// The feature weights as f32, for the scoring path.
    weights: Vec<f32>,
    positives: u64,
    negatives: u64,
}

impl OnlineModel {
    pub fn new(config: OnlineConfig) -> Result<Self> {
        config.validate()?;
        let p = config.prior_fraud_rate;
        Ok(Self {
            prior_log_odds: ln(p / (1.0 - p)),
            fraud_weight_log_odds: ln(config.positive_weight),
            config,
            scaler: Scaler::new(),
            ftrl: Ftrl::new(),
            weights: vec![0.0; FEATURE_COUNT],
            positives: 0,
            negatives: 0,
        })
    }

    /// Forgets what was learned (not the feature statistics) and warms up again: for a new
    /// base, whose errors the old weights did not correct.
    pub fn rebase(&mut self) {
        self.ftrl = Ftrl::new();
        self.weights = vec![0.0; FEATURE_COUNT];
        self.positives = 0;
        self.negatives = 0;
    }

    /// Examples learned from so far: (frauds, genuine).
    pub fn examples(&self) -> (u64, u64) {
        (self.positives, self.negatives)
    }

    /// Transformed and standardized inputs; a missing feature is 0 (the mean: no opinion).
    /// Written as straight passes over arrays, without branches, so that they vectorize.
    fn standardize(&self, transformed: &[f32; FEATURE_COUNT]) -> [f32; FEATURE_COUNT] {
        let (center, scale) = self.scaler.scoring();
        std::array::from_fn(|i| standardized(transformed[i], center[i], scale[i]))
    }

    /// Each input's contribution to the log-odds.
    fn contributions(&self, inputs: &[f32; FEATURE_COUNT]) -> [f32; FEATURE_COUNT] {
        let weights = self.scoring_weights();
        std::array::from_fn(|i| weights[i] * inputs[i])
    }

    /// The contributions of a feature vector's inputs in one pass (log scale, standardization,
    /// weight), without the arrays between the steps that `learn` needs: the same numbers as
    /// `contributions(standardize(transform(x)))`, faster on the scoring path.
    fn contributions_of(&self, x: &FeatureVector) -> [f32; FEATURE_COUNT] {
        with_avx2_if_present(
            #[inline(always)]
            || self.contributions_of_portable(x),
        )
    }

    /// Inlined into each caller, so that each compiles it for its own instruction set.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn contributions_of_portable(&self, x: &FeatureVector) -> [f32; FEATURE_COUNT] {
        let (center, scale) = self.scaler.scoring();
        let (weights, kinds) = (self.scoring_weights(), transforms());
        let mut out = [0f32; FEATURE_COUNT];
        for i in 0..FEATURE_COUNT {
            out[i] = weights[i] * standardized(transformed(x.0[i], kinds[i]), center[i], scale[i]);
        }
        out
    }

    fn scoring_weights(&self) -> &[f32; FEATURE_COUNT] {
        per_feature(&self.weights)
    }

    /// The raw (class-weighted) log-odds of these contributions on top of the base's
    /// `base_logit`: the same sum for scoring and for learning. Training with frauds weighted
    /// would take the intercept to the base plus their weight's log-odds; starting there, the
    /// intercept starts at 0.
    fn raw_logit(&self, contributions: &[f32; FEATURE_COUNT], base_logit: f64) -> f64 {
        base_logit
            + self.fraud_weight_log_odds
            + self.ftrl.w[BIAS]
            + f64::from(lane_sum(contributions))
    }

    /// Whether the model has learned enough of both classes for its opinion to count.
    pub fn is_warm(&self) -> bool {
        self.positives >= self.config.warmup_frauds
            && self.negatives >= 10 * self.config.warmup_frauds
    }

    /// The log-odds of fraud: the base's (the prior's without one), corrected by what the
    /// model has learned once it is warm; explained by the features that raised it most.
    pub fn score(&self, x: &FeatureVector, base: Option<&BoostedTrees>) -> ModelScore {
        let explained = base.map(|b| {
            let mut contributions = [0f32; FEATURE_COUNT];
            (b.explain(x, &mut contributions), contributions)
        });
        let base_logit = explained.map_or(self.prior_log_odds, |(logit, _)| logit);
        if !self.is_warm() {
            return ModelScore {
                logit: base_logit,
                base_logit,
                top: explained.map_or([None; TOP_CONTRIBUTIONS], |(_, c)| top_of(&c)),
            };
        }
        let mut contributions = self.contributions_of(x);
        let logit = self.raw_logit(&contributions, base_logit) - self.fraud_weight_log_odds;
        if let Some((_, from_base)) = explained {
            for (c, b) in contributions.iter_mut().zip(from_base) {
                *c += b;
            }
        }
        ModelScore {
            logit,
            base_logit,
            top: top_of(&contributions),
        }
    }

    /// Learns from one labelled example on top of `base`; returns false when a genuine example
    /// is sampled out. `sample_key` must be a well-mixed hash of the transaction id.
    pub fn learn(
        &mut self,
        x: &FeatureVector,
        is_fraud: bool,
        sample_key: u64,
        base: Option<&BoostedTrees>,
    ) -> bool {
        if !is_fraud && !crate::training::sampled(sample_key, self.config.negative_sample_rate) {
            return false;
        }
        let (weight, target) = if is_fraud {
            self.positives += 1;
            (self.config.positive_weight, 1.0)
        } else {
            self.negatives += 1;
            (1.0 / self.config.negative_sample_rate, 0.0)
        };
        let transformed = transform(x);
        with_avx2_if_present(
            #[inline(always)]
            || self.scaler.observe(&transformed),
        );
        let inputs = self.standardize(&transformed);
        let base_logit = base.map_or(self.prior_log_odds, |b| b.logit(x));
        let raw = self.raw_logit(&self.contributions(&inputs), base_logit);
        let gradient = weight * (sigmoid(raw) - target);
        with_avx2_if_present(
            #[inline(always)]
            || self.ftrl.update(&self.config, &inputs, gradient),
        );
        for (w32, &w) in self.weights.iter_mut().zip(&self.ftrl.w) {
            *w32 = w as f32;
        }
        true
    }
}

/// Sum in eight independent lanes, then across them: a fixed order (so the same bits every
/// time) that does not wait on one long chain of additions.
fn lane_sum(values: &[f32; FEATURE_COUNT]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// One value per feature, as an array (so that loops over it have no bounds checks).
fn per_feature(values: &[f32]) -> &[f32; FEATURE_COUNT] {
    values.try_into().expect("one value per feature")
}

fn transform(x: &FeatureVector) -> [f32; FEATURE_COUNT] {
    let kinds = transforms();
    std::array::from_fn(|i| transformed(x.0[i], kinds[i]))
}

fn transformed(v: f32, kind: Transform) -> f32 {
    // Both computed and one selected, not branched on, so that loops over features vectorize.
    let log = signed_ln1p(v);
    if kind == Transform::Log { log } else { v }
}

/// A transformed value standardized and clipped; a missing one (NaN) is the mean, 0.
fn standardized(t: f32, center: f32, scale: f32) -> f32 {
    let s = ((t - center) * scale).clamp(-CLIP, CLIP);
    if t.is_nan() { 0.0 } else { s }
}

/// The largest positive contributions, largest first.
fn top_of(contributions: &[f32; FEATURE_COUNT]) -> [Option<Contribution>; TOP_CONTRIBUTIONS] {
    with_avx2_if_present(
        #[inline(always)]
        || top_of_portable(contributions),
    )
}

/// Inlined into each caller, so that each compiles it for its own instruction set.
#[allow(clippy::inline_always)]
#[inline(always)]
fn top_of_portable(
    contributions: &[f32; FEATURE_COUNT],
) -> [Option<Contribution>; TOP_CONTRIBUTIONS] {
    const CHUNK: usize = 8;
    let mut top = Top::default();
    let (chunks, rest) = contributions.as_chunks::<CHUNK>();
    for (n, chunk) in chunks.iter().enumerate() {
        // Once three are kept most chunks hold nothing larger: one vector compare skips them
        // (a fold without short-circuit; `any` stops at each element and is not vectorized).
        let smallest = top.smallest();
        #[allow(clippy::needless_bitwise_bool, clippy::unnecessary_fold)]
        let larger = chunk.iter().fold(false, |any, &c| any | (c > smallest));
        if !larger {
            continue;
        }
        for (j, &c) in chunk.iter().enumerate() {
            top.offer(n * CHUNK + j, c);
        }
    }
    let first_of_rest = FEATURE_COUNT - rest.len();
    for (j, &c) in rest.iter().enumerate() {
        top.offer(first_of_rest + j, c);
    }
    top.contributions()
}

/// The largest positive contributions so far, largest first, in plain arrays (0 is empty:
/// only a positive contribution is kept), so that a compare with the smallest is one load.
#[derive(Default)]
struct Top {
    log_odds: [f32; TOP_CONTRIBUTIONS],
    features: [u16; TOP_CONTRIBUTIONS],
}

impl Top {
    fn smallest(&self) -> f32 {
        self.log_odds[TOP_CONTRIBUTIONS - 1]
    }

    /// Keeps `log_odds` if it is larger than the smallest kept; after those equal to it.
    fn offer(&mut self, feature: usize, log_odds: f32) {
        if log_odds > self.smallest() {
            let mut slot = TOP_CONTRIBUTIONS - 1;
            while slot > 0 && self.log_odds[slot - 1] < log_odds {
                self.log_odds[slot] = self.log_odds[slot - 1];
                self.features[slot] = self.features[slot - 1];
                slot -= 1;
            }
            self.log_odds[slot] = log_odds;
            self.features[slot] = feature as u16;
        }
    }

    fn contributions(&self) -> [Option<Contribution>; TOP_CONTRIBUTIONS] {
        std::array::from_fn(|i| {
            (self.log_odds[i] > 0.0).then_some(Contribution {
                feature: self.features[i],
                log_odds: self.log_odds[i],
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::index;

    fn example(amount: f32, burst: f32) -> FeatureVector {
        let mut x = FeatureVector::default();
        x.0[index::AMOUNT] = amount;
        x.0[index::window(index::CARD_WINDOWS, 0, 0)] = burst;
        x
    }

    /// The tests' own sampling rate, so that their counts do not move with the default.
    fn config() -> OnlineConfig {
        OnlineConfig {
            negative_sample_rate: 0.1,
            ..OnlineConfig::default()
        }
    }

    fn key(i: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    fn starts_at_the_prior() {
        let model = OnlineModel::new(config()).unwrap();
        let p = sigmoid(model.score(&example(100.0, 0.0), None).logit);
        assert!((p - 0.005).abs() < 1e-9, "{p}");
    }

    #[test]
    fn learns_a_separable_signal_and_explains_it() {
        let mut model = OnlineModel::new(config()).unwrap();
        for i in 0..20_000u64 {
            let fraud = i % 50 == 0;
            let burst = if fraud {
                8.0 + (i % 3) as f32
            } else {
                (i % 2) as f32
            };
            model.learn(
                &example(1000.0 + (i % 7) as f32 * 100.0, burst),
                fraud,
                key(i),
                None,
            );
        }
        let fraud = model.score(&example(1200.0, 9.0), None);
        let genuine = model.score(&example(1200.0, 1.0), None);
        assert!(
            fraud.logit > genuine.logit + 3.0,
            "{fraud:?} vs {genuine:?}"
        );
        let top = fraud.top[0].unwrap();
        assert_eq!(
            usize::from(top.feature),
            index::window(index::CARD_WINDOWS, 0, 0)
        );
        // With weights taken back out, the genuine score sits near the true base rate (2%).
        assert!(sigmoid(genuine.logit) < 0.05, "{}", sigmoid(genuine.logit));
    }

    #[test]
    fn missing_features_are_neutral() {
        let mut model = OnlineModel::new(config()).unwrap();
        for i in 0..4_000u64 {
            model.learn(
                &example(100.0 * (i % 10) as f32, (i % 4) as f32),
                i % 10 == 0,
                key(i),
                None,
            );
        }
        assert!(model.is_warm());
        let all_missing = model.score(&FeatureVector::default(), None);
        let bias_only = model.prior_log_odds + model.ftrl.w[BIAS];
        assert!((all_missing.logit - bias_only).abs() < 1e-12);
        assert!(all_missing.top.iter().all(Option::is_none));
    }

    #[test]
    fn frauds_alone_do_not_make_an_opinion() {
        let mut model = OnlineModel::new(config()).unwrap();
        for i in 0..500u64 {
            model.learn(&example(5_000.0, 9.0), true, key(i), None);
        }
        let score = model.score(&example(5_000.0, 9.0), None);
        assert!(
            (sigmoid(score.logit) - 0.005).abs() < 1e-9,
            "still the prior: {score:?}"
        );
        assert!(!model.is_warm());
    }

    #[test]
    fn genuine_examples_are_sampled_by_key() {
        let mut model = OnlineModel::new(config()).unwrap();
        let learned = (0..10_000u64)
            .filter(|&i| model.learn(&example(1.0, 0.0), false, key(i), None))
            .count();
        assert!(
            (800..1200).contains(&learned),
            "{learned} of 10000 at rate 0.1"
        );
        assert!(
            model.learn(&example(1.0, 0.0), true, key(1), None),
            "frauds are always learned"
        );
    }

    proptest::proptest! {
        /// The scoring path's one pass (portable, and with AVX2 where the CPU has it) gives the
        /// numbers of the steps `learn` takes one by one.
        #[test]
        fn one_pass_contributions_equal_the_steps(
            values in proptest::collection::vec(
                proptest::prop_oneof![-1e6f32..1e6, proptest::strategy::Just(f32::NAN)],
                FEATURE_COUNT,
            ),
        ) {
            let mut model = OnlineModel::new(config()).unwrap();
            for i in 0..200u64 {
                let x = example(100.0 * (i % 13) as f32, (i % 5) as f32);
                model.learn(&x, i % 4 == 0, key(i), None);
            }
            let x = FeatureVector(values.try_into().unwrap());
            let steps = model.contributions(&model.standardize(&transform(&x)));
            let one_pass = model.contributions_of_portable(&x);
            proptest::prop_assert_eq!(one_pass.map(f32::to_bits), steps.map(f32::to_bits));
            let fast = with_avx2_if_present(#[inline(always)] || model.contributions_of_portable(&x));
            proptest::prop_assert_eq!(fast.map(f32::to_bits), steps.map(f32::to_bits));
        }
    }

    proptest::proptest! {
        /// Learning compiled for AVX2 moves the scaler and the weights to the same bits as
        /// learning compiled as built, missing (NaN) and zero inputs included.
        #[test]
        fn learning_with_avx2_changes_no_bit(
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    -50f32..50.0,
                    proptest::strategy::Just(0.0),
                    proptest::strategy::Just(f32::NAN),
                ],
                FEATURE_COUNT,
            ),
            gradient in -5f64..5.0,
        ) {
            let mut model = OnlineModel::new(config()).unwrap();
            for i in 0..200u64 {
                let x = example(100.0 * (i % 13) as f32, (i % 5) as f32);
                model.learn(&x, i % 4 == 0, key(i), None);
            }
            let transformed: [f32; FEATURE_COUNT] = values.try_into().unwrap();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();

            let (mut built, mut fast) = (model.scaler.clone(), model.scaler.clone());
            built.observe(&transformed);
            with_avx2_if_present(#[inline(always)] || fast.observe(&transformed));
            proptest::prop_assert_eq!(bits(&built.mean), bits(&fast.mean));
            proptest::prop_assert_eq!(bits(&built.m2), bits(&fast.m2));
            proptest::prop_assert_eq!(bits(&built.count), bits(&fast.count));

            let inputs = model.standardize(&transformed);
            let (mut built, mut fast) = (model.ftrl.clone(), model.ftrl.clone());
            built.update(&model.config, &inputs, gradient);
            with_avx2_if_present(#[inline(always)] || fast.update(&model.config, &inputs, gradient));
            proptest::prop_assert_eq!(bits(&built.z), bits(&fast.z));
            proptest::prop_assert_eq!(bits(&built.n), bits(&fast.n));
            proptest::prop_assert_eq!(bits(&built.w), bits(&fast.w));
        }
    }

    proptest::proptest! {
        /// The chunked scan against sorting: the positive contributions, largest first, the
        /// earlier feature first among equals (steps of 1/64, so that ties are common).
        #[test]
        fn top_of_is_the_largest_positive_contributions(
            steps in proptest::collection::vec(proptest::num::i8::ANY, FEATURE_COUNT),
        ) {
            let contributions: [f32; FEATURE_COUNT] =
                std::array::from_fn(|i| f32::from(steps[i]) / 64.0);
            let mut expected: Vec<(usize, f32)> = contributions
                .iter()
                .copied()
                .enumerate()
                .filter(|&(_, c)| c > 0.0)
                .collect();
            expected.sort_by(|a, b| b.1.total_cmp(&a.1));
            expected.truncate(TOP_CONTRIBUTIONS);
            for got in [top_of(&contributions), top_of_portable(&contributions)] {
                let got: Vec<(usize, f32)> = got
                    .iter()
                    .flatten()
                    .map(|c| (usize::from(c.feature), c.log_odds))
                    .collect();
                proptest::prop_assert_eq!(&got, &expected);
            }
        }
    }

    #[test]
    fn offer_keeps_the_largest() {
        let mut top = Top::default();
        for (i, v) in [0.5f32, -1.0, 2.0, 0.1, 1.0, 3.0].into_iter().enumerate() {
            top.offer(i, v);
        }
        let got: Vec<(u16, f32)> = top
            .contributions()
            .iter()
            .flatten()
            .map(|c| (c.feature, c.log_odds))
            .collect();
        assert_eq!(got, vec![(5, 3.0), (2, 2.0), (4, 1.0)]);
    }

    #[test]
    fn config_is_checked() {
        let bad = OnlineConfig {
            negative_sample_rate: 0.0,
            ..OnlineConfig::default()
        };
        assert!(OnlineModel::new(bad).is_err());
    }
}

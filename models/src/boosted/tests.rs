use super::*;
use crate::features::FeatureVector;
use crate::metrics::auc_roc;
use crate::{OnlineConfig, OnlineModel, sigmoid};

/// A tiny deterministic generator (splitmix64), so that the tests need no RNG crate.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Fraud when exactly one of two features is high (an interaction no linear model can see:
/// each feature alone says nothing), with 2% label noise; feature 2 is missing on a third of
/// the rows and then fraud is likelier.
fn xor_data(n: usize, seed: u64) -> (Vec<f32>, Vec<bool>) {
    let mut mix = Mix(seed);
    let mut rows = Vec::with_capacity(n * FEATURE_COUNT);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let mut x = [0.0f32; FEATURE_COUNT];
        x[0] = mix.unit();
        x[1] = mix.unit();
        let missing = mix.unit() < 0.33;
        x[2] = if missing { f32::NAN } else { mix.unit() };
        let mut fraud = (x[0] > 0.5) != (x[1] > 0.5);
        if mix.unit() < 0.02 || (missing && mix.unit() < 0.1) {
            fraud = !fraud;
        }
        rows.extend_from_slice(&x);
        labels.push(fraud);
    }
    (rows, labels)
}

fn config() -> BoostedConfig {
    BoostedConfig {
        trees: 30,
        max_depth: 3,
        learning_rate: 0.3,
        ..BoostedConfig::default()
    }
}

fn vector(rows: &[f32], i: usize) -> FeatureVector {
    let mut x = FeatureVector::default();
    x.0.copy_from_slice(&rows[i * FEATURE_COUNT..(i + 1) * FEATURE_COUNT]);
    x
}

fn scores(model: &BoostedTrees, rows: &[f32], n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| model.logit(&vector(rows, i)) as f32)
        .collect()
}

#[test]
fn learns_an_interaction_a_linear_model_cannot() {
    let (rows, labels) = xor_data(20_000, 1);
    let (model, _) = fit(&config(), &rows, &labels, &vec![1.0; 20_000], &|_| {}).unwrap();
    let (test_rows, test_labels) = xor_data(5_000, 2);
    let trees_auc = auc_roc(&scores(&model, &test_rows, 5_000), &test_labels).unwrap();

    let mut linear = OnlineModel::new(OnlineConfig {
        negative_sample_rate: 1.0,
        warmup_frauds: 1,
        ..OnlineConfig::default()
    })
    .unwrap();
    for (i, &fraud) in labels.iter().enumerate() {
        linear.learn(&vector(&rows, i), fraud, i as u64, None);
    }
    let linear_scores: Vec<f32> = (0..5_000)
        .map(|i| linear.score(&vector(&test_rows, i), None).logit as f32)
        .collect();
    let linear_auc = auc_roc(&linear_scores, &test_labels).unwrap();
    assert!(trees_auc > 0.95, "trees {trees_auc}");
    assert!(linear_auc < 0.65, "linear {linear_auc}");
}

#[test]
fn explanations_add_up_to_the_score() {
    let (rows, labels) = xor_data(5_000, 3);
    let (model, margins) = fit(&config(), &rows, &labels, &vec![1.0; 5_000], &|_| {}).unwrap();
    for (i, &margin) in margins.iter().enumerate().take(200) {
        let x = vector(&rows, i);
        let mut contributions = [0f32; FEATURE_COUNT];
        let logit = model.explain(&x, &mut contributions);
        assert_eq!(logit, model.logit(&x));
        assert!((logit - margin).abs() < 1e-3, "{logit} vs {margin}");
        let roots: f64 = model
            .trees
            .iter()
            .map(|t| f64::from(t.nodes[0].value))
            .sum();
        let explained: f64 = contributions.iter().map(|&c| f64::from(c)).sum();
        let expected = logit - (model.base + roots - model.class_log_odds);
        assert!(
            (explained - expected).abs() < 1e-3,
            "{explained} vs {expected}"
        );
        assert!(
            contributions[3..].iter().all(|&c| c == 0.0),
            "only features 0-2 are used"
        );
    }
}

#[test]
fn class_weights_and_sampling_are_taken_back_out() {
    // 5% frauds; genuine rows kept at a rate of 1 in 4, each weighing 4.
    let mut mix = Mix(9);
    let (mut rows, mut labels, mut weights) = (vec![], vec![], vec![]);
    let mut all = 0usize;
    while labels.len() < 20_000 {
        let fraud = mix.unit() < 0.05;
        all += 1;
        if !fraud && mix.unit() >= 0.25 {
            continue;
        }
        let mut x = [0.0f32; FEATURE_COUNT];
        x[0] = mix.unit();
        rows.extend_from_slice(&x);
        labels.push(fraud);
        weights.push(if fraud { 1.0 } else { 4.0 });
    }
    let (model, _) = fit(&config(), &rows, &labels, &weights, &|_| {}).unwrap();
    let mean: f64 = (0..labels.len())
        .map(|i| sigmoid(model.logit(&vector(&rows, i))) * f64::from(weights[i]))
        .sum::<f64>()
        / weights.iter().map(|&w| f64::from(w)).sum::<f64>();
    let frauds = labels.iter().filter(|&&l| l).count() as f64 / all as f64;
    assert!((mean - frauds).abs() < 0.01, "mean {mean} vs rate {frauds}");
}

#[test]
fn same_data_same_trees() {
    let (rows, labels) = xor_data(3_000, 4);
    let a = fit(&config(), &rows, &labels, &vec![1.0; 3_000], &|_| {}).unwrap();
    let b = fit(&config(), &rows, &labels, &vec![1.0; 3_000], &|_| {}).unwrap();
    assert_eq!(a.0, b.0);
}

#[test]
fn one_class_alone_is_refused() {
    let (rows, _) = xor_data(100, 5);
    let err = fit(&config(), &rows, &[false; 100], &vec![1.0; 100], &|_| {}).unwrap_err();
    assert!(err.to_string().contains("both frauds and genuine"), "{err}");
}

#[test]
fn trees_that_link_outside_themselves_are_refused() {
    let (rows, labels) = xor_data(1_000, 6);
    let (mut model, _) = fit(&config(), &rows, &labels, &vec![1.0; 1_000], &|_| {}).unwrap();
    assert!(model.check().is_ok());
    model.trees[3].nodes[0].right = 10_000;
    let err = model.check().unwrap_err();
    assert_eq!(
        err,
        "tree 3: node 0 links outside its tree or reads no feature"
    );
}

#[test]
fn every_walk_ends_at_a_leaf_in_the_model_depth() {
    let (rows, labels) = xor_data(2_000, 7);
    let (model, _) = fit(&config(), &rows, &labels, &vec![1.0; 2_000], &|_| {}).unwrap();
    assert!(model.depth >= 1 && model.depth <= config().max_depth as u32);
    // A leaf leads to itself and credits nothing.
    for tree in &model.trees {
        for (i, node) in tree.nodes.iter().enumerate() {
            if node.left == i as u32 {
                assert_eq!((node.right, node.feature), (i as u32, 0));
            }
        }
    }
}

//! Cost of one online update and one score: Vigil's FTRL-Proximal against linfa-ftrl's
//! (`cargo bench -p vigil-models --bench online`). Inputs are prepared outside the timing.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use linfa::DatasetBase;
use linfa::traits::{FitWith, Predict};
use linfa_ftrl::Ftrl;
use ndarray::{Array1, Array2};
use vigil_models::{FEATURE_COUNT, FeatureVector, OnlineConfig, OnlineModel};

const EXAMPLES: usize = 1024;

fn examples() -> Vec<(FeatureVector, bool, u64)> {
    (0..EXAMPLES as u64)
        .map(|i| {
            let x = FeatureVector(std::array::from_fn(|f| {
                ((i as usize * 31 + f * 17) % 97) as f32
            }));
            (
                x,
                i.is_multiple_of(50),
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            )
        })
        .collect()
}

/// linfa learns from a one-row Dataset per update, as an online learner must.
fn linfa_rows(
    examples: &[(FeatureVector, bool, u64)],
) -> Vec<DatasetBase<Array2<f64>, Array1<bool>>> {
    examples
        .iter()
        .map(|(x, fraud, _)| {
            let row: Vec<f64> = x.0.iter().map(|&v| f64::from(v)).collect();
            let records = Array2::from_shape_vec((1, FEATURE_COUNT), row).unwrap();
            DatasetBase::new(records, Array1::from_vec(vec![*fraud]))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let examples = examples();
    let mut group = c.benchmark_group("online");
    let mut vigil = OnlineModel::new(OnlineConfig {
        negative_sample_rate: 1.0,
        ..OnlineConfig::default()
    })
    .unwrap();
    let mut i = 0;
    group.bench_function("vigil_learn", |b| {
        b.iter(|| {
            let (x, fraud, key) = &examples[i % EXAMPLES];
            i += 1;
            vigil.learn(black_box(x), *fraud, *key, None)
        });
    });
    // Scored by a model that has learned enough to give an opinion (before, it returns the prior).
    let mut warm = OnlineModel::new(OnlineConfig {
        negative_sample_rate: 1.0,
        ..OnlineConfig::default()
    })
    .unwrap();
    for (x, fraud, key) in &examples {
        warm.learn(x, *fraud, *key, None);
    }
    assert!(warm.is_warm());
    group.bench_function("vigil_score", |b| {
        b.iter(|| warm.score(black_box(&examples[7].0), None));
    });

    let rows = linfa_rows(&examples);
    let params = Ftrl::params()
        .alpha(0.05)
        .beta(1.0)
        .l1_ratio(0.1)
        .l2_ratio(1.0);
    let mut linfa: Option<Ftrl<f64>> = None;
    let mut j = 0;
    group.bench_function("linfa_fit_with_one_row", |b| {
        b.iter(|| {
            linfa = Some(
                params
                    .fit_with(linfa.take(), black_box(&rows[j % EXAMPLES]))
                    .unwrap(),
            );
            j += 1;
        });
    });
    let model = rows
        .iter()
        .fold(None, |m, row| Some(params.fit_with(m, row).unwrap()))
        .unwrap();
    group.bench_function("linfa_predict_one_row", |b| {
        b.iter(|| model.predict(black_box(rows[7].records())));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

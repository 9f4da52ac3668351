//! Cost of one online update and one score: Vigil's FTRL-Proximal against linfa-ftrl's
//! (`cargo bench -p vigil-models --bench online`).

use criterion::{Criterion, criterion_group, criterion_main};
use linfa::DatasetBase;
use linfa::traits::{FitWith, Predict};
use linfa_ftrl::Ftrl;
use ndarray::{Array1, Array2};
use std::hint::black_box;
use vigil_models::{FEATURE_COUNT, FeatureVector, OnlineConfig, OnlineModel};

fn example(i: u64) -> FeatureVector {
    FeatureVector(std::array::from_fn(|f| {
        ((i as usize * 31 + f * 17) % 97) as f32
    }))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("online_update");
    let mut vigil = OnlineModel::new(OnlineConfig {
        negative_sample_rate: 1.0,
        ..OnlineConfig::default()
    })
    .unwrap();
    let mut i = 0u64;
    group.bench_function("vigil_ftrl_learn", |b| {
        b.iter(|| {
            i += 1;
            vigil.learn(
                black_box(&example(i)),
                i.is_multiple_of(50),
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            )
        });
    });
    group.bench_function("vigil_ftrl_score", |b| {
        b.iter(|| vigil.score(black_box(&example(7))))
    });

    // linfa-ftrl learns from a Dataset: one row per update, as an online learner must.
    let params = Ftrl::params()
        .alpha(0.05)
        .beta(1.0)
        .l1_ratio(0.1)
        .l2_ratio(1.0);
    let mut linfa: Option<Ftrl<f64>> = None;
    let mut j = 0u64;
    group.bench_function("linfa_ftrl_fit_with_one_row", |b| {
        b.iter(|| {
            j += 1;
            let row: Vec<f64> = example(j).0.iter().map(|&v| f64::from(v)).collect();
            let records = Array2::from_shape_vec((1, FEATURE_COUNT), row).unwrap();
            let dataset = DatasetBase::new(records, Array1::from_vec(vec![j.is_multiple_of(50)]));
            linfa = Some(params.fit_with(linfa.take(), &dataset).unwrap());
        });
    });
    let model = linfa.unwrap();
    let row: Vec<f64> = example(7).0.iter().map(|&v| f64::from(v)).collect();
    let records = Array2::from_shape_vec((1, FEATURE_COUNT), row).unwrap();
    group.bench_function("linfa_ftrl_predict_one_row", |b| {
        b.iter(|| model.predict(black_box(&records)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

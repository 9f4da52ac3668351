//! The one numeric kernel of our own (`models/src/math.rs`), the features' log scale, against the
//! `libm` crate's `log1pf` that would replace it: `cargo bench -p vigil-models --bench math`.
//! Inputs span amounts in minor units and counts.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vigil_models::math;

const N: usize = 1024;

fn kernels(c: &mut Criterion) {
    let xs: Vec<f32> = (0..N).map(|i| 1e7 * (i as f32 + 0.5) / N as f32).collect();
    let mut group = c.benchmark_group("ln1p_f32");
    group.bench_function("vigil", |b| {
        b.iter(|| {
            xs.iter()
                .map(|&x| math::fast_ln1p(black_box(x)))
                .sum::<f32>()
        });
    });
    group.bench_function("libm", |b| {
        b.iter(|| xs.iter().map(|&x| libm::log1pf(black_box(x))).sum::<f32>());
    });
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);

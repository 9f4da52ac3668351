//! The numeric kernels of the scoring path. The exponential, logarithm, sine and arcsine are the
//! `libm` crate's: pure Rust, so a score is the same bit for bit on every platform (the
//! platform's libm differs in the last bits), and faster than the series this module held
//! before (BENCHMARKS.md). The log scale of the features stays our own: it runs on every
//! feature of every event inside vectorized loops, where `libm::log1pf` would be a call per
//! feature and costs about twice as much on its own.

use std::f32::consts::LN_2;

pub use libm::{asin, exp, log as ln, sin};

/// `ln(1 + x)` for `x >= 0`, with a relative error below 2e-5.
///
/// Splits `1 + x` into `m * 2^e` with `m` in `[1, 2)`, then sums the series
/// `ln(m) = 2 (t + t^3/3 + t^5/5 + t^7/7)` with `t = (m - 1) / (m + 1) < 1/3`.
pub fn fast_ln1p(x: f32) -> f32 {
    let y = 1.0 + x;
    let bits = y.to_bits();
    let exponent = ((bits >> 23) & 0xff) as i32 - 127;
    let mantissa = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let t = (mantissa - 1.0) / (mantissa + 1.0);
    let t2 = t * t;
    let series = t * (2.0 + t2 * (2.0 / 3.0 + t2 * (2.0 / 5.0 + t2 * (2.0 / 7.0))));
    let ln = exponent as f32 * LN_2 + series;
    // Infinity and NaN pass through (selected, not branched on, so that loops vectorize).
    if y.is_finite() { ln } else { y }
}

/// `sign(x) * ln(1 + |x|)`: a log scale that keeps the sign.
pub fn signed_ln1p(x: f32) -> f32 {
    fast_ln1p(x.abs()).copysign(x)
}

/// The logistic function, safe for any input.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + exp(-x.clamp(-35.0, 35.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fast_ln1p_is_close_to_std(x in 0.0f32..1e9) {
            let exact = f64::from(x).ln_1p();
            let fast = f64::from(fast_ln1p(x));
            prop_assert!((fast - exact).abs() <= 2e-5 * exact.max(1e-3), "{x}: {fast} vs {exact}");
        }
    }

    #[test]
    fn edge_values() {
        assert_eq!(fast_ln1p(0.0), 0.0);
        assert!(fast_ln1p(f32::INFINITY).is_infinite());
        assert!((signed_ln1p(-9.0) + 10f32.ln()).abs() < 1e-4);
        assert!(sigmoid(1000.0) <= 1.0 && sigmoid(-1000.0) >= 0.0);
    }
}

//! Small numeric kernels written out here rather than taken from the platform's libm, so that a
//! score is the same bit for bit on every machine, and fast enough for every feature of every event.
//! Each is a series of additions, multiplications, divisions and square roots, which IEEE 754
//! rounds correctly and so the same everywhere (Rust never fuses them), after a range reduction
//! that is exact or nearly so.

use std::f32::consts::LN_2;
use std::f64::consts::{FRAC_PI_2, LN_2 as LN_2_F64, SQRT_2};

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

/// `c[0] + z (c[1] + z (c[2] + ...))`.
fn horner<const N: usize>(c: &[f64; N], z: f64) -> f64 {
    c.iter().rev().fold(0.0, |sum, &ck| ck + z * sum)
}

/// `(-1)^k / (2k + 3)!`: sine's coefficients of `x^3, x^5, ..., x^23` (the next term is below
/// 2^-60 for `|x| <= pi/2`).
const SIN: [f64; 11] = {
    let mut c = [-1.0 / 6.0; 11];
    let mut k = 1;
    while k < 11 {
        c[k] = -c[k - 1] / ((2 * k + 2) * (2 * k + 3)) as f64;
        k += 1;
    }
    c
};

/// `sin(x)` for `|x| <= pi/2`.
pub fn sin(x: f64) -> f64 {
    let z = x * x;
    x + x * z * horner(&SIN, z)
}

/// `(2k)! / (4^k (k!)^2 (2k + 1))` for `k = 1..=24`: arcsine's coefficients of `x^3 ... x^49`
/// (the next term is below 2^-56 for `|x| <= 1/2`).
const ASIN: [f64; 24] = {
    // The central binomial ratio `b(k) = (2k)! / (4^k (k!)^2)` divided by `2k + 1`.
    let mut c = [0.0; 24];
    let mut b = 1.0;
    let mut k = 1;
    while k <= 24 {
        b = b * (2 * k - 1) as f64 / (2 * k) as f64;
        c[k - 1] = b / (2 * k + 1) as f64;
        k += 1;
    }
    c
};

/// `asin(x)` for `0 <= x <= 1`: the series up to 1/2, and above it
/// `asin(x) = pi/2 - 2 asin(sqrt((1 - x) / 2))`, whose argument is again at most 1/2.
pub fn asin(x: f64) -> f64 {
    let series = |x: f64| {
        let z = x * x;
        x + x * z * horner(&ASIN, z)
    };
    if x <= 0.5 {
        series(x)
    } else {
        FRAC_PI_2 - 2.0 * series(((1.0 - x) * 0.5).sqrt())
    }
}

/// `1 / k!` for `k = 0..=13` (the next term is below 2^-57 for `|r| <= ln(2) / 2`).
const EXP: [f64; 14] = {
    let mut c = [1.0; 14];
    let mut k = 1;
    while k < 14 {
        c[k] = c[k - 1] / k as f64;
        k += 1;
    }
    c
};

/// ln(2) in two parts: the first with its low 32 bits clear, so that `k * LN_2_HI` is exact
/// for every power of two `k` of an f64; the second is the rest of ln(2) to 17 digits
/// (`LN_2 - LN_2_HI` would lose the 2.3e-17 by which the f64 `LN_2` falls short, times `k`).
const LN_2_HI: f64 = f64::from_bits(LN_2_F64.to_bits() & !0xffff_ffff);
const LN_2_LO: f64 = 4.749_325_039_031_672_6e-7;

/// `e^x` for `|x| <= 700`: `x = k ln(2) + r` with `|r| <= ln(2) / 2`, then `2^k e^r`.
pub fn exp(x: f64) -> f64 {
    // Rounded to nearest by a truncating cast (`f64::round` is a call into compiler-builtins
    // without SSE4.1).
    let k = (x / LN_2_F64 + 0.5f64.copysign(x)) as i64;
    let r = (x - k as f64 * LN_2_HI) - k as f64 * LN_2_LO;
    // `k` is within the exponent range for `|x| <= 700`, so 2^k is a normal number.
    let two_to_k = f64::from_bits(((k + 1023) as u64) << 52);
    two_to_k * horner(&EXP, r)
}

/// `1 / (2k + 1)` for `k = 0..12`: `atanh(t) / t` in powers of `t^2` (the next term is below
/// 2^-60 for `|t| < 0.172`).
const ATANH: [f64; 12] = {
    let mut c = [1.0; 12];
    let mut k = 1;
    while k < 12 {
        c[k] = 1.0 / (2 * k + 1) as f64;
        k += 1;
    }
    c
};

/// `ln(x)`: for a normal `x > 0`, `x = m 2^e` with `m` in `[sqrt(1/2), sqrt(2))`, then
/// `ln(x) = e ln(2) + 2 atanh(t)` with `t = (m - 1) / (m + 1)`, `|t| < 0.172`. Zero,
/// subnormal, negative and non-finite inputs (no log-odds of a valid config) go to libm.
pub fn ln(x: f64) -> f64 {
    if !(x.is_normal() && x > 0.0) {
        return x.ln();
    }
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m >= SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let series = 2.0 * t * horner(&ATANH, t * t);
    let e = e as f64;
    e * LN_2_HI + (e * LN_2_LO + series)
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

    /// Within `ulps` units in the last place of the std result.
    fn close_in_ulps(got: f64, exact: f64, ulps: f64) -> bool {
        (got - exact).abs() <= ulps * f64::EPSILON * exact.abs()
    }

    proptest! {
        #[test]
        fn sin_is_close_to_std(x in -FRAC_PI_2..=FRAC_PI_2) {
            prop_assert!(close_in_ulps(sin(x), x.sin(), 2.0), "{x}: {} vs {}", sin(x), x.sin());
        }

        #[test]
        fn asin_is_close_to_std(x in 0.0f64..=1.0) {
            prop_assert!(close_in_ulps(asin(x), x.asin(), 4.0), "{x}: {} vs {}", asin(x), x.asin());
        }

        #[test]
        fn ln_is_close_to_std(m in 1.0f64..2.0, e in -1000i32..1000) {
            let x = m * 2f64.powi(e);
            let exact = x.ln();
            prop_assert!(
                (ln(x) - exact).abs() <= 2.0 * f64::EPSILON * exact.abs().max(1e-300),
                "{x}: {} vs {exact}",
                ln(x)
            );
        }

        #[test]
        fn exp_is_close_to_std(x in -700.0f64..700.0) {
            prop_assert!(close_in_ulps(exp(x), x.exp(), 2.0), "{x}: {} vs {}", exp(x), x.exp());
        }
    }

    #[test]
    fn kernels_at_their_edges() {
        assert_eq!(
            (sin(0.0), asin(0.0), exp(0.0), ln(1.0)),
            (0.0, 0.0, 1.0, 0.0)
        );
        assert!(close_in_ulps(ln(2.0), LN_2_F64, 1.0));
        assert_eq!(
            (ln(0.0), ln(f64::INFINITY)),
            (f64::NEG_INFINITY, f64::INFINITY)
        );
        assert!(ln(-1.0).is_nan());
        assert!(close_in_ulps(ln(1.0 + 1e-12), (1.0 + 1e-12f64).ln(), 2.0));
        assert!(close_in_ulps(sin(FRAC_PI_2), 1.0, 1.0));
        assert!(close_in_ulps(asin(1.0), FRAC_PI_2, 1.0));
        assert!(close_in_ulps(asin(0.5), 0.5f64.asin(), 2.0));
    }

    #[test]
    fn edge_values() {
        assert_eq!(fast_ln1p(0.0), 0.0);
        assert!(fast_ln1p(f32::INFINITY).is_infinite());
        assert!((signed_ln1p(-9.0) + 10f32.ln()).abs() < 1e-4);
        assert!(sigmoid(1000.0) <= 1.0 && sigmoid(-1000.0) >= 0.0);
    }
}

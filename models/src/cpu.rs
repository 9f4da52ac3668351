//! Run-time CPU dispatch, the one place it happens: the model's loops over every feature are
//! compiled once as built and once for AVX2, and the CPU picks at run time.

/// Runs `work` compiled for AVX2 where the CPU has it (detected at run time), else as built:
/// for the loops over every feature, which then take eight (f32) or four (f64) features at a
/// time. `work` and what it calls must be inlined into it (`#[inline(always)]`) to be compiled
/// so. The same bits either way: the same operations on each feature in the same order (no
/// fused multiply-add), only more of them at once. Takes a closure, not a method, so that its
/// `unsafe` stays out of a type that is deserialized.
#[allow(unsafe_code)]
pub(crate) fn with_avx2_if_present<R>(work: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        fn with_avx2<R>(work: impl FnOnce() -> R) -> R {
            work()
        }
        // SAFETY: `is_x86_feature_detected!` just said this CPU has AVX2.
        return unsafe { with_avx2(work) };
    }
    work()
}

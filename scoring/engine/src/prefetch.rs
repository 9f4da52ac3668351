//! Asking the core to load memory before it is read. Scoring one transaction reads its card's,
//! customer's and merchant's state and a slot of the pending index, at random places in tens of
//! megabytes once there are more than a few thousand cards; each miss costs about as long as
//! the rest of the transaction's work. Started one transaction ahead, those loads overlap the
//! work of the one before ([`super::Engine::prefetch`]).

/// Starts loading every cache line of `value`, without waiting for them.
#[allow(unsafe_code)]
pub fn lines_of<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        const LINE: usize = 64;
        let start = std::ptr::from_ref(value).cast::<i8>();
        // A plain loop over a constant size, which the compiler unrolls into one instruction
        // a line, where the iterator chain it replaced was stepped through at run time.
        let mut offset = 0;
        while offset < size_of::<T>() {
            // SAFETY: the address is inside `value`, and a prefetch is only a hint: it cannot
            // fault and changes nothing the program can observe.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.add(offset)) };
            offset += LINE;
        }
        // SAFETY: as above; the last byte, whose line the loop misses when `value` straddles one.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(start.add(size_of::<T>().saturating_sub(1))) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

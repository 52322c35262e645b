//! A read prefetch: asks the cache for a line a consumer is about to need.
//!
//! A consumer waiting on a ring spins on the word that says "published";
//! the data that word describes often lies on another cache line, which it
//! would fetch only after it sees the word change, a second transfer from
//! the producer's core after the first. Prefetching that line on every empty
//! poll starts its transfer as soon as the producer has written it, in
//! parallel with the word's.

/// Hints that the cache line holding `ptr` will be read soon.
///
/// A prefetch loads nothing the program can see and never faults, so any
/// address is allowed, even one that is not mapped. A no-op where there is
/// no prefetch instruction to use (and under Miri).
#[inline(always)]
pub(crate) fn prefetch_read<T>(ptr: *const T) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: `prefetcht0` reads no memory the program can observe and does
    // not fault on any address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(ptr.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = ptr;
}

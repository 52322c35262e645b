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

/// Hints that the cache line holding `ptr` will be written soon: the line
/// is fetched and every other core's copy invalidated now, so the write
/// itself finds the line owned.
///
/// Only call it where [`can_prefetch_write`] said yes: it issues
/// `prefetchw` whatever the CPU. Like a read prefetch it never faults, so
/// any address is allowed. A no-op off x86-64 (and under Miri).
#[inline(always)]
pub(crate) fn prefetch_write<T>(ptr: *const T) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: `prefetchw` reads no memory the program can observe, writes
    // none, and does not fault on any address; callers check that the CPU
    // has the instruction (`can_prefetch_write`) before they use it.
    unsafe {
        std::arch::asm!(
            "prefetchw [{ptr}]",
            ptr = in(reg) ptr,
            options(nostack, readonly, preserves_flags)
        );
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = ptr;
}

/// Whether this CPU has `prefetchw` (CPUID leaf 0x8000_0001, ECX bit 8:
/// every AMD64 CPU, Intel's since Broadwell); read once.
pub(crate) fn can_prefetch_write() -> bool {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        use std::sync::OnceLock;
        static HAS_PREFETCHW: OnceLock<bool> = OnceLock::new();
        *HAS_PREFETCHW.get_or_init(|| {
            use std::arch::x86_64::__cpuid;
            // `__cpuid` is an `unsafe fn` in older Rust (1.85 and 1.88, for
            // two) and safe in newer (1.95), where the block is unused:
            // without it the crate does not build on the older ones.
            #[allow(unused_unsafe)]
            // SAFETY: every x86-64 CPU has `cpuid` (it predates the
            // architecture), and leaves 0x8000_0000 and 0x8000_0001 only
            // report features. Leaf 0x8000_0001 is asked for only if the
            // highest extended leaf includes it.
            unsafe {
                let highest = __cpuid(0x8000_0000).eax;
                highest >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 8) != 0
            }
        })
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    false
}

#[cfg(all(test, target_os = "linux", target_arch = "x86_64", not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn prefetches_of_addresses_that_are_not_readable_do_not_fault() {
        const PAGE: usize = 4096;
        // SAFETY: a fresh anonymous mapping of two pages, no access; the
        // second page is unmapped again, so the test holds one page it may
        // not touch and one address with nothing behind it.
        let base = unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                2 * PAGE,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(base, libc::MAP_FAILED);
            assert_eq!(libc::munmap(base.cast::<u8>().add(PAGE).cast(), PAGE), 0);
            base.cast::<u8>()
        };
        let addresses = [
            std::ptr::null(),
            base.cast_const(),
            base.wrapping_add(PAGE + 64).cast_const(),
            // Not canonical, and the kernel's half.
            0x8000_0000_0000_0000_usize as *const u8,
            usize::MAX as *const u8,
        ];
        for address in addresses {
            // A load from any of these would kill the test with SIGSEGV.
            prefetch_read(address);
            if can_prefetch_write() {
                prefetch_write(address);
            }
        }
        // SAFETY: the page still mapped, unmapped once.
        assert_eq!(unsafe { libc::munmap(base.cast(), PAGE) }, 0);
    }

    #[test]
    fn the_prefetchw_check_agrees_with_the_kernel() {
        // Linux names CPUID 0x8000_0001 ECX bit 8 `3dnowprefetch`, on AMD
        // and Intel CPUs alike.
        let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
            return;
        };
        let Some(flags) = cpuinfo.lines().find(|line| line.starts_with("flags")) else {
            return;
        };
        let listed = flags.split_whitespace().any(|flag| flag == "3dnowprefetch");
        assert_eq!(can_prefetch_write(), listed, "{flags}");
    }
}

//! The atomics and cells the concurrent code is built on.
//!
//! Everything that two threads share goes through this module, so that the
//! same code runs on `std` normally and on loom's model checker under
//! `RUSTFLAGS="--cfg loom"`. Code outside this module never names
//! `std::sync::atomic` directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;
/// Only the loom stand-in for the pools' return queue needs a lock.
#[cfg(loom)]
pub(crate) use loom::sync::Mutex;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// A cell whose contents are reached only through closures, as with loom's
/// `UnsafeCell`, so that under loom every read and write of the contents is
/// checked for data races and, on `std`, the closures cost nothing.
#[cfg(not(loom))]
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Lends a pointer to the contents for reading.
    #[inline(always)]
    pub(crate) fn with<R>(&self, read: impl FnOnce(*const T) -> R) -> R {
        read(self.0.get())
    }

    /// Lends a pointer to the contents for writing.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, write: impl FnOnce(*mut T) -> R) -> R {
        write(self.0.get())
    }
}

/// Pads and aligns a value to 128 bytes, so that two values written by
/// different threads never share a cache line (128 covers the adjacent-line
/// prefetcher of recent x86 parts as well as 128-byte lines elsewhere).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

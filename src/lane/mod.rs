//! Single-producer, single-consumer lanes between cores.
//!
//! Two kinds of ring live here:
//!
//! - [`typed`]: a ring of `Send` values, for small values moved whole.
//! - [`frames`]: a ring of frames (see [`crate::frame`]) over any
//!   [`Region`] of bytes, heap memory today and a mapped file tomorrow. This
//!   is the ring the runtime's cores talk through.
//!
//! Both follow the same discipline: the producer and the consumer each own
//! one index on a cache line of its own, each keeps a cached copy of the
//! other's index and re-reads the shared one only when the ring looks full
//! (producer) or empty (consumer). No compare-and-swap on the hot path.

use std::fmt;

mod aligned;
pub mod frames;
mod prefetch;
pub mod region;
pub mod typed;

pub use region::{HeapRegion, Region, RegionAllocError};

/// The ring had no room: the value is handed back to the caller, unchanged.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Full<T>(pub T);

impl<T> Full<T> {
    /// Takes the refused value back.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Full(..)")
    }
}

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("lane is full")
    }
}

impl<T> std::error::Error for Full<T> {}

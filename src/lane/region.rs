//! Memory a frame ring lives in.
//!
//! A [`Region`] is a fixed run of bytes, zeroed when created, that a ring
//! reads and writes through raw pointers and atomics: heap memory for lanes
//! between cores ([`HeapRegion`]), a mapped file for rings between
//! processes. The ring never hands the region out as `&[u8]` that the other
//! side may still change.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Alignment of every region's base address: one (large) cache line, so the
/// ring's index words can be given lines of their own.
pub const REGION_ALIGN: usize = 128;

/// A fixed run of bytes shared by one producer and one consumer.
///
/// # Safety
///
/// An implementor guarantees that `base()` is aligned to [`REGION_ALIGN`],
/// valid for reads and writes of `len()` bytes for as long as the region
/// lives, that neither changes over that time, and that the bytes were zero
/// when the region was handed to a ring for the first time.
pub unsafe trait Region: Send + Sync {
    /// First byte of the region.
    fn base(&self) -> NonNull<u8>;
    /// Length of the region in bytes.
    fn len(&self) -> usize;
    /// Whether the region is empty (never, for a usable ring).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Zeroed heap memory aligned to [`REGION_ALIGN`].
#[derive(Debug)]
pub struct HeapRegion {
    base: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the region is plain bytes; all access to them goes through the
// ring's protocol (atomics and the happens-before edges they create).
unsafe impl Send for HeapRegion {}
// SAFETY: as above; `&HeapRegion` only exposes the base pointer and length.
unsafe impl Sync for HeapRegion {}

impl HeapRegion {
    /// Allocates `len` zeroed bytes.
    ///
    /// # Panics
    ///
    /// If `len` is zero or too large for a `Layout`.
    pub fn zeroed(len: usize) -> Self {
        assert!(len > 0, "a region needs at least one byte");
        let layout = Layout::from_size_align(len, REGION_ALIGN).expect("region size overflows");
        // SAFETY: the layout has a non-zero size (checked above).
        let base = unsafe { alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(base) else {
            alloc::handle_alloc_error(layout)
        };
        HeapRegion { base, layout }
    }
}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: `base` came from `alloc_zeroed` with this same layout and is
        // freed once, here.
        unsafe { alloc::dealloc(self.base.as_ptr(), self.layout) }
    }
}

// SAFETY: `alloc_zeroed` returns memory aligned to `REGION_ALIGN`, valid for
// `layout.size()` bytes until `Drop`, and zeroed.
unsafe impl Region for HeapRegion {
    fn base(&self) -> NonNull<u8> {
        self.base
    }

    fn len(&self) -> usize {
        self.layout.size()
    }
}

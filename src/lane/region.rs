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
///
/// Allocated with the allocator's natural alignment and aligned by hand:
/// for large sizes that lets the allocator hand out fresh zero pages that
/// the OS commits only when touched (an over-aligned `alloc_zeroed` would
/// write every byte), so a lane costs memory only as far as it is used.
#[derive(Debug)]
pub struct HeapRegion {
    /// What the allocator returned.
    allocation: NonNull<u8>,
    /// `allocation` rounded up to `REGION_ALIGN`.
    base: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: the region is plain bytes; all access to them goes through the
// ring's protocol (atomics and the happens-before edges they create).
unsafe impl Send for HeapRegion {}
// SAFETY: as above; `&HeapRegion` only exposes the base pointer and length.
unsafe impl Sync for HeapRegion {}

/// A region could not be allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionAllocError {
    /// Bytes asked for.
    pub len: usize,
}

impl std::fmt::Display for RegionAllocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot allocate a region of {} bytes", self.len)
    }
}

impl std::error::Error for RegionAllocError {}

impl HeapRegion {
    /// Allocates `len` zeroed bytes.
    ///
    /// # Panics
    ///
    /// If `len` is zero or the memory cannot be had; see
    /// [`HeapRegion::try_zeroed`] for a fallible version.
    pub fn zeroed(len: usize) -> Self {
        Self::try_zeroed(len).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Allocates `len` zeroed bytes, or says why it cannot.
    ///
    /// # Errors
    ///
    /// [`RegionAllocError`] if `len` is zero, too large for a `Layout`, or
    /// the allocator refuses.
    pub fn try_zeroed(len: usize) -> Result<Self, RegionAllocError> {
        let error = RegionAllocError { len };
        if len == 0 {
            return Err(error);
        }
        let padded = len.checked_add(REGION_ALIGN).ok_or(error)?;
        let layout = Layout::from_size_align(padded, 16).map_err(|_| error)?;
        // SAFETY: the layout has a non-zero size.
        let allocation = NonNull::new(unsafe { alloc::alloc_zeroed(layout) }).ok_or(error)?;
        let offset = allocation.as_ptr().align_offset(REGION_ALIGN);
        debug_assert!(offset < REGION_ALIGN, "align_offset {offset} out of range");
        // SAFETY: `offset < REGION_ALIGN`, so `base..base + len` lies inside
        // the `len + REGION_ALIGN` bytes allocated.
        let base = unsafe { allocation.add(offset) };
        Ok(HeapRegion {
            allocation,
            base,
            len,
            layout,
        })
    }
}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: `allocation` came from `alloc_zeroed` with this same
        // layout and is freed once, here.
        unsafe { alloc::dealloc(self.allocation.as_ptr(), self.layout) }
    }
}

// SAFETY: `base` is aligned to `REGION_ALIGN` and followed by at least
// `len` zeroed bytes of the allocation, which lives until `Drop`.
unsafe impl Region for HeapRegion {
    fn base(&self) -> NonNull<u8> {
        self.base
    }

    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_aligned_and_zeroed() {
        // Miri interprets every byte read: no megabyte there.
        let largest = if cfg!(miri) { 1 << 12 } else { 1 << 20 };
        for len in [1, 127, 128, 4096, largest] {
            let region = HeapRegion::zeroed(len);
            assert_eq!(region.base().as_ptr() as usize % REGION_ALIGN, 0);
            assert_eq!(region.len(), len);
            // SAFETY: the region is valid for `len` bytes and not shared.
            let bytes = unsafe { std::slice::from_raw_parts(region.base().as_ptr(), len) };
            assert!(bytes.iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn impossible_sizes_are_errors_not_aborts() {
        assert_eq!(
            HeapRegion::try_zeroed(0).err(),
            Some(RegionAllocError { len: 0 })
        );
        assert!(HeapRegion::try_zeroed(usize::MAX - 8).is_err());
        assert!(HeapRegion::try_zeroed(isize::MAX as usize).is_err());
    }
}

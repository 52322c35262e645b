//! Raw blocks of buffer memory: how they are allocated, freed and moved
//! between threads.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use super::class::BUFFER_ALIGN;

/// The start of a block of `size` bytes allocated by [`allocate`], moved
/// between threads by the return queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block(pub(crate) NonNull<u8>);

// SAFETY: a `Block` is the sole owner of the memory it points to while it
// travels (the `PoolBuf` that held it has been forgotten or dropped); that
// memory is plain bytes with no thread affinity.
unsafe impl Send for Block {}

fn layout(size: usize) -> Layout {
    // `size` is a class size or a checked request; `BUFFER_ALIGN` is a power
    // of two, so this fails only for sizes near `isize::MAX`, which no
    // allocator could serve anyway.
    Layout::from_size_align(size.max(1), BUFFER_ALIGN).expect("buffer size overflows a layout")
}

/// Allocates a zeroed block of `size` bytes aligned to [`BUFFER_ALIGN`].
/// Zeroed once, so that the whole buffer is initialised bytes and can be
/// lent as `&mut [u8]` every time it is reused.
pub(crate) fn allocate(size: usize) -> Block {
    let layout = layout(size);
    // SAFETY: the layout has a non-zero size (`max(1)` above).
    let ptr = unsafe { alloc::alloc_zeroed(layout) };
    match NonNull::new(ptr) {
        Some(ptr) => Block(ptr),
        None => alloc::handle_alloc_error(layout),
    }
}

/// Frees a block.
///
/// # Safety
///
/// `block` came from [`allocate`] with the same `size`, and nothing uses it
/// any more.
pub(crate) unsafe fn free(block: Block, size: usize) {
    // SAFETY: as the caller guarantees, allocated with this very layout.
    unsafe { alloc::dealloc(block.0.as_ptr(), layout(size)) }
}

//! A buffer lent by a pool, and how it finds its way back.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use super::block::{self, Block};
use super::class::class_size;
use super::home::{Home, Source};

/// A buffer from a [`Pool`](super::Pool): `capacity()` bytes, 64-byte
/// aligned, of which the first `len()` are its contents (what `Deref`
/// shows). Every byte is initialised, so the whole capacity can be lent
/// for writing ([`PoolBuf::capacity_mut`]).
///
/// Dropping it gives it back: on its pool's own thread straight to the
/// free list, with no synchronisation; on any other thread through the
/// pool's lock-free return queue. A buffer may outlive its pool; it is then
/// freed when dropped. A *fallback* buffer (the class was at its cap, or
/// the request larger than any class) goes back to the system allocator.
///
/// # Examples
///
/// ```
/// use corelane::pool::{Pool, PoolConfig};
///
/// let pool = Pool::new(&PoolConfig::default());
/// let mut buf = pool.take(100);
/// assert!(buf.capacity() >= 100);
/// buf.capacity_mut()[..5].copy_from_slice(b"hello");
/// buf.set_len(5);
/// assert_eq!(&buf[..], b"hello");
/// drop(buf); // back on the free list
/// assert_eq!(pool.usage().free, 1);
/// ```
pub struct PoolBuf {
    block: Block,
    len: usize,
    capacity: usize,
    /// The class the block belongs to (pooled buffers only).
    class: usize,
    /// `None` for a fallback buffer.
    home: Option<NonNull<Home>>,
}

// SAFETY: the buffer owns its bytes outright; giving it back from any
// thread is what the home's return queue and reference count are for.
unsafe impl Send for PoolBuf {}
// SAFETY: `&PoolBuf` only reads the bytes.
unsafe impl Sync for PoolBuf {}

/// A buffer taken apart into its fields, to travel where a Rust value
/// cannot (a lane frame in this process's memory); see
/// [`PoolBuf::into_raw`].
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct RawPoolBuf {
    block: NonNull<u8>,
    len: usize,
    capacity: usize,
    class: usize,
    home: Option<NonNull<Home>>,
}

impl PoolBuf {
    /// A pooled buffer of `class`, holding one reference to `home`.
    pub(crate) fn pooled(block: Block, capacity: usize, class: usize, home: NonNull<Home>) -> Self {
        PoolBuf {
            block,
            len: 0,
            capacity,
            class,
            home: Some(home),
        }
    }

    /// A buffer of at least `size` bytes from the pool at `home`, or from
    /// the allocator when its class is out and at its cap.
    ///
    /// # Safety
    ///
    /// The caller holds a reference to `home` and is on its owning thread
    /// (a `Pool` or a `PoolLender`, both `!Send`).
    #[inline]
    pub(crate) unsafe fn take_from(home: NonNull<Home>, size: usize) -> Self {
        // SAFETY: the caller holds a reference (so `home` is alive) and is
        // on the owning thread, as `Home::take` requires.
        match unsafe { home.as_ref().take(size) } {
            Source::Pooled(block, class) => PoolBuf::pooled(block, class_size(class), class, home),
            Source::Fallback => PoolBuf::fallback(size),
        }
    }

    /// A buffer from the allocator, of exactly `capacity` bytes. Kept out
    /// of line, so that the pooled path inlines small.
    #[cold]
    #[inline(never)]
    pub(crate) fn fallback(capacity: usize) -> Self {
        PoolBuf {
            block: block::allocate(capacity),
            len: 0,
            capacity,
            class: 0,
            home: None,
        }
    }

    /// Bytes of contents.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the contents are empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the buffer can hold.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the buffer came from a pool (not from the allocator).
    pub fn is_pooled(&self) -> bool {
        self.home.is_some()
    }

    /// Sets the length of the contents.
    ///
    /// # Panics
    ///
    /// If `len` is larger than the capacity.
    #[inline]
    pub fn set_len(&mut self, len: usize) {
        assert!(
            len <= self.capacity,
            "length {len} beyond capacity {}",
            self.capacity
        );
        self.len = len;
    }

    /// The whole capacity, to write into (in place, e.g. an rkyv archive
    /// or a socket read); then [`set_len`](Self::set_len).
    #[inline]
    pub fn capacity_mut(&mut self) -> &mut [u8] {
        // SAFETY: the block holds `capacity` initialised bytes (zeroed when
        // allocated) owned by this buffer alone.
        unsafe { std::slice::from_raw_parts_mut(self.block.0.as_ptr(), self.capacity) }
    }

    /// Takes the buffer apart without giving it back; see
    /// [`PoolBuf::from_raw`].
    pub fn into_raw(self) -> RawPoolBuf {
        let raw = RawPoolBuf {
            block: self.block.0,
            len: self.len,
            capacity: self.capacity,
            class: self.class,
            home: self.home,
        };
        std::mem::forget(self);
        raw
    }

    /// Puts a buffer taken apart with [`PoolBuf::into_raw`] back together.
    ///
    /// # Safety
    ///
    /// `raw` came from `into_raw` in this process and is put back together
    /// exactly once.
    pub unsafe fn from_raw(raw: RawPoolBuf) -> Self {
        PoolBuf {
            block: Block(raw.block),
            len: raw.len,
            capacity: raw.capacity,
            class: raw.class,
            home: raw.home,
        }
    }
}

impl Drop for PoolBuf {
    // Inlined whole: on the owning thread a drop is a handful of
    // instructions (see `Home::give_back`), less than the call itself.
    #[inline(always)]
    fn drop(&mut self) {
        match self.home {
            // SAFETY: this buffer holds one reference to its home and gives
            // it up here, with its block, which nothing uses any more.
            Some(home) => unsafe { Home::give_back(home, self.block, self.class) },
            // SAFETY: a fallback block of exactly `capacity` bytes.
            None => unsafe { free_fallback(self.block, self.capacity) },
        }
    }
}

/// Frees a fallback buffer's block, out of line like its allocation.
///
/// # Safety
///
/// As for [`block::free`].
#[cold]
#[inline(never)]
unsafe fn free_fallback(block: Block, capacity: usize) {
    // SAFETY: as the caller guarantees.
    unsafe { block::free(block, capacity) }
}

impl Deref for PoolBuf {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: `len <= capacity` initialised bytes owned by this buffer.
        unsafe { std::slice::from_raw_parts(self.block.0.as_ptr(), self.len) }
    }
}

impl DerefMut for PoolBuf {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.capacity_mut()[..len]
    }
}

impl fmt::Debug for PoolBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("pooled", &self.is_pooled())
            .finish()
    }
}

//! The owning core's handle on its pool.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

use super::buffer::PoolBuf;
use super::class::PoolConfig;
use super::home::Home;
use super::lender::PoolLender;
use super::usage::PoolUsage;

/// A core's buffer pool. It belongs to the thread that made it (it is
/// neither `Send` nor `Sync`): that thread takes buffers and gets them back
/// with no synchronisation. Its buffers may go anywhere.
///
/// # Examples
///
/// A buffer dropped on another thread comes back through the return queue:
///
/// ```
/// use corelane::pool::{Pool, PoolConfig};
///
/// let pool = Pool::new(&PoolConfig::default());
/// let buf = pool.take(4096);
/// std::thread::spawn(move || drop(buf)).join().unwrap();
/// assert_eq!(pool.usage().in_use, 1); // on its way back
/// assert_eq!(pool.reclaim(), 1);
/// assert_eq!(pool.usage().remote_returns, 1);
/// assert_eq!(pool.usage().free, 1);
/// ```
pub struct Pool {
    home: NonNull<Home>,
    /// Ties the pool to its thread.
    _owner_thread: PhantomData<*const ()>,
}

impl Pool {
    /// A pool owned by the current thread, with no buffers yet.
    pub fn new(config: &PoolConfig) -> Pool {
        Pool {
            home: Home::create(config),
            _owner_thread: PhantomData,
        }
    }

    fn home(&self) -> &Home {
        // SAFETY: the handle holds a reference until it is dropped.
        unsafe { self.home.as_ref() }
    }

    /// A buffer of at least `size` bytes, with empty contents: pooled if
    /// its class has one free or is under its cap, from the allocator
    /// otherwise (counted as a fallback).
    ///
    /// # Panics
    ///
    /// As `Vec::with_capacity` does: a `size` past `isize::MAX` (less the
    /// buffer alignment) panics, after the fallback is counted, and leaves
    /// the pool as it was; an allocation the allocator refuses ends the
    /// process through `handle_alloc_error`. A size that comes from input
    /// must be bounded before it gets here (the server bounds every length
    /// it reads; see its limits).
    #[inline]
    pub fn take(&self, size: usize) -> PoolBuf {
        // SAFETY: the handle holds a reference to its home and is on its
        // owning thread (it is `!Send`).
        unsafe { PoolBuf::take_from(self.home, size) }
    }

    /// Moves every buffer waiting in the return queues to the free lists
    /// (the pool also does so itself, a batch at a time, when a class runs
    /// out); returns how many.
    pub fn reclaim(&self) -> usize {
        // SAFETY: owning thread (the handle is `!Send`).
        unsafe { self.home().reclaim() }
    }

    /// What the pool holds and has served.
    pub fn usage(&self) -> PoolUsage {
        // SAFETY: owning thread (the handle is `!Send`).
        unsafe { self.home().usage() }
    }

    /// A second handle that takes buffers from this pool, for code that
    /// cannot borrow the pool itself (it keeps the pool's shared part
    /// alive; see [`PoolLender`]).
    pub fn lender(&self) -> PoolLender {
        // SAFETY: owning thread (the handle is `!Send`).
        unsafe { self.home().retain() };
        PoolLender::new(self.home)
    }

    /// A second handle that reads the pool's usage, for the core's metrics
    /// (which are kept apart from the pool itself).
    pub fn probe(&self) -> PoolProbe {
        // SAFETY: owning thread (the handle is `!Send`).
        unsafe { self.home().retain() };
        PoolProbe {
            home: self.home,
            _owner_thread: PhantomData,
        }
    }
}

/// Reads a pool's usage on its owning thread; see [`Pool::probe`]. It
/// keeps the pool's counts readable after the pool itself is dropped.
pub struct PoolProbe {
    home: NonNull<Home>,
    _owner_thread: PhantomData<*const ()>,
}

impl PoolProbe {
    /// What the pool holds and has served.
    pub fn usage(&self) -> PoolUsage {
        // SAFETY: the probe holds a reference, and it is on the owning
        // thread (it is `!Send`).
        unsafe { self.home.as_ref().usage() }
    }
}

impl Drop for PoolProbe {
    fn drop(&mut self) {
        // SAFETY: owning thread; the probe's reference, given up.
        unsafe { Home::forget(self.home) }
    }
}

impl fmt::Debug for PoolProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolProbe")
            .field("usage", &self.usage())
            .finish()
    }
}

impl Drop for Pool {
    /// Frees the free buffers; buffers still out are freed when dropped.
    fn drop(&mut self) {
        // SAFETY: once, on the owning thread, and the handle is gone after.
        unsafe { Home::close(self.home) }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("usage", &self.usage())
            .finish()
    }
}
